//! A run at a prepared batch size allocates nothing: a counting global allocator watches.

mod common;

use common::{case, example};
use netc_exec::{ExecOptions, Executor, Feed};
use netc_ir::Mode;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's obligations are passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (on any thread) during `runs` runs after a warm-up run.
fn steady_state_allocations(src: &str, threads: usize, runs: usize) -> usize {
    let c = case(src, Mode::Train, true, 16, 9);
    let data_name = c.data_name();
    let mut inputs: Vec<(&str, &[f32])> = vec![(&data_name, c.data.data()), ("labels", c.labels.data())];
    inputs.extend(c.params.iter().map(|(n, t)| (n.as_str(), t.data())));
    let mut exec = Executor::new(&c.program, ExecOptions { threads }).expect("compiles");
    let feed = |step| Feed { batch: 16, step, inputs: &inputs };
    exec.run(&feed(0)).expect("warm-up run");
    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for step in 1..=runs as u64 {
        exec.run(&feed(step)).expect("run");
    }
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCATIONS.load(Ordering::SeqCst)
}

#[test]
fn steady_state_runs_do_not_allocate() {
    // One test function: the counter is global, so nothing else may run concurrently.
    let resampled = example("mixlu_lenet.net")
        .replace("mixlu(negfrac=negfrac, mask=mask, grad=grad)", "mixlu(negfrac=0.25, mask=resample)");
    for (name, src) in
        [("lenet", example("lenet.net")), ("mixlu resampled", resampled), ("residual", example("residual.net"))]
    {
        for threads in [1, 2] {
            let n = steady_state_allocations(&src, threads, 100);
            assert_eq!(n, 0, "{name} with {threads} threads: {n} allocations in 100 runs");
        }
    }
}
