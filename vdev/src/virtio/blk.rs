//! virtio-blk (virtio 1.2 section 5.2), one request queue.
//!
//! Features offered: `VIRTIO_BLK_F_SEG_MAX`, `VIRTIO_BLK_F_BLK_SIZE`,
//! `VIRTIO_BLK_F_FLUSH` and, for a read-only disk, `VIRTIO_BLK_F_RO` (the
//! transport adds `VIRTIO_F_VERSION_1` and `VIRTIO_F_INDIRECT_DESC`).
//! Configuration space: `capacity` (512-byte sectors), `seg_max` (queue
//! size - 2, so a request always fits one chain), `blk_size` (512); the
//! other fields read as 0.
//!
//! Requests: IN, OUT, FLUSH and GET_ID; anything else completes with
//! UNSUPP. A request is a 16-byte device-readable header (type, reserved,
//! sector), then the data (device-readable for OUT, device-writable for IN
//! and GET_ID), then one device-writable status byte: the last writable
//! byte of the chain. A request without any writable byte cannot be
//! answered: it is a [`QueueError`] (the device needs a reset). Otherwise
//! bad requests complete with IOERR: a short header, data that is not a
//! whole number of sectors, a range beyond the capacity, a write to a
//! read-only disk, an error from the backend.
//!
//! The storage is a [`BlockBackend`] passed in on each call; the device
//! copies through a bounce buffer of [`BOUNCE_BYTES`]. Requests are
//! executed synchronously, one by one, in [`VirtioBlk::process`]; the split
//! into [`BlkRequest::parse`] and [`BlkRequest::execute`]/[`BlkRequest::complete`]
//! is the seam for a backend that completes later.

use super::queue::{Cursor, DescChain, QueueError, SplitQueue};
use super::{config_bytes_read, VirtioDevice, VIRTIO_ID_BLOCK};
use crate::mem::GuestMemory;
use alloc::vec;
use alloc::vec::Vec;

/// Sector size of the virtio-blk protocol (capacity and request sectors).
pub const SECTOR_SIZE: u64 = 512;
/// Bytes of the request ID returned by GET_ID.
pub const ID_BYTES: usize = 20;
/// Bytes copied per backend call.
pub const BOUNCE_BYTES: usize = 64 * 1024;
/// The queue size offered.
pub const QUEUE_SIZE: u16 = 256;

// Feature bits (5.2.3).
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
pub const VIRTIO_BLK_F_BLK_SIZE: u64 = 1 << 6;
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;

// Request types (5.2.6).
pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;

// Status values.
pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Bytes of a request header.
const HEADER_BYTES: u64 = 16;
/// Bytes of the configuration space this device defines (up to
/// `write_zeroes_may_unmap` and padding, 5.2.4).
const CONFIG_BYTES: usize = 60;

/// The backend failed (the request completes with IOERR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoError;

/// A disk's storage, in 512-byte sectors. `buf` and `data` are always whole
/// sectors, inside [`Self::sectors`].
pub trait BlockBackend {
    /// Reads `buf.len() / 512` sectors from `sector`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// Writes `data.len() / 512` sectors at `sector`.
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), IoError>;
    /// The disk's size in sectors.
    fn sectors(&self) -> u64;
    /// A read just filled the whole guest page at `gpa` with `data`, the
    /// disk's [`PAGE_BYTES`] at `sector`, a page-aligned offset: a backend
    /// with a block cache may map its own copy of the block there instead
    /// (Disco's global buffer cache). The default does nothing.
    fn filled(&mut self, _sector: u64, _gpa: u64, _data: &[u8]) {}
}

/// Guest pages and disk blocks that [`BlockBackend::filled`] hears of.
pub const PAGE_BYTES: u64 = 4096;

/// A disk in a `Vec`, for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemDisk {
    pub bytes: Vec<u8>,
    /// Flushes seen.
    pub flushes: u64,
    /// Make every access fail (to test IOERR).
    pub fail: bool,
    /// What [`BlockBackend::filled`] heard: (sector, guest address).
    pub filled: Vec<(u64, u64)>,
}

impl MemDisk {
    /// A zeroed disk of `sectors` sectors.
    pub fn new(sectors: u64) -> Self {
        Self { bytes: vec![0; (sectors * SECTOR_SIZE) as usize], flushes: 0, fail: false, filled: Vec::new() }
    }

    fn span(&self, sector: u64, len: usize) -> Result<core::ops::Range<usize>, IoError> {
        let start = sector.checked_mul(SECTOR_SIZE).ok_or(IoError)?;
        let end = start.checked_add(len as u64).ok_or(IoError)?;
        if self.fail || end > self.bytes.len() as u64 {
            return Err(IoError);
        }
        Ok(start as usize..end as usize)
    }
}

