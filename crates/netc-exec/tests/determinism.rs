//! Results are bitwise identical from run to run and for any thread count.

mod common;

use common::{assert_bitwise, case, example, outputs};
use netc_exec::{ExecOptions, Executor};
use netc_ir::Mode;

fn check(name: &str, src: &str) {
    let c = case(src, Mode::Train, true, 8, 11);
    let reference = c.execute(1);
    for threads in [1, 2, 3] {
        let mut exec = Executor::new(&c.program, ExecOptions { threads, ..ExecOptions::default() }).expect("compiles");
        for run in 0..2 {
            c.run_on(&mut exec);
            assert_bitwise(&format!("{name}, {threads} threads, run {run}"), &outputs(&exec), &reference);
        }
    }
}

#[test]
fn lenet_forward_and_backward_is_bitwise_reproducible() {
    check("lenet", &example("lenet.net"));
}

#[test]
fn resampled_mixlu_is_bitwise_reproducible() {
    let src = example("mixlu_lenet.net")
        .replace("mixlu(negfrac=negfrac, mask=mask, grad=grad)", "mixlu(negfrac=0.25, mask=resample)");
    check("mixlu_lenet resampled", &src);
}

#[test]
fn other_batch_sizes_in_between_do_not_disturb_a_plan() {
    let src = example("lenet.net");
    let big = case(&src, Mode::Train, true, 8, 3);
    let small = case(&src, Mode::Train, true, 3, 4);
    let mut exec = Executor::new(&big.program, ExecOptions { threads: 2, ..ExecOptions::default() }).expect("compiles");
    big.run_on(&mut exec);
    let first = outputs(&exec);
    small.run_on(&mut exec);
    assert_bitwise("batch 3 on a shared executor", &outputs(&exec), &small.execute(1));
    big.run_on(&mut exec);
    assert_bitwise("batch 8 again", &outputs(&exec), &first);
}
