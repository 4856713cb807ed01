//! The guest's allocator: a bump pointer over linear memory that never frees, except the
//! latest block (so a growing `Vec` extends in place).
//!
//! Why not the default `dlmalloc`: it ignores the free space left in the module's initial
//! memory and grows memory by whole 64 KiB pages on its first allocation. Every call runs
//! in a fresh instance, so that growth (a host `mprotect`) and the extra page to reset were
//! paid on every call. Nothing outlives a call, so never freeing is no loss.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32::{memory_grow, memory_size};
use core::sync::atomic::{AtomicUsize, Ordering};

const PAGE: usize = 64 << 10;

unsafe extern "C" {
    /// Set by the linker: the first byte after the stack and static data.
    static __heap_base: u8;
}

pub struct Arena {
    /// Next free byte; 0 until the first allocation. The guest has one thread.
    next: AtomicUsize,
}

impl Arena {
    pub const fn new() -> Self {
        Self {
            next: AtomicUsize::new(0),
        }
    }

    fn take(&self, from: usize, size: usize) -> *mut u8 {
        let Some(end) = from.checked_add(size) else {
            return core::ptr::null_mut();
        };
        let have = memory_size(0) * PAGE;
        if end > have && memory_grow(0, (end - have).div_ceil(PAGE)) == usize::MAX {
            return core::ptr::null_mut();
        }
        self.next.store(end, Ordering::Relaxed);
        from as *mut u8
    }
}

impl Default for Arena {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut next = self.next.load(Ordering::Relaxed);
        if next == 0 {
            next = &raw const __heap_base as usize;
        }
        let start = (next + layout.align() - 1) & !(layout.align() - 1);
        self.take(start, layout.size())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ptr as usize + layout.size() == self.next.load(Ordering::Relaxed) {
            self.next.store(ptr as usize, Ordering::Relaxed);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ptr as usize + layout.size() == self.next.load(Ordering::Relaxed) {
            return self.take(ptr as usize, new_size);
        }
        // SAFETY: as GlobalAlloc's default: a fresh block, the old contents copied over.
        unsafe {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
            new
        }
    }
}