impl BlockBackend for MemDisk {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let span = self.span(sector, buf.len())?;
        buf.copy_from_slice(&self.bytes[span]);
        Ok(())
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        let span = self.span(sector, data.len())?;
        self.bytes[span].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IoError> {
        if self.fail {
            return Err(IoError);
        }
        self.flushes += 1;
        Ok(())
    }
    fn sectors(&self) -> u64 {
        self.bytes.len() as u64 / SECTOR_SIZE
    }
    fn filled(&mut self, sector: u64, gpa: u64, data: &[u8]) {
        let at = (sector * SECTOR_SIZE) as usize;
        assert_eq!(data, &self.bytes[at..at + PAGE_BYTES as usize], "filled() gets the disk's bytes");
        self.filled.push((sector, gpa));
    }
}

/// What a virtio-blk device is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlkConfig {
    /// Capacity in 512-byte sectors.
    pub sectors: u64,
    pub read_only: bool,
    /// GET_ID's answer (the serial in `/sys/block/vdX/serial`); up to 20
    /// bytes, NUL-padded.
    pub id: [u8; ID_BYTES],
}

impl BlkConfig {
    /// A configuration with `id` truncated to 20 bytes.
    pub fn new(sectors: u64, read_only: bool, id: &[u8]) -> Self {
        let mut buf = [0; ID_BYTES];
        let n = id.len().min(ID_BYTES);
        buf[..n].copy_from_slice(&id[..n]);
        Self { sectors, read_only, id: buf }
    }
}

/// The virtio-blk device model.
#[derive(Debug, Clone)]
pub struct VirtioBlk {
    config: BlkConfig,
    bounce: Vec<u8>,
}

impl VirtioBlk {
    pub fn new(config: BlkConfig) -> Self {
        Self { config, bounce: Vec::new() }
    }

    pub fn config(&self) -> &BlkConfig {
        &self.config
    }

    fn config_bytes(&self) -> [u8; CONFIG_BYTES] {
        let mut c = [0u8; CONFIG_BYTES];
        c[0..8].copy_from_slice(&self.config.sectors.to_le_bytes());
        c[12..16].copy_from_slice(&u32::from(QUEUE_SIZE - 2).to_le_bytes());
        c[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());
        c
    }
}

impl VirtioDevice for VirtioBlk {
    type Backend = dyn BlockBackend;

    fn device_id(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }
    fn features(&self) -> u64 {
        let ro = if self.config.read_only { VIRTIO_BLK_F_RO } else { 0 };
        VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH | ro
    }
    fn num_queues(&self) -> u16 {
        1
    }
    fn queue_max(&self) -> u16 {
        QUEUE_SIZE
    }
    fn config_read(&self, offset: u64, size: u8) -> u64 {
        config_bytes_read(&self.config_bytes(), offset, size)
    }
    fn process(
        &mut self,
        _queue: u16,
        q: &mut SplitQueue,
        mem: &mut dyn GuestMemory,
        backend: &mut Self::Backend,
    ) -> Result<bool, QueueError> {
        if self.bounce.is_empty() {
            self.bounce = vec![0; BOUNCE_BYTES];
        }
        let mut used = false;
        // At most one queue's worth per call: bounded work.
        for _ in 0..q.size() {
            let Some(chain) = q.pop_chain(mem)? else { break };
            let mut req = BlkRequest::parse(chain, mem)?;
            let status = req.execute(&self.config, mem, backend, &mut self.bounce)?;
            req.complete(status, mem, q)?;
            used = true;
        }
        Ok(used)
    }
    fn reset(&mut self) {}
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlkOp {
    In {
        sector: u64,
    },
    Out {
        sector: u64,
    },
    Flush,
    GetId,
    /// A type this device does not implement.
    Unsupported(u32),
    /// The header is shorter than 16 bytes.
    ShortHeader,
}

/// A parsed request, not yet executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkRequest {
    chain: DescChain,
    pub op: BlkOp,
    /// Guest address of the status byte.
    status_addr: u64,
    /// Bytes written into the chain so far (data + status).
    written: u64,
}

impl BlkRequest {
    /// Reads the header of `chain` and finds its status byte.
    pub fn parse(chain: DescChain, mem: &dyn GuestMemory) -> Result<Self, QueueError> {
        let Some(last) = chain.writable().last() else {
            return Err(QueueError::BadRequest("virtio-blk request without a writable status byte"));
        };
        let status_addr = last.addr + u64::from(last.len) - 1;
        let mut header = [0u8; HEADER_BYTES as usize];
        let got = Cursor::new(chain.readable()).read(mem, &mut header)?;
        let op = if got < header.len() {
            BlkOp::ShortHeader
        } else {
            let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let sector = u64::from_le_bytes([
                header[8], header[9], header[10], header[11], header[12], header[13], header[14], header[15],
            ]);
            match kind {
                VIRTIO_BLK_T_IN => BlkOp::In { sector },
                VIRTIO_BLK_T_OUT => BlkOp::Out { sector },
                VIRTIO_BLK_T_FLUSH => BlkOp::Flush,
                VIRTIO_BLK_T_GET_ID => BlkOp::GetId,
                other => BlkOp::Unsupported(other),
            }
        };
        Ok(Self { chain, op, status_addr, written: 0 })
    }

