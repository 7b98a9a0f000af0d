//! The compiled SGD update against its formula, for any thread count.

use netc_exec::{ExecError, ExecOptions, Executor, Sgd};

fn executor(threads: usize) -> Executor {
    let src = "net tiny {\n  input x: [3]\n  dense(2)\n  loss softmax_xent(classes=2)\n}";
    let checked = netc_check::check(&netc_syntax::parse(src).unwrap(), &[]).unwrap();
    let forward =
        netc_lower::lower(&checked.nets[0], netc_lower::LowerOptions { mode: netc_ir::Mode::Train, seed: 0 }).unwrap();
    Executor::new(&netc_ir::grad(&forward).unwrap(), ExecOptions { threads, ..ExecOptions::default() }).unwrap()
}

/// Tensors long enough for several tasks, with an odd tail.
fn tensors(n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let w = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
    let m = (0..n).map(|i| ((i * 11 % 13) as f32 - 6.0) / 10.0).collect();
    let g = (0..n).map(|i| ((i * 7 % 17) as f32 - 8.0) / 3.0).collect();
    (w, m, g)
}

#[test]
fn the_compiled_update_follows_the_matconvnet_formula_for_any_thread_count() {
    let sgd = Sgd { lr: 0.01, momentum: 0.9, weight_decay: 0.0005 };
    let n = 70_001;
    let mut results = Vec::new();
    for threads in [1, 2, 3] {
        let (mut w, mut m, g) = tensors(n);
        executor(threads).sgd_update(sgd, &mut w, &mut m, &g).unwrap();
        results.push((w, m));
    }
    let (w0, m0, g) = tensors(n);
    for i in 0..n {
        let m = sgd.momentum * m0[i] - sgd.weight_decay * w0[i] - g[i];
        let w = w0[i] + sgd.lr * m;
        assert!((results[0].1[i] - m).abs() <= 1e-6 * (1.0 + m.abs()), "momentum {i}");
        assert!((results[0].0[i] - w).abs() <= 1e-6 * (1.0 + w.abs()), "weight {i}");
    }
    for other in &results[1..] {
        assert!(other.0.iter().zip(&results[0].0).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(other.1.iter().zip(&results[0].1).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

#[test]
fn an_update_of_mismatched_tensors_is_refused() {
    let sgd = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 };
    let (mut w, mut m, g) = (vec![1.0; 4], vec![0.0; 3], vec![0.5; 4]);
    let err = executor(1).sgd_update(sgd, &mut w, &mut m, &g).unwrap_err();
    assert_eq!(err, ExecError::UpdateLengths { weights: 4, momentum: 3, gradient: 4 });
    assert_eq!(w, vec![1.0; 4], "nothing is written");
}
