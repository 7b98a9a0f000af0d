//! A run at a prepared batch size allocates nothing: a counting global allocator watches.

mod common;
#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use common::{case, example};
use counting_alloc::allocations_during;
use netc_exec::{ExecOptions, Executor, Feed};
use netc_ir::Mode;

/// Allocations (on any thread) during `runs` runs after a warm-up run.
fn steady_state_allocations(src: &str, threads: usize, runs: usize) -> usize {
    let c = case(src, Mode::Train, true, 16, 9);
    let data_name = c.data_name();
    let mut inputs: Vec<(&str, &[f32])> = vec![(&data_name, c.data.data()), ("labels", c.labels.data())];
    inputs.extend(c.params.iter().map(|(n, t)| (n.as_str(), t.data())));
    let mut exec = Executor::new(&c.program, ExecOptions { threads, ..ExecOptions::default() }).expect("compiles");
    let feed = |step| Feed { batch: 16, step, inputs: &inputs };
    exec.run(&feed(0)).expect("warm-up run");
    allocations_during(|| {
        for step in 1..=runs as u64 {
            exec.run(&feed(step)).expect("run");
        }
    })
}

#[test]
fn steady_state_runs_do_not_allocate() {
    // One test function: the counter is global, so nothing else may run concurrently.
    let mixlu = example("mixlu_lenet.net");
    let resampled = mixlu.replace("mixlu(negfrac=negfrac,", "mixlu(negfrac=0.25,");
    assert_ne!(resampled, mixlu, "the example's mixlu line moved");
    for (name, src) in
        [("lenet", example("lenet.net")), ("mixlu resampled", resampled), ("residual", example("residual.net"))]
    {
        for threads in [1, 2] {
            let n = steady_state_allocations(&src, threads, 100);
            assert_eq!(n, 0, "{name} with {threads} threads: {n} allocations in 100 runs");
        }
    }
}
