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

/// The tiny net's inputs in slot order: data, labels and parameters, for `batch` examples.
fn inputs(exec: &Executor, batch: usize, weights: &[f32], bias: &[f32]) -> Vec<Vec<f32>> {
    exec.input_names()
        .map(|name| match name {
            "x" => (0..batch * 3).map(|i| (i % 5) as f32 - 2.0).collect(),
            netc_ir::LABELS => (0..batch).map(|i| (i % 2) as f32).collect(),
            "dense1.weight" => weights.to_vec(),
            _ => bias.to_vec(),
        })
        .collect()
}

#[test]
fn held_parameters_train_to_the_bits_of_fed_ones_across_batch_sizes() {
    let sgd = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 0.0005 };
    let (w0, b0) = (vec![0.1, -0.2, 0.3, 0.05, -0.15, 0.25], vec![0.01, -0.02]);
    for threads in [1, 2] {
        // Fed: parameters copied in, gradients out, updated by `sgd_update`.
        let mut fed = executor(threads);
        let names: Vec<String> = fed.input_names().map(str::to_string).collect();
        let param_slots: Vec<usize> = (0..names.len()).filter(|&s| names[s].starts_with("dense1.")).collect();
        let grads: Vec<_> = param_slots.iter().map(|&s| fed.output_slot(&names[s]).unwrap()).collect();
        let mut params = vec![w0.clone(), b0.clone()];
        let mut momenta = vec![vec![0.0; 6], vec![0.0; 2]];
        // Held: the same steps with the parameters inside the executor.
        let mut held = executor(threads);
        let mut held_momenta = momenta.clone();
        for (&slot, p) in param_slots.iter().zip(&params) {
            held.hold(slot, p).unwrap();
        }
        for (step, batch) in [4, 4, 3, 4, 1].into_iter().enumerate() {
            let values = inputs(&fed, batch, &params[0], &params[1]);
            fed.run_slots(batch, step as u64, |s| &values[s]).unwrap();
            let computed: Vec<Vec<f32>> = grads.iter().map(|&g| fed.output_at(g).unwrap().to_vec()).collect();
            for ((p, m), g) in params.iter_mut().zip(&mut momenta).zip(&computed) {
                fed.sgd_update(sgd, p, m, g).unwrap();
            }
            let asked = std::cell::Cell::new(0);
            held.run_slots(batch, step as u64, |s| {
                assert!(!param_slots.contains(&s), "a held input is not asked for");
                asked.set(asked.get() + 1);
                &values[s]
            })
            .unwrap();
            assert_eq!(asked.get(), names.len() - param_slots.len());
            held.update_held(|updates| {
                for ((&slot, &g), m) in param_slots.iter().zip(&grads).zip(&mut held_momenta) {
                    updates.sgd(sgd, slot, g, m).unwrap();
                }
            })
            .unwrap();
            for (&slot, p) in param_slots.iter().zip(&params) {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(held.held(slot).unwrap()), bits(p), "step {step}, {threads} threads");
            }
            assert_eq!(held_momenta, momenta);
        }
    }
}

#[test]
fn held_inputs_are_refused_where_they_cannot_be() {
    let sgd = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 };
    let mut exec = executor(1);
    let slots = exec.input_names().count();
    assert_eq!(exec.hold(slots, &[1.0]), Err(ExecError::UnknownSlot { slot: slots }));
    let weight = exec.input_names().position(|n| n == "dense1.weight").unwrap();
    let err = exec.hold(weight, &[1.0; 5]).unwrap_err();
    assert!(matches!(err, ExecError::InputLength { expected: 6, got: 5, .. }), "{err:?}");
    exec.hold(weight, &[0.5; 6]).unwrap();
    let gradient = exec.output_slot("dense1.weight").unwrap();
    // No run yet: no gradient to apply.
    let sgd_held =
        |exec: &mut Executor, slot, len| exec.update_held(|u| u.sgd(sgd, slot, gradient, &mut vec![0.0; len]));
    assert_eq!(sgd_held(&mut exec, weight, 6).unwrap_err(), ExecError::NoRun);
    // After a run: an input that is not held, a momentum of the wrong length.
    let values = inputs(&exec, 2, &[0.5; 6], &[0.0; 2]);
    exec.run_slots(2, 0, |s| &values[s]).unwrap();
    let bias = exec.input_names().position(|n| n == "dense1.bias").unwrap();
    assert_eq!(sgd_held(&mut exec, bias, 2), Ok(Err(ExecError::UnknownSlot { slot: bias })));
    assert_eq!(
        sgd_held(&mut exec, weight, 5),
        Ok(Err(ExecError::UpdateLengths { weights: 6, momentum: 5, gradient: 6 }))
    );
    assert_eq!(exec.held(weight), Some(&[0.5; 6][..]));
}
