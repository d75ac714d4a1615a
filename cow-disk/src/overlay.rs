//! Copy-on-write overlays: one VM's private version of the blocks it wrote
//! over a shared, read-only base image (Disco's copy-on-write disks).
//!
//! The overlay keeps whole 4 KiB blocks (a machine frame each in the
//! monitor, so the memmap accounts them to the VM): a write of part of a
//! block it does not hold yet first reads that block from the base. A read
//! takes each block from the overlay if the VM wrote it, else from the
//! base, so a VM sees its own writes and the base, and never another VM's
//! writes or a changed base: nothing here writes the base.
//!
//! A write is all or nothing: every frame it needs is allocated and every
//! base block it patches is read before the first byte changes, so a
//! failed write (out of memory, a base read error) leaves the overlay as
//! it was and the guest sees an I/O error, as for a real disk.

use crate::header::SECTOR_BYTES;
use alloc::{collections::BTreeMap, vec::Vec};

/// Bytes of an overlay block (a machine frame).
pub const BLOCK_BYTES: usize = 4096;
const BLOCK_SECTORS: u64 = BLOCK_BYTES as u64 / SECTOR_BYTES;

/// Where an overlay's blocks live: frames in the monitor, a `Vec` on the
/// host. Offsets and lengths stay inside one block.
pub trait BlockStore {
    type Block;
    /// A block for overlay block number `block`; None when memory ran out.
    fn alloc(&mut self, block: u64) -> Option<Self::Block>;
    fn read(&self, b: &Self::Block, offset: usize, buf: &mut [u8]);
    fn write(&mut self, b: &Self::Block, offset: usize, data: &[u8]);
    fn free(&mut self, b: Self::Block);
}

/// The read-only base image under an overlay, addressed in its own sectors.
pub trait BaseImage {
    type Error;
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
}

/// Why a request failed; the overlay is unchanged in every case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlayError<E> {
    /// Not whole sectors, or not entirely inside the disk.
    OutOfRange,
    /// No memory for the blocks a write needs.
    Full,
    /// The base image could not be read.
    Base(E),
}

/// One piece of a request inside one block.
#[derive(Debug, Clone, Copy)]
struct Piece {
    block: u64,
    /// Offset in the block.
    offset: usize,
    /// Offset in the request's buffer.
    at: usize,
    len: usize,
}

/// One VM's overlay over a base image of `sectors` sectors.
pub struct Overlay<S: BlockStore> {
    store: S,
    blocks: BTreeMap<u64, S::Block>,
    sectors: u64,
}

impl<S: BlockStore> Overlay<S> {
    pub fn new(store: S, sectors: u64) -> Self {
        Self { store, blocks: BTreeMap::new(), sectors }
    }

    /// The disk's capacity in sectors (the base's).
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Blocks this VM has written (its own copies).
    pub fn blocks(&self) -> usize {
        self.blocks.len()
    }

    /// Has this VM written block `block` (so it reads its own copy)?
    pub fn has_block(&self, block: u64) -> bool {
        self.blocks.contains_key(&block)
    }

    /// The request's pieces, one per block it touches; None when it is not
    /// whole sectors inside the disk.
    fn pieces(&self, sector: u64, bytes: usize) -> Option<Vec<Piece>> {
        let len = bytes as u64;
        if !len.is_multiple_of(SECTOR_BYTES) || sector.checked_add(len / SECTOR_BYTES)? > self.sectors {
            return None;
        }
        let mut pieces = Vec::new();
        let (mut pos, end) = (sector * SECTOR_BYTES, sector * SECTOR_BYTES + len);
        while pos < end {
            let block = pos / BLOCK_BYTES as u64;
            let offset = (pos % BLOCK_BYTES as u64) as usize;
            let len = (BLOCK_BYTES - offset).min((end - pos) as usize);
            pieces.push(Piece { block, offset, at: (pos - sector * SECTOR_BYTES) as usize, len });
            pos += len as u64;
        }
        Some(pieces)
    }

