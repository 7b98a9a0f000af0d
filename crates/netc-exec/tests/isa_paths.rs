//! Every GEMM path (AVX-512, AVX2+FMA, portable) computes bitwise the same training step,
//! forward and backward, on every thread count. Paths this CPU lacks are skipped with a note.

mod common;

use common::{assert_bitwise, case, example, outputs};
use netc_exec::{ExecError, ExecOptions, Executor, Isa};
use netc_ir::Mode;

/// The paths this CPU runs, after printing a note for each one it lacks.
fn available_paths() -> Vec<Isa> {
    for isa in Isa::ALL.into_iter().filter(|isa| !isa.is_available()) {
        println!("note: skipping the {isa} path, which this CPU lacks");
    }
    Isa::ALL.into_iter().filter(|isa| isa.is_available()).collect()
}

fn check(file: &str, batch: usize) {
    let c = case(&example(file), Mode::Train, true, batch, 5);
    let mut reference =
        Executor::new(&c.program, ExecOptions { threads: 1, ..ExecOptions::default() }).expect("compiles");
    reference.set_isa(Isa::Portable).expect("every CPU runs portable code");
    c.run_on(&mut reference);
    let want = outputs(&reference);
    for isa in available_paths() {
        for threads in [1, 2, 3] {
            let mut exec =
                Executor::new(&c.program, ExecOptions { threads, ..ExecOptions::default() }).expect("compiles");
            exec.set_isa(isa).expect("an available path");
            assert_eq!(exec.isa(), isa);
            c.run_on(&mut exec);
            assert_bitwise(&format!("{file} on {isa}, {threads} threads"), &outputs(&exec), &want);
        }
    }
}

#[test]
fn lenet_is_bitwise_identical_on_every_path() {
    check("lenet.net", 12);
}

#[test]
fn mlp_is_bitwise_identical_on_every_path() {
    check("mlp.net", 37);
}

#[test]
fn cifar_lenet5_is_bitwise_identical_on_every_path() {
    check("lenet5_cifar.net", 9);
}

#[test]
fn convact_is_bitwise_identical_on_every_path() {
    check("convact.net", 7);
}

#[test]
fn a_path_the_cpu_lacks_is_refused_by_name() {
    let c = case(&example("mlp.net"), Mode::Train, true, 2, 1);
    let mut exec = Executor::new(&c.program, ExecOptions { threads: 1, ..ExecOptions::default() }).expect("compiles");
    for isa in Isa::ALL {
        match exec.set_isa(isa) {
            Ok(()) => assert!(isa.is_available(), "{isa} accepted but unavailable"),
            Err(e) => {
                assert!(!isa.is_available(), "{isa} refused but available");
                assert_eq!(e, ExecError::IsaUnavailable { isa });
                assert!(e.to_string().contains(isa.name()), "{e}");
            }
        }
    }
}
