//! The monitor's heap: a fixed region in .bss for boot-time structures
//! (topology, allocator bitmaps, VM descriptions). Guest memory and page
//! tables come from the per-node frame allocators instead.

use linked_list_allocator::LockedHeap;

const HEAP_SIZE: usize = 16 << 20;

#[repr(C, align(4096))]
struct HeapSpace([u8; HEAP_SIZE]);

static mut HEAP_SPACE: HeapSpace = HeapSpace([0; HEAP_SIZE]);

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

pub fn init() {
    // SAFETY: called once on the boot CPU; the region is used only by the heap.
    unsafe { HEAP.lock().init(&raw mut HEAP_SPACE as *mut u8, HEAP_SIZE) };
}
