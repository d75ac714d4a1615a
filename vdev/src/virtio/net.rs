//! virtio-net (virtio 1.2 section 5.1): one receive queue (0) and one
//! transmit queue (1), Ethernet frames in and out, no offloads.
//!
//! Features offered: `VIRTIO_NET_F_MAC` only (the transport adds
//! `VIRTIO_F_VERSION_1` and `VIRTIO_F_INDIRECT_DESC`). No checksum or
//! segmentation offload, no `VIRTIO_NET_F_MRG_RXBUF`, no control queue, no
//! `VIRTIO_NET_F_STATUS` (Linux then takes the link as up). So every
//! buffer carries the 12-byte [`NetHdr`] (with `VIRTIO_F_VERSION_1` it
//! always has `num_buffers`), and a received frame fills exactly one
//! receive buffer: Linux's "small buffers" (header + 1518 bytes) in one
//! chain. Configuration space: `mac` (6 bytes); the rest reads as 0.
//!
//! Transmit ([`TX_QUEUE`]): each chain is one frame: a header, then the
//! frame, all device-readable (with VERSION_1 the driver may put both in one
//! buffer: only the byte stream counts). A frame is dropped, counted and
//! its chain returned when the chain has a device-writable part, is
//! shorter than a header and an Ethernet header, longer than a header and
//! [`MAX_FRAME`], or its header asks for an offload that was not offered
//! (`flags` or `gso_type` not 0). Valid frames wait in the device's outbox
//! until the monitor takes them ([`VirtioNet::take_tx`]) and hands them to
//! the switch, outside the device's lock. At most [`TX_BATCH`] frames are
//! taken per call, so the outbox stays small; the caller calls again while
//! frames come out.
//!
//! Receive ([`RX_QUEUE`]): the monitor puts frames from other VMs into the
//! device's backlog ([`VirtioNet::push_rx`], at most [`RX_BACKLOG`]
//! frames: the newest is dropped and counted when it is full), and each
//! [`VirtioDevice::process`] of the receive queue moves as many as there
//! are posted buffers. A buffer with a device-readable part or too small
//! for header and frame is returned with length 0 (Linux counts a short
//! packet) and the frame is dropped.
//!
//! Descriptor-level faults (loops, ranges outside guest RAM, ...) are the
//! queue's [`QueueError`]s: the device then needs a reset.

use super::queue::{Cursor, DescChain, QueueError, SplitQueue};
use super::{config_bytes_read, VirtioDevice, VIRTIO_ID_NET};
use crate::mem::GuestMemory;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

/// Feature bits (5.1.3).
pub const VIRTIO_NET_F_CSUM: u64 = 1 << 0;
pub const VIRTIO_NET_F_GUEST_CSUM: u64 = 1 << 1;
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
pub const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;

/// The receive and transmit queue of the (only) queue pair.
pub const RX_QUEUE: u16 = 0;
pub const TX_QUEUE: u16 = 1;
/// The size offered for both queues.
pub const QUEUE_SIZE: u16 = 256;
/// Bytes of `struct virtio_net_hdr` with VERSION_1 (5.1.6).
pub const NET_HDR_BYTES: usize = 12;
/// Bytes of an Ethernet header (destination, source, type).
pub const ETH_HLEN: usize = 14;
/// The longest frame without FCS: 1500 bytes of MTU, the Ethernet header
/// and one VLAN tag (Linux's `GOOD_PACKET_LEN`).
pub const MAX_FRAME: usize = 1518;
/// Frames the device takes from the transmit queue per call.
pub const TX_BATCH: usize = 64;
/// Frames waiting for receive buffers, at most.
pub const RX_BACKLOG: usize = 256;

/// An Ethernet (MAC) address.
pub type Mac = [u8; 6];

/// The header before every frame (5.1.6), little-endian fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
    pub num_buffers: u16,
}

impl NetHdr {
    pub fn parse(b: &[u8; NET_HDR_BYTES]) -> Self {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Self {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
            num_buffers: u16_at(10),
        }
    }

    pub fn to_bytes(self) -> [u8; NET_HDR_BYTES] {
        let mut b = [0; NET_HDR_BYTES];
        b[0] = self.flags;
        b[1] = self.gso_type;
        for (i, v) in
            [self.hdr_len, self.gso_size, self.csum_start, self.csum_offset, self.num_buffers].into_iter().enumerate()
        {
            b[2 + 2 * i..4 + 2 * i].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
}

/// Why a transmitted frame or a receive buffer was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// A transmit chain with device-writable buffers.
    WritableTx,
    /// Fewer bytes than a header and an Ethernet header.
    Short(u64),
    /// More than a header and [`MAX_FRAME`].
    Long(u64),
    /// `flags` or `gso_type` set although no offload was offered.
    Offload { flags: u8, gso_type: u8 },
    /// A receive chain with device-readable buffers.
    ReadableRx,
}

/// What the device counted since it was created (a reset keeps them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Valid frames taken from the transmit queue, and their bytes.
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Transmit chains returned without a frame ([`Malformed`]).
    pub tx_malformed: u64,
    /// Frames written into receive buffers, and their bytes.
    pub rx_frames: u64,
    pub rx_bytes: u64,
    /// Frames dropped on receive: backlog full, or the buffer unusable.
    pub rx_dropped: u64,
}

/// The virtio-net device model.
#[derive(Debug, Clone)]
pub struct VirtioNet {
    mac: Mac,
    outbox: Vec<Vec<u8>>,
    backlog: VecDeque<Vec<u8>>,
    counters: NetCounters,
    /// The last malformed frame or buffer, for the monitor's log line.
    last_malformed: Option<Malformed>,
}