    /// The chain's head index.
    pub fn head(&self) -> u16 {
        self.chain.head()
    }

    /// The device-readable bytes after the header (OUT's data).
    fn data_out(&self) -> Cursor<'_> {
        let mut c = Cursor::new(self.chain.readable());
        c.skip(HEADER_BYTES);
        c
    }

    /// The device-writable bytes before the status byte (IN's data).
    fn data_in(&self) -> Cursor<'_> {
        let mut c = Cursor::new(self.chain.writable());
        c.limit(self.chain.writable_len() - 1);
        c
    }

    /// Runs the request against `backend`; returns the status to report.
    /// Only a guest-memory failure is an error.
    pub fn execute(
        &mut self,
        config: &BlkConfig,
        mem: &mut dyn GuestMemory,
        backend: &mut dyn BlockBackend,
        bounce: &mut [u8],
    ) -> Result<u8, QueueError> {
        let capacity = config.sectors.min(backend.sectors());
        let in_range = |sector: u64, bytes: u64| {
            bytes.is_multiple_of(SECTOR_SIZE)
                && sector.checked_add(bytes / SECTOR_SIZE).is_some_and(|end| end <= capacity)
        };
        // Whole sectors per backend call.
        let chunk_max = bounce.len() - bounce.len() % SECTOR_SIZE as usize;
        Ok(match self.op {
            BlkOp::ShortHeader => VIRTIO_BLK_S_IOERR,
            BlkOp::Unsupported(_) => VIRTIO_BLK_S_UNSUPP,
            BlkOp::Flush => match backend.flush() {
                Ok(()) => VIRTIO_BLK_S_OK,
                Err(IoError) => VIRTIO_BLK_S_IOERR,
            },
            BlkOp::GetId => {
                let mut out = self.data_in();
                let n = out.write(mem, &config.id)?;
                self.written += n as u64;
                VIRTIO_BLK_S_OK
            }
            BlkOp::In { sector } => {
                let mut out = self.data_in();
                if !in_range(sector, out.remaining()) {
                    return Ok(VIRTIO_BLK_S_IOERR);
                }
                let mut at = sector;
                let mut written = 0u64;
                let mut status = VIRTIO_BLK_S_OK;
                let mut pages = Vec::new();
                while out.remaining() > 0 {
                    let n = (out.remaining() as usize).min(chunk_max);
                    if backend.read(at, &mut bounce[..n]).is_err() {
                        status = VIRTIO_BLK_S_IOERR;
                        break;
                    }
                    let disk = at * SECTOR_SIZE;
                    let wrote = out.write_visiting(mem, &bounce[..n], |gpa, off, len| {
                        whole_pages((gpa, off, len), disk, &mut pages)
                    })?;
                    for &(gpa, off) in &pages {
                        let at = (disk + off as u64) / SECTOR_SIZE;
                        backend.filled(at, gpa, &bounce[off..off + PAGE_BYTES as usize]);
                    }
                    pages.clear();
                    written += wrote as u64;
                    if wrote < n {
                        break;
                    }
                    at += (n as u64) / SECTOR_SIZE;
                }
                self.written += written;
                status
            }
            BlkOp::Out { sector } => {
                let mut data = self.data_out();
                if config.read_only || !in_range(sector, data.remaining()) {
                    return Ok(VIRTIO_BLK_S_IOERR);
                }
                let mut at = sector;
                while data.remaining() > 0 {
                    let n = (data.remaining() as usize).min(chunk_max);
                    if data.read(mem, &mut bounce[..n])? < n {
                        return Ok(VIRTIO_BLK_S_IOERR);
                    }
                    if backend.write(at, &bounce[..n]).is_err() {
                        return Ok(VIRTIO_BLK_S_IOERR);
                    }
                    at += (n as u64) / SECTOR_SIZE;
                }
                VIRTIO_BLK_S_OK
            }
        })
    }

    /// Writes the status byte and returns the chain to the driver.
    pub fn complete(self, status: u8, mem: &mut dyn GuestMemory, q: &mut SplitQueue) -> Result<(), QueueError> {
        mem.write_u8(self.status_addr, status)?;
        let len = u32::try_from(self.written + 1).unwrap_or(u32::MAX);
        q.add_used(mem, self.chain.head(), len)
    }
}

/// The whole guest pages of one piece a read wrote (guest address `gpa`,
/// `off` bytes into a chunk read from disk byte `disk`, `len` bytes) that
/// are page-aligned on the disk too, as (guest address, offset in the
/// chunk): where [`BlockBackend::filled`] may map a cached block.
fn whole_pages((gpa, off, len): (u64, usize, usize), disk: u64, pages: &mut Vec<(u64, usize)>) {
    let end = gpa + len as u64;
    let mut page = gpa.next_multiple_of(PAGE_BYTES);
    while page + PAGE_BYTES <= end {
        let at = off + (page - gpa) as usize;
        if (disk + at as u64).is_multiple_of(PAGE_BYTES) {
            pages.push((page, at));
        }
        page += PAGE_BYTES;
    }
}
