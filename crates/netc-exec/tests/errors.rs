//! Bad feeds are refused with typed errors, and a diverged run is traced to its layer.

mod common;

use common::{case, example};
use netc_exec::{ExecError, ExecOptions, Executor, Feed};
use netc_ir::Mode;

fn mlp() -> common::Case {
    case(&example("mlp.net"), Mode::Train, true, 2, 5)
}

fn feed_of(c: &common::Case) -> Vec<(&str, &[f32])> {
    let mut inputs: Vec<(&str, &[f32])> = vec![("image", c.data.data()), ("labels", c.labels.data())];
    inputs.extend(c.params.iter().map(|(n, t)| (n.as_str(), t.data())));
    inputs
}

#[test]
fn missing_unknown_duplicate_and_misshapen_inputs_are_refused() {
    let c = mlp();
    let mut exec = Executor::new(&c.program, ExecOptions { threads: 1, ..ExecOptions::default() }).expect("compiles");
    let full = feed_of(&c);
    let run = |exec: &mut Executor, inputs: &[(&str, &[f32])], batch: usize| exec.run(&Feed { batch, step: 0, inputs });

    let without_labels: Vec<_> = full.iter().copied().filter(|(n, _)| *n != "labels").collect();
    assert_eq!(run(&mut exec, &without_labels, 2), Err(ExecError::MissingInput { name: "labels".into() }));
    let mut extra = full.clone();
    extra.push(("dense9.weight", &[1.0]));
    assert_eq!(run(&mut exec, &extra, 2), Err(ExecError::UnexpectedInput { name: "dense9.weight".into() }));
    let mut twice = full.clone();
    twice.push(full[0]);
    assert_eq!(run(&mut exec, &twice, 2), Err(ExecError::UnexpectedInput { name: "image".into() }));
    let err = run(&mut exec, &full, 3).unwrap_err();
    assert_eq!(err, ExecError::InputLength { name: "image".into(), expected: 3 * 784, got: 2 * 784 });
    assert_eq!(run(&mut exec, &full, 0), Err(ExecError::EmptyBatch));
    assert!(exec.output("loss").is_none(), "no successful run yet");

    let bad_labels = [1.0, 10.0];
    let mut bad = full.clone();
    bad[1] = ("labels", &bad_labels);
    let err = run(&mut exec, &bad, 2).unwrap_err();
    assert_eq!(err, ExecError::BadLabel { example: 1, value: 10.0, classes: 10 });
    assert_eq!(err.to_string(), "label 10 of example 1 is not a class index in 0..10");

    run(&mut exec, &full, 2).expect("runs");
    assert!(exec.output("loss").is_some());
    assert!(exec.output("no such output").is_none());
}

#[test]
fn the_first_non_finite_value_is_traced_to_its_layer() {
    let src = example("lenet.net");
    for threads in [1, 2] {
        let mut c = case(&src, Mode::Train, true, 2, 6);
        // An infinite conv2 bias: conv2's bias add is the first value to overflow.
        let bias = c.params.iter_mut().find(|(n, _)| n == "conv2.bias").expect("conv2.bias");
        bias.1.data_mut()[3] = f32::INFINITY;
        let mut exec = Executor::new(&c.program, ExecOptions { threads, ..ExecOptions::default() }).expect("compiles");
        c.run_on(&mut exec);
        // (ReLU maps NaN to 0, so the loss may well stay finite; some gradient does not.)
        let outputs = common::outputs(&exec);
        assert!(outputs.iter().any(|(_, v)| !v.iter().all(|x| x.is_finite())));
        let found = exec.first_non_finite().expect("a non-finite value");
        // The parameter input itself comes first in program order.
        assert_eq!(found.op, "param");
        assert_eq!(found.source.as_ref().map(|s| s.name.as_str()), Some("conv2"));

        // Finite parameters but a huge input: the first conv overflows inside its fused step.
        let mut c = case(&src, Mode::Train, true, 2, 6);
        c.data.data_mut().iter_mut().for_each(|v| *v *= 1e38);
        c.run_on(&mut exec);
        let found = exec.first_non_finite().expect("a non-finite value");
        let interp = netc_interp::Interpreter { check_finite: true };
        let feed = netc_interp::Feed { data: Some(&c.data), labels: Some(&c.labels), step: c.step, params: &c.params };
        match interp.run(&c.program, &feed) {
            Err(netc_interp::RunError::NonFinite { value, op, source }) => {
                assert_eq!(found.op, "conv2d");
                assert_eq!((found.value, found.op, found.source), (value, op, source));
            }
            other => panic!("the interpreter should diverge too: {other:?}"),
        }
    }
}