impl VirtioNet {
    pub fn new(mac: Mac) -> Self {
        Self {
            mac,
            outbox: Vec::new(),
            backlog: VecDeque::new(),
            counters: NetCounters::default(),
            last_malformed: None,
        }
    }

    pub fn mac(&self) -> Mac {
        self.mac
    }

    pub fn counters(&self) -> NetCounters {
        self.counters
    }

    /// The frames transmitted since the last call (Ethernet frames, no
    /// header).
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.outbox)
    }

    /// The last malformed frame or buffer seen, once.
    pub fn take_malformed(&mut self) -> Option<Malformed> {
        self.last_malformed.take()
    }

    /// Queues a frame for the guest; it reaches guest memory at the next
    /// [`VirtioDevice::process`] of [`RX_QUEUE`]. Returns false (and counts
    /// a drop) when the backlog is full or the frame is not an Ethernet
    /// frame this device could deliver.
    pub fn push_rx(&mut self, frame: Vec<u8>) -> bool {
        if self.backlog.len() >= RX_BACKLOG || !(ETH_HLEN..=MAX_FRAME).contains(&frame.len()) {
            self.counters.rx_dropped += 1;
            return false;
        }
        self.backlog.push_back(frame);
        true
    }

    /// Frames waiting for receive buffers.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    fn config_bytes(&self) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[..6].copy_from_slice(&self.mac);
        c
    }

    /// One transmit chain -> a frame, or why not.
    fn frame_of(chain: &DescChain, mem: &dyn GuestMemory) -> Result<Result<Vec<u8>, Malformed>, QueueError> {
        if !chain.writable().is_empty() {
            return Ok(Err(Malformed::WritableTx));
        }
        let len = chain.readable_len();
        if len < (NET_HDR_BYTES + ETH_HLEN) as u64 {
            return Ok(Err(Malformed::Short(len)));
        }
        if len > (NET_HDR_BYTES + MAX_FRAME) as u64 {
            return Ok(Err(Malformed::Long(len)));
        }
        let mut cursor = Cursor::new(chain.readable());
        let mut hdr = [0u8; NET_HDR_BYTES];
        cursor.read(mem, &mut hdr)?;
        let hdr = NetHdr::parse(&hdr);
        if hdr.flags != 0 || hdr.gso_type != 0 {
            return Ok(Err(Malformed::Offload { flags: hdr.flags, gso_type: hdr.gso_type }));
        }
        let mut frame = vec![0; len as usize - NET_HDR_BYTES];
        cursor.read(mem, &mut frame)?;
        Ok(Ok(frame))
    }

    fn transmit(&mut self, q: &mut SplitQueue, mem: &mut dyn GuestMemory) -> Result<bool, QueueError> {
        let mut used = false;
        for _ in 0..TX_BATCH {
            let Some(chain) = q.pop_chain(mem)? else { break };
            match Self::frame_of(&chain, mem)? {
                Ok(frame) => {
                    self.counters.tx_frames += 1;
                    self.counters.tx_bytes += frame.len() as u64;
                    self.outbox.push(frame);
                }
                Err(why) => {
                    self.counters.tx_malformed += 1;
                    self.last_malformed = Some(why);
                }
            }
            q.add_used(mem, chain.head(), 0)?;
            used = true;
        }
        Ok(used)
    }

    fn receive(&mut self, q: &mut SplitQueue, mem: &mut dyn GuestMemory) -> Result<bool, QueueError> {
        let mut used = false;
        for _ in 0..q.size() {
            if self.backlog.is_empty() {
                break;
            }
            let Some(chain) = q.pop_chain(mem)? else { break };
            let frame = self.backlog.pop_front().unwrap_or_default();
            let need = (NET_HDR_BYTES + frame.len()) as u64;
            let written = if !chain.readable().is_empty() {
                self.last_malformed = Some(Malformed::ReadableRx);
                None
            } else if chain.writable_len() < need {
                self.last_malformed = Some(Malformed::Short(chain.writable_len()));
                None
            } else {
                let mut out = Cursor::new(chain.writable());
                let hdr = NetHdr { num_buffers: 1, ..NetHdr::default() };
                out.write(mem, &hdr.to_bytes())?;
                out.write(mem, &frame)?;
                Some(need as u32)
            };
            match written {
                Some(_) => {
                    self.counters.rx_frames += 1;
                    self.counters.rx_bytes += frame.len() as u64;
                }
                None => self.counters.rx_dropped += 1,
            }
            q.add_used(mem, chain.head(), written.unwrap_or(0))?;
            used = true;
        }
        Ok(used)
    }
}

impl VirtioDevice for VirtioNet {
    /// Nothing: frames go out through [`VirtioNet::take_tx`] and come in
    /// through [`VirtioNet::push_rx`].
    type Backend = ();

    fn device_id(&self) -> u32 {
        VIRTIO_ID_NET
    }
    fn features(&self) -> u64 {
        VIRTIO_NET_F_MAC
    }
    fn num_queues(&self) -> u16 {
        2
    }
    fn queue_max(&self) -> u16 {
        QUEUE_SIZE
    }
    fn config_read(&self, offset: u64, size: u8) -> u64 {
        config_bytes_read(&self.config_bytes(), offset, size)
    }
    fn process(
        &mut self,
        queue: u16,
        q: &mut SplitQueue,
        mem: &mut dyn GuestMemory,
        _backend: &mut (),
    ) -> Result<bool, QueueError> {
        match queue {
            RX_QUEUE => self.receive(q, mem),
            TX_QUEUE => self.transmit(q, mem),
            _ => Ok(false),
        }
    }
    /// Frames in flight belong to the old driver: they are dropped.
    fn reset(&mut self) {
        self.counters.rx_dropped += self.backlog.len() as u64;
        self.backlog.clear();
        self.outbox.clear();
    }
}
