//! Tests only: a global allocator that counts the allocations of the threads that ask
//! for it, by thread name, so a test can show what a warm query allocates on the UDP
//! thread (the brief: nothing on the inline path).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// This thread's count, once it asked to be counted.
    static COUNT: Cell<Option<&'static AtomicU64>> = const { Cell::new(None) };
}

/// Every counted thread's name and count (leaked: a few per test run).
static THREADS: Mutex<Vec<(String, &'static AtomicU64)>> = Mutex::new(Vec::new());

/// Count the allocations of the calling thread from now on.
pub(crate) fn count_this_thread() {
    let name = std::thread::current()
        .name()
        .unwrap_or_default()
        .to_string();
    let count: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    THREADS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((name, count));
    COUNT.with(|c| c.set(Some(count)));
}

/// Allocations so far of the counted threads named `name`.
pub(crate) fn allocations(name: &str) -> u64 {
    THREADS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, c)| c.load(Ordering::Relaxed))
        .sum()
}

fn note() {
    // `try_with`: the thread-local may be gone while a thread ends.
    let _ = COUNT.try_with(|c| {
        if let Some(c) = c.get() {
            c.fetch_add(1, Ordering::Relaxed);
        }
    });
}

struct Counting;

// SAFETY: every call is passed to `System` unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;
