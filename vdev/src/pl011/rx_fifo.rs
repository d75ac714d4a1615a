//! The PL011 receive FIFO: 32 entries in FIFO mode (LCR_H.FEN = 1), a
//! one-character holding register otherwise.

/// Depth of the PL011 FIFOs when enabled.
pub const FIFO_DEPTH: usize = 32;

/// A ring of received bytes.
#[derive(Debug, Clone)]
pub struct RxFifo {
    buf: [u8; FIFO_DEPTH],
    head: usize,
    len: usize,
}

impl RxFifo {
    pub const fn new() -> Self {
        Self { buf: [0; FIFO_DEPTH], head: 0, len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `byte` if fewer than `capacity` (at most [`FIFO_DEPTH`])
    /// bytes are held; returns false (byte dropped) otherwise.
    pub fn push(&mut self, byte: u8, capacity: usize) -> bool {
        if self.len >= capacity.min(FIFO_DEPTH) {
            return false;
        }
        self.buf[(self.head + self.len) % FIFO_DEPTH] = byte;
        self.len += 1;
        true
    }

    pub fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let byte = self.buf[self.head];
        self.head = (self.head + 1) % FIFO_DEPTH;
        self.len -= 1;
        Some(byte)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_order_and_capacity() {
        let mut f = RxFifo::new();
        assert!(f.push(1, 2));
        assert!(f.push(2, 2));
        assert!(!f.push(3, 2));
        assert_eq!(f.pop(), Some(1));
        for b in 10..41 {
            assert!(f.push(b, FIFO_DEPTH));
        }
        assert!(!f.push(99, FIFO_DEPTH));
        assert_eq!(f.len(), 32);
        assert_eq!(f.pop(), Some(2));
        assert_eq!(f.pop(), Some(10));
        while f.pop().is_some() {}
        assert!(f.is_empty());
    }
}