    /// Reads `buf.len()` bytes from `sector`: the VM's own blocks, the
    /// base for the rest (each run of base blocks in one base read).
    pub fn read<B: BaseImage>(&self, base: &mut B, sector: u64, buf: &mut [u8]) -> Result<(), OverlayError<B::Error>> {
        let pieces = self.pieces(sector, buf.len()).ok_or(OverlayError::OutOfRange)?;
        let mut run: Option<(usize, usize)> = None; // (start, end) in buf
        for p in &pieces {
            match self.blocks.get(&p.block) {
                Some(b) => {
                    flush_run(base, sector, buf, run.take())?;
                    self.store.read(b, p.offset, &mut buf[p.at..p.at + p.len]);
                }
                None => run = Some((run.map_or(p.at, |r| r.0), p.at + p.len)),
            }
        }
        flush_run(base, sector, buf, run)
    }

    /// Writes `data` at `sector` into the VM's own blocks, copying a
    /// block from the base first when the write covers only part of it.
    pub fn write<B: BaseImage>(
        &mut self,
        base: &mut B,
        sector: u64,
        data: &[u8],
    ) -> Result<(), OverlayError<B::Error>> {
        let pieces = self.pieces(sector, data.len()).ok_or(OverlayError::OutOfRange)?;
        // First everything that can fail: the base blocks to patch, then
        // the frames.
        let mut fresh: Vec<(u64, Option<Vec<u8>>)> = Vec::new();
        for p in pieces.iter().filter(|p| !self.blocks.contains_key(&p.block)) {
            let whole = p.len == BLOCK_BYTES;
            let old = if whole { None } else { Some(self.base_block(base, p.block)?) };
            fresh.push((p.block, old));
        }
        let mut made = Vec::with_capacity(fresh.len());
        for (block, _) in &fresh {
            match self.store.alloc(*block) {
                Some(b) => made.push(b),
                None => {
                    made.into_iter().for_each(|b| self.store.free(b));
                    return Err(OverlayError::Full);
                }
            }
        }
        for ((block, old), b) in fresh.into_iter().zip(made) {
            if let Some(old) = old {
                self.store.write(&b, 0, &old);
            }
            self.blocks.insert(block, b);
        }
        for p in &pieces {
            let b = &self.blocks[&p.block];
            self.store.write(b, p.offset, &data[p.at..p.at + p.len]);
        }
        Ok(())
    }

    /// Block `block` of the base; the part past the disk's end (a base
    /// whose size is not a whole number of blocks) reads as zeros.
    fn base_block<B: BaseImage>(&self, base: &mut B, block: u64) -> Result<Vec<u8>, OverlayError<B::Error>> {
        let mut old = alloc::vec![0; BLOCK_BYTES];
        let first = block * BLOCK_SECTORS;
        let sectors = BLOCK_SECTORS.min(self.sectors - first);
        base.read(first, &mut old[..(sectors * SECTOR_BYTES) as usize]).map_err(OverlayError::Base)?;
        Ok(old)
    }

    /// Ends the overlay: every block goes back to the store, which is
    /// returned (the monitor's frees them to their nodes).
    pub fn discard(mut self) -> S {
        for (_, b) in core::mem::take(&mut self.blocks) {
            self.store.free(b);
        }
        self.store
    }
}

/// Reads the run `run` (byte range of the request's buffer) from the base.
fn flush_run<B: BaseImage>(
    base: &mut B,
    sector: u64,
    buf: &mut [u8],
    run: Option<(usize, usize)>,
) -> Result<(), OverlayError<B::Error>> {
    let Some((start, end)) = run else { return Ok(()) };
    base.read(sector + start as u64 / SECTOR_BYTES, &mut buf[start..end]).map_err(OverlayError::Base)
}

#[cfg(test)]
mod tests;
