//! The monitor's heap: a fixed region in .bss for boot-time structures
//! (topology, allocator bitmaps, VM descriptions), and a second region
//! carved from machine memory once the frame allocators exist, sized to
//! the machine, for what grows with the guests (each VM's pmap is 16 bytes
//! per guest page: 64 guests of 64 MiB need 16 MiB). Guest memory and page
//! tables come from the per-node frame allocators instead.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use linked_list_allocator::LockedHeap;

const BOOT_HEAP_SIZE: usize = 16 << 20;

#[repr(C, align(4096))]
struct HeapSpace([u8; BOOT_HEAP_SIZE]);

static mut HEAP_SPACE: HeapSpace = HeapSpace([0; BOOT_HEAP_SIZE]);

static BOOT: LockedHeap = LockedHeap::empty();
static MORE: LockedHeap = LockedHeap::empty();
/// The second region, `[start, end)`; empty until [`add_region`].
static MORE_START: AtomicUsize = AtomicUsize::new(0);
static MORE_END: AtomicUsize = AtomicUsize::new(0);

/// Boot heap first, then the machine-sized region.
struct Heaps;

#[global_allocator]
static HEAPS: Heaps = Heaps;

// SAFETY: both heaps are sound allocators; a block is freed to the heap
// whose region holds it.
unsafe impl GlobalAlloc for Heaps {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { BOOT.alloc(layout) };
        if !p.is_null() || MORE_END.load(Ordering::Acquire) == 0 {
            return p;
        }
        // SAFETY: as above.
        unsafe { MORE.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let at = ptr as usize;
        let more = (MORE_START.load(Ordering::Acquire)..MORE_END.load(Ordering::Acquire)).contains(&at);
        // SAFETY: `ptr` came from the heap whose region holds it.
        unsafe { if more { MORE.dealloc(ptr, layout) } else { BOOT.dealloc(ptr, layout) } }
    }
}

pub fn init() {
    // SAFETY: called once on the boot CPU; the region is used only by the heap.
    unsafe { BOOT.lock().init(&raw mut HEAP_SPACE as *mut u8, BOOT_HEAP_SIZE) };
}

/// Adds `[pa, pa + size)` (identity-mapped RAM) as the second region.
///
/// # Safety
/// The range must be free RAM that nothing else uses, ever; call once.
pub unsafe fn add_region(pa: u64, size: usize) {
    // SAFETY: the caller gives the range to the heap for good.
    unsafe { MORE.lock().init(pa as *mut u8, size) };
    MORE_START.store(pa as usize, Ordering::Release);
    MORE_END.store(pa as usize + size, Ordering::Release);
}

/// Bytes in use on both heaps (the monitor's own metadata).
pub fn used() -> usize {
    BOOT.lock().used() + MORE.lock().used()
}