#[test]
fn a_finite_run_has_no_non_finite_value() {
    let c = mlp();
    let mut exec = Executor::new(&c.program, ExecOptions { threads: 2, ..ExecOptions::default() }).expect("compiles");
    assert!(exec.first_non_finite().is_none(), "nothing ran yet");
    c.run_on(&mut exec);
    let before = exec.output("dense1.weight").expect("gradient").to_vec();
    assert!(exec.first_non_finite().is_none());
    assert_eq!(
        exec.output("dense1.weight").expect("gradient"),
        &before[..],
        "the check run recomputes the same values"
    );
}

#[test]
fn a_batch_too_large_for_memory_is_refused() {
    let c = mlp();
    let mut exec = Executor::new(&c.program, ExecOptions { threads: 1, ..ExecOptions::default() }).expect("compiles");
    assert_eq!(exec.prepare(usize::MAX / 4), Err(ExecError::TooLarge { batch: usize::MAX / 4 }));
    assert_eq!(exec.prepare(1 << 40), Err(ExecError::TooLarge { batch: 1 << 40 }));
    // The executor still works afterwards.
    c.run_on(&mut exec);
}

#[test]
fn a_plan_over_the_memory_limit_is_refused_before_it_allocates() {
    let c = mlp();
    let unlimited = |batch| {
        let mut exec =
            Executor::new(&c.program, ExecOptions { threads: 1, ..ExecOptions::default() }).expect("compiles");
        exec.prepare(batch)
    };
    let limited =
        |limit| Executor::new(&c.program, ExecOptions { threads: 1, memory_limit: Some(limit) }).expect("compiles");
    let batch = c.labels.len();
    let Err(ExecError::OverBudget { bytes, limit: 1000, .. }) = limited(1000).prepare(batch) else {
        panic!("a 1000-byte limit admits a batch of {batch}");
    };
    assert!(bytes > 1000);
    // Exactly the plan's figure fits; the plan grows with the batch.
    let mut exec = limited(bytes);
    assert_eq!(exec.prepare(batch), Ok(()));
    let larger = 4 * batch;
    assert!(matches!(exec.prepare(larger), Err(ExecError::OverBudget { bytes: more, .. }) if more > bytes));
    assert_eq!(unlimited(larger), Ok(()));
    c.run_on(&mut limited(bytes));
}

#[test]
fn an_overflow_inside_a_pair_of_convolutions_is_traced_to_its_half() {
    // ConvAct's halves run as one step; huge filters of the negative half overflow its
    // convolution alone, which the check must name as the interpreter does.
    let mut c = case(&example("convact.net"), Mode::Train, true, 2, 3);
    let neg = c.params.iter_mut().find(|(n, _)| n == "convact1.neg").expect("convact1.neg");
    neg.1.data_mut().iter_mut().for_each(|w| *w = f32::MAX / 2.0);
    c.data.data_mut().iter_mut().for_each(|v| *v *= 1e3);
    let interp = netc_interp::Interpreter { check_finite: true };
    let feed = netc_interp::Feed { data: Some(&c.data), labels: Some(&c.labels), step: c.step, params: &c.params };
    let Err(netc_interp::RunError::NonFinite { value, op, source }) = interp.run(&c.program, &feed) else {
        panic!("the interpreter should diverge");
    };
    assert_eq!((op, source.as_ref().map(|s| s.name.as_str())), ("conv2d", Some("convact1")));
    for threads in [1, 2] {
        let mut exec = Executor::new(&c.program, ExecOptions { threads, ..ExecOptions::default() }).expect("compiles");
        c.run_on(&mut exec);
        let found = exec.first_non_finite().expect("a non-finite value");
        assert_eq!((found.value, found.op, &found.source), (value, op, &source), "{threads} threads");
    }
}
