//! Whole networks: gradients of lowered nets against finite differences, and the semantics of
//! the lowered layers (masks, dropout, resampling, minmaxout, convact) observed through runs.
//! User-defined units: random unit expressions have gradients (their learned parameters'
//! included) that match finite differences; a written `grad` is the derivative the input gets;
//! `noise` is drawn per step and gone in evaluation.

mod common;
#[path = "common/unit_exprs.rs"]
mod unit_exprs;

use common::{check_gradients, loss, Options, Setup};
use netc_check::{Init, Net};
use netc_interp::{Feed, Interpreter};
use netc_ir::rng::Key;
use netc_ir::{grad, Mode, Program, Tensor};
use netc_lower::{init_params, lower, LowerOptions};
use proptest::prelude::*;
use unit_exprs::expression;

fn net(src: &str) -> Net {
    let file = netc_syntax::parse(src).unwrap_or_else(|e| panic!("{e:?}"));
    let mut checked =
        netc_check::check(&file, &[]).unwrap_or_else(|e| panic!("{}", netc_syntax::render(&e, "test.net", src, false)));
    checked.nets.remove(0)
}

fn random(shape: &[usize], seed: u64, scale: f64) -> Tensor {
    let key = Key { seed, stream: netc_ir::rng::stream("data"), step: 0 };
    let len: usize = shape.iter().product();
    Tensor::new(shape.to_vec(), (0..len as u64).map(|i| (scale * (2.0 * key.uniform(i) - 1.0)) as f32).collect())
        .unwrap()
}

fn batch(net: &Net, n: usize, seed: u64) -> (Tensor, Tensor) {
    let mut shape = vec![n];
    shape.extend(&net.input.shape);
    let key = Key { seed, stream: netc_ir::rng::stream("labels"), step: 0 };
    let labels = (0..n as u64).map(|i| key.below(i, net.loss.classes as u64) as f32).collect();
    (random(&shape, seed, 1.0), Tensor::new(vec![n], labels).unwrap())
}

const NET_OPTIONS: Options = Options { h: 1e-3, max_coords: 12, abs: 1e-6, rel: 2e-4, skip_kinks: true };

/// Initial parameters moved off the special values they start at: with zero biases a layer
/// whose inputs are all zero (a dead ReLU row) puts the next unit exactly on its kink, and
/// ConvAct's ReLU start feeds max pooling exact ties at zero.
fn generic_params(program: &Program, seed: u64) -> Vec<(String, Tensor)> {
    init_params(program, &Init::Xavier, seed)
        .into_iter()
        .enumerate()
        .map(|(i, (name, t))| {
            let offset = random(t.shape(), seed ^ (i as u64 + 1), 0.3);
            let data = t
                .data()
                .iter()
                .zip(offset.data())
                .map(|(a, b)| if name.ends_with(".weight") { *a } else { a + b })
                .collect();
            (name, Tensor::new(t.shape().to_vec(), data).unwrap())
        })
        .collect()
}

/// Lowers for training, then compares every parameter's gradient (sampled coordinates) with
/// finite differences at batch size `n`. Returns the number of coordinates compared.
fn check_net(net: &Net, n: usize, seed: u64, options: &Options) -> usize {
    let forward = lower(net, LowerOptions { mode: Mode::Train, seed }).unwrap();
    let params = generic_params(&forward, seed);
    let (data, labels) = batch(net, n, seed);
    let setup = Setup { data: Some(&data), labels: Some(&labels), step: 3 };
    check_gradients(&forward, &setup, &params, options).unwrap_or_else(|e| panic!("{}: {e}\n{forward}", net.name))
}

const CONV_STACK: &str = "net conv_stack {
  input x: [2, 7, 7]
  conv(3, k=3, pad=1)
  relu
  maxpool(2, stride=2)
  conv(4, k=[2, 1], stride=1)
  tanh
  avgpool(2, stride=1, pad=1)
  flatten
  dense(5)
  sigmoid
  dropout(p=0.3)
  dense(3)
  loss softmax_xent(classes=3)
}";

const MIXES: &str = "net mixes {
  input x: [6]
  dense(8)
  mixlu(negfrac=0.25, mask=fixed)
  dense(8)
  mix(relu=0.5, softneglu=0.25, leaky_relu=0.25, alpha=0.1)
  dense(6)
  mixlu(negfrac=0.5, mask=resample)
  dense(5)
  mix(tanh=0.4, sigmoid=0.3, neglu=0.3, mask=resample)
  dense(4)
  neglu
  dense(3, bias=false)
  loss softmax_xent(classes=3)
}";

const RESIDUAL: &str = "net residual {
  input x: [2, 5, 5]
  a = conv(2, k=3, pad=1)
  relu
  b = conv(2, k=3, pad=1)
  s = add(b, x, a)
  c = concat(s, a)
  mixlu(negfrac=0.4, per=position)
  conv(3, k=5)
  loss softmax_xent(classes=3)
}";

const MINMAX_CONVACT: &str = "net minmax_convact {
  input x: [3, 4, 4]
  convact(k=3)
  conv(6, k=3)
  minmaxout(pieces=2, minfrac=0.34)
  flatten
  convact(k=1)
  dense(6)
  minmaxout(pieces=2, minfrac=0.5)
  loss softmax_xent(classes=3)
}";

const DALE: &str = "net dale {
  input x: [2, 6, 6]
  conv(4, k=3)
  relu
  cells = dale(inhibitory=0.5)
  maxpool(2)
  flatten
  dense(5)
  softneglu
  dale(inhibitory=0.4)
  scores = dense(3)
  conv(3, k=1) from cells
  loss softmax_xent(classes=3) from scores
}";

#[test]
fn gradients_of_conv_pool_dense_and_dropout_nets() {
    assert!(check_net(&net(CONV_STACK), 3, 11, &NET_OPTIONS) > 40);
}

#[test]
fn gradients_of_mixed_activations() {
    assert!(check_net(&net(MIXES), 4, 5, &NET_OPTIONS) > 40);
}

#[test]
fn gradients_through_add_and_concat() {
    assert!(check_net(&net(RESIDUAL), 2, 2, &NET_OPTIONS) > 30);
}

#[test]
fn gradients_of_minmaxout_and_convact() {
    assert!(check_net(&net(MINMAX_CONVACT), 2, 9, &NET_OPTIONS) > 30);
}

#[test]
fn gradients_through_dale_populations() {
    assert!(check_net(&net(DALE), 2, 4, &NET_OPTIONS) > 30);
}

/// Whether a layer of `net` uses a unit with a written `grad`, whose backward pass is by design
/// not the derivative (tests/units.rs checks what it is instead).
fn writes_a_derivative(net: &Net) -> bool {
    let written = |a: &netc_check::Activation| matches!(a, netc_check::Activation::User(u) if u.def.grad.is_some());
    net.layers.iter().any(|layer| match &layer.op {
        netc_check::Op::Unit(unit) => unit.def.grad.is_some(),
        netc_check::Op::Mix { parts, .. } => parts.iter().any(|(a, _)| written(a)),
        _ => false,
    })
}

/// The `.net` files in the repository's examples, each parameter along a random direction.
#[test]
fn gradients_of_the_examples() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut paths: Vec<_> =
        std::fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    paths.retain(|p| p.extension().is_some_and(|e| e == "net"));
    paths.sort();
    for path in paths {
        let src = std::fs::read_to_string(&path).unwrap();
        let nets = netc_check::check(&netc_syntax::parse(&src).unwrap(), &[]).unwrap().nets;
        for net in nets.into_iter().filter(|n| !writes_a_derivative(n)) {
            let forward = lower(&net, LowerOptions { mode: Mode::Train, seed: 1 }).unwrap();
            let params = generic_params(&forward, 1);
            let (data, labels) = batch(&net, 2, 1);
            let setup = Setup { data: Some(&data), labels: Some(&labels), step: 1 };
            let checked = check_directions(&forward, &setup, &params, 1e-6, 1e-4)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(checked, forward.params().len());
        }
    }
}

fn run(program: &Program, data: &Tensor, step: u64, params: &[(String, Tensor)]) -> Vec<f32> {
    let labels = Tensor::zeros(vec![data.shape()[0]]);
    let feed = Feed { data: Some(data), labels: Some(&labels), step, params };
    Interpreter::default().run(program, &feed).unwrap().get("logits").unwrap().data().to_vec()
}

/// A net whose logits are the layer's output.
fn layer_program(layer: &str, input: &str, classes: usize, mode: Mode, seed: u64) -> Program {
    let src = format!("net t {{\n input x: {input}\n {layer}\n flatten\n loss softmax_xent(classes={classes})\n}}");
    lower(&net(&src), LowerOptions { mode, seed }).unwrap()
}

#[test]
fn fixed_mixlu_masks_exactly_round_negfrac_units_per_channel() {
    for seed in 0..5 {
        let program = layer_program("mixlu(negfrac=0.3, mask=fixed)", "[10]", 10, Mode::Train, seed);
        let ones = Tensor::full(vec![2, 10], 1.0);
        let minus = Tensor::full(vec![2, 10], -1.0);
        let pos = run(&program, &ones, 0, &[]);
        let neg = run(&program, &minus, 0, &[]);
        // ReLU units pass +1, NegLU units pass −1; the same units in every example.
        assert_eq!(pos.iter().filter(|&&v| v == 0.0).count(), 2 * 3);
        for u in 0..10 {
            assert_eq!(pos[u] == 0.0, neg[u] == -1.0);
            assert_eq!(pos[u], pos[10 + u]);
        }
        let eval = layer_program("mixlu(negfrac=0.3, mask=fixed)", "[10]", 10, Mode::Eval, seed);
        assert_eq!(run(&eval, &minus, 0, &[]), neg, "fixed masks are the same in evaluation");
    }
    // Per channel on a spatial input: whole channels switch.
    let program = layer_program("mixlu(negfrac=0.5, mask=fixed)", "[4, 1, 3]", 12, Mode::Train, 3);
    let out = run(&program, &Tensor::full(vec![1, 4, 1, 3], -1.0), 0, &[]);
    let channels: Vec<&[f32]> = out.chunks(3).collect();
    assert_eq!(channels.iter().filter(|c| c.iter().all(|&v| v == -1.0)).count(), 2);
    assert!(channels.iter().all(|c| c.iter().all(|&v| v == c[0])));
    // Per position: a fixed count of all elements.
    let program = layer_program("mixlu(negfrac=0.25, per=position)", "[4, 1, 3]", 12, Mode::Train, 3);
    let out = run(&program, &Tensor::full(vec![1, 4, 1, 3], -1.0), 0, &[]);
    assert_eq!(out.iter().filter(|&&v| v == -1.0).count(), 3);
}

#[test]
fn mix_counts_use_largest_remainders() {
    let program = layer_program("mix(relu=0.5, neglu=0.3, tanh=0.2)", "[7]", 7, Mode::Train, 1);
    let out = run(&program, &Tensor::full(vec![1, 7], -1.0), 0, &[]);
    // 3.5, 2.1, 1.4 → 4, 2, 1: relu gives 0, neglu −1, tanh −0.76.
    assert_eq!(out.iter().filter(|&&v| v == 0.0).count(), 4);
    assert_eq!(out.iter().filter(|&&v| v == -1.0).count(), 2);
    assert_eq!(out.iter().filter(|&&v| (v - (-1f32).tanh()).abs() < 1e-6).count(), 1);
}

#[test]
fn resampled_masks_change_per_step_and_average_in_evaluation() {
    let program = layer_program("mixlu(negfrac=0.25, mask=resample)", "[2, 3]", 6, Mode::Train, 4);
    assert!(program.uses_step());
    let minus = Tensor::full(vec![4, 2, 3], -1.0);
    let step = |s| run(&program, &minus, s, &[]);
    // 24 elements in the batch, exactly 6 NegLUs, chosen afresh per step.
    for s in 0..4 {
        assert_eq!(step(s).iter().filter(|&&v| v == -1.0).count(), 6);
    }
    assert_eq!(step(1), step(1));
    assert_ne!(step(1), step(2));
    let eval = layer_program("mixlu(negfrac=0.25, mask=resample)", "[2, 3]", 6, Mode::Eval, 4);
    assert!(!eval.uses_step());
    assert!(run(&eval, &minus, 0, &[]).iter().all(|&v| (v + 0.25).abs() < 1e-7));
}

#[test]
fn dropout_is_inverted_in_training_and_the_identity_in_evaluation() {
    let program = layer_program("dropout(p=0.25)", "[50]", 50, Mode::Train, 6);
    let ones = Tensor::full(vec![40, 50], 1.0);
    let a = run(&program, &ones, 7, &[]);
    assert!(a.iter().all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
    let kept = a.iter().filter(|&&v| v > 0.0).count() as f64 / a.len() as f64;
    assert!((kept - 0.75).abs() < 0.03, "kept {kept}");
    assert_eq!(a, run(&program, &ones, 7, &[]));
    assert_ne!(a, run(&program, &ones, 8, &[]));
    let eval = layer_program("dropout(p=0.25)", "[50]", 50, Mode::Eval, 6);
    assert_eq!(run(&eval, &ones, 7, &[]), ones.data());
}

#[test]
fn minmaxout_takes_the_max_or_min_of_each_group() {
    let program = layer_program("minmaxout(pieces=3, minfrac=0.5)", "[6]", 2, Mode::Eval, 0);
    let x = Tensor::new(vec![1, 6], vec![1.0, 5.0, 3.0, -2.0, 0.0, 4.0]).unwrap();
    let mut out = run(&program, &x, 0, &[]);
    out.sort_by(f32::total_cmp);
    // One unit takes the max of its group, the other the min of its group.
    assert!(out == [-2.0, 5.0] || out == [1.0, 4.0], "{out:?}");
    // Spatial input, max units only: the group is the channel pair at each position.
    let program = layer_program("minmaxout(pieces=2)", "[2, 1, 2]", 2, Mode::Eval, 0);
    let x = Tensor::new(vec![1, 2, 1, 2], vec![1.0, -4.0, 0.5, 3.0]).unwrap();
    assert_eq!(run(&program, &x, 0, &[]), [1.0, 3.0]);
}

#[test]
fn convact_starts_as_a_relu() {
    let program = layer_program("convact(k=3)", "[2, 3, 3]", 18, Mode::Eval, 0);
    let params = init_params(&program, &Init::Normal { std: 0.01 }, 0);
    let x = random(&[2, 2, 3, 3], 5, 1.0);
    let out = run(&program, &x, 0, &params);
    let want: Vec<f32> = x.data().iter().map(|v| v.max(0.0)).collect();
    assert_eq!(out, want);
    let flat = layer_program("convact(k=1)", "[5]", 5, Mode::Eval, 0);
    let params = init_params(&flat, &Init::He, 0);
    let x = random(&[3, 5], 6, 1.0);
    assert_eq!(run(&flat, &x, 0, &params), x.data().iter().map(|v| v.max(0.0)).collect::<Vec<_>>());
}

#[test]
fn one_program_serves_every_batch_size() {
    let n = net(CONV_STACK);
    let program = lower(&n, LowerOptions { mode: Mode::Eval, seed: 0 }).unwrap();
    let params = init_params(&program, &Init::He, 3);
    let (data, _) = batch(&n, 5, 8);
    let all = run(&program, &data, 0, &params);
    assert_eq!(all.len(), 5 * 3);
    for i in 0..5 {
        let example = Tensor::new(vec![1, 2, 7, 7], data.data()[i * 98..(i + 1) * 98].to_vec()).unwrap();
        let one = run(&program, &example, 0, &params);
        assert_eq!(one, all[i * 3..(i + 1) * 3]);
    }
}

#[test]
fn f32_and_f64_runs_agree() {
    let n = net(MIXES);
    let program = grad(&lower(&n, LowerOptions { mode: Mode::Train, seed: 2 }).unwrap()).unwrap();
    let params = init_params(&program, &Init::He, 2);
    let (data, labels) = batch(&n, 6, 1);
    let feed = Feed { data: Some(&data), labels: Some(&labels), step: 1, params: &params };
    let single = Interpreter::default().run(&program, &feed).unwrap();
    let double = Interpreter::default().run_f64(&program, &feed).unwrap();
    for (name, tensor) in &single.values {
        let precise = double.get(name).unwrap();
        for (a, b) in tensor.data().iter().zip(precise) {
            assert!((f64::from(*a) - b).abs() < 1e-5 * (1.0 + b.abs()), "{name}: {a} vs {b}");
        }
    }
}

/// Compares, for every parameter, the loss change along a random direction of all its
/// coordinates with the analytic gradient's prediction: one pair of runs per parameter checks
/// every coordinate at once. The steps actually representable in `f32` enter the prediction.
/// A mismatch is retried with a ten times smaller step before it counts, in case the first
/// step crossed a kink. Returns the number of parameters checked.
fn check_directions(
    forward: &Program,
    setup: &Setup,
    params: &[(String, Tensor)],
    h: f64,
    rel: f64,
) -> Result<usize, String> {
    let backward = grad(forward).map_err(|e| e.to_string())?;
    let feed = Feed { data: setup.data, labels: setup.labels, step: setup.step, params };
    let analytic = Interpreter::default().run_f64(&backward, &feed).map_err(|e| e.to_string())?;
    let mut params = params.to_vec();
    for p in 0..params.len() {
        let name = params[p].0.clone();
        let g = analytic.get(&name).ok_or_else(|| format!("no gradient for {name}"))?.to_vec();
        let key = Key { seed: 11, stream: netc_ir::rng::stream(&name), step: 0 };
        let mut outcome = Ok(());
        for step in [h, h / 10.0] {
            let base = params[p].1.clone();
            let mut up = base.clone();
            let mut down = base.clone();
            let (mut predicted, mut scale) = (0.0, 0.0);
            for (i, &gi) in g.iter().enumerate() {
                let x = f64::from(base.data()[i]);
                let v = 2.0 * key.uniform(i as u64) - 1.0;
                up.data_mut()[i] = (x + step * v) as f32;
                down.data_mut()[i] = (x - step * v) as f32;
                let delta = f64::from(up.data()[i]) - f64::from(down.data()[i]);
                predicted += gi * delta;
                scale += (gi * delta).abs();
            }
            params[p].1 = up;
            let l_up = loss(forward, setup, &params)?;
            params[p].1 = down;
            let l_down = loss(forward, setup, &params)?;
            params[p].1 = base;
            let numeric = l_up - l_down;
            outcome = if (numeric - predicted).abs() <= rel * scale {
                Ok(())
            } else {
                Err(format!(
                    "{name}: along a random direction the loss changes by {numeric}, the gradient predicts {predicted}"
                ))
            };
            if outcome.is_ok() {
                break;
            }
        }
        outcome?;
    }
    Ok(params.len())
}

/// `input x: [5]`, a dense layer, the unit, a dense layer and the loss.
fn unit_net(unit: &str, name: &str) -> String {
    format!("{unit}\nnet n {{\n  input x: [5]\n  dense(4)\n  {name}\n  dense(3)\n  loss softmax_xent(classes=3)\n}}")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_units_have_the_gradients_of_finite_differences(body in expression(), seed in 0u64..1000) {
        let src = unit_net(&format!("unit u(alpha = learned(0.7)) = {body}"), "u");
        let net = net(&src);
        let forward = lower(&net, LowerOptions { mode: Mode::Train, seed }).unwrap();
        // Weights and the learned `alpha` away from the values they start at.
        let params: Vec<(String, Tensor)> = init_params(&forward, &Init::Xavier, seed)
            .into_iter()
            .enumerate()
            .map(|(i, (name, t))| {
                let offset = random(t.shape(), seed ^ (i as u64 + 1), 0.3);
                let data = t.data().iter().zip(offset.data()).map(|(a, b)| a + b).collect();
                (name, Tensor::new(t.shape().to_vec(), data).unwrap())
            })
            .collect();
        prop_assert!(params.iter().any(|(name, _)| name == "u1.alpha"));
        let data = random(&[3, 5], seed, 1.5);
        let labels = Tensor::new(vec![3], vec![0.0, 2.0, 1.0]).unwrap();
        let setup = Setup { data: Some(&data), labels: Some(&labels), step: 1 };
        check_gradients(&forward, &setup, &params, &NET_OPTIONS)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{src}\n{forward}")))?;
    }
}

/// The gradients of `input x: [5]`, `dense(4, bias=false)`, `layer`, `dense(3)` and the loss, with
/// `unit` defined. The net's input gradient is not a parameter's, so the first layer's weight
/// shows what reaches `layer`'s input: `d loss / d w[j][i] = Σ_n δ[n][j] · x[n][i]`.
fn gradients_around(unit: &str, layer: &str) -> netc_interp::Outputs64 {
    let src = format!(
        "{unit}\nnet n {{\n  input x: [5]\n  dense(4, bias=false)\n  {layer}\n  dense(3)\n  loss softmax_xent(classes=3)\n}}"
    );
    let net = net(&src);
    let forward = lower(&net, LowerOptions { mode: Mode::Train, seed: 5 }).unwrap();
    let backward = grad(&forward).unwrap();
    let params = init_params(&forward, &Init::Xavier, 5);
    let data = random(&[6, 5], 9, 1.0);
    let labels = Tensor::new(vec![6], vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0]).unwrap();
    let feed = Feed { data: Some(&data), labels: Some(&labels), step: 0, params: &params };
    Interpreter::default().run_f64(&backward, &feed).unwrap()
}

fn below(g: &netc_interp::Outputs64) -> Vec<f64> {
    g.get("dense1.weight").unwrap().to_vec()
}

fn above(g: &netc_interp::Outputs64) -> Vec<f64> {
    g.get("dense2.weight").unwrap().to_vec()
}

/// Two units with equal forward values and derivatives `d` and `−d` give opposite first-layer
/// gradients, everything else equal.
#[test]
fn a_written_grad_is_the_derivative_the_input_gets() {
    let exact = gradients_around("unit f = min(x, 0)", "f");
    let written = gradients_around("unit f = min(x, 0) grad (x < 0)", "f");
    let flipped = gradients_around("unit f = min(x, 0) grad -(x < 0)", "f");
    // Writing the true derivative changes nothing; flipping it flips the gradient below the unit.
    assert_eq!(below(&exact), below(&written));
    assert!(below(&exact).iter().any(|&g| g != 0.0));
    assert_eq!(below(&flipped), below(&exact).iter().map(|g| -g).collect::<Vec<_>>());
    // Above the unit nothing changes.
    assert_eq!(above(&flipped), above(&exact));
    assert_eq!(exact.get(netc_ir::LOSS).unwrap(), flipped.get(netc_ir::LOSS).unwrap());
}

/// The prelude's units are their formulas: the built-in `neglu` layer is `min(x, 0)`, and a
/// MixLU's `grad=relu` gives its NegLUs the ReLU derivative, `min(x, 0) grad (x > 0)`, which
/// changes the gradient below the layer and nothing above it.
#[test]
fn prelude_activations_are_their_formulas() {
    let builtin = gradients_around("", "neglu");
    let formula = gradients_around("unit f = min(x, 0)", "f");
    assert_eq!(below(&builtin), below(&formula));
    assert_eq!(above(&builtin), above(&formula));
    let relu_grad = gradients_around("", "mixlu(negfrac=1.0, grad=relu)");
    let written = gradients_around("unit f = min(x, 0) grad (x > 0)", "f");
    assert_eq!(below(&relu_grad), below(&written));
    assert_ne!(below(&relu_grad), below(&builtin));
    assert_eq!(above(&relu_grad), above(&builtin));
    let leaky = gradients_around("", "leaky_relu(alpha=0.2)");
    let leaky_formula = gradients_around("unit f = where(x > 0, x, 0.2 * x)", "f");
    assert_eq!(below(&leaky), below(&leaky_formula));
}

/// A learned parameter keeps its exact gradient under a written `grad`: PReLU with its true
/// derivative written out has the same `alpha` gradient as PReLU by autodiff.
#[test]
fn learned_parameters_keep_their_gradient_under_a_written_grad() {
    let run = |unit: &str| {
        let net = net(&unit_net(unit, "prelu"));
        let forward = lower(&net, LowerOptions { mode: Mode::Train, seed: 2 }).unwrap();
        let backward = grad(&forward).unwrap();
        let params = init_params(&forward, &Init::Xavier, 2);
        let data = random(&[8, 5], 4, 1.0);
        let labels = Tensor::new(vec![8], (0..8).map(|i| (i % 3) as f32).collect()).unwrap();
        let feed = Feed { data: Some(&data), labels: Some(&labels), step: 0, params: &params };
        Interpreter::default().run_f64(&backward, &feed).unwrap()
    };
    let autodiff = run("unit prelu(alpha = learned(0.25)) = max(x, 0) + alpha * min(x, 0)");
    let written = run("unit prelu(alpha = learned(0.25)) = max(x, 0) + alpha * min(x, 0) grad where(x > 0, 1, alpha)");
    assert!(autodiff.get("prelu1.alpha").unwrap().iter().any(|&g| g != 0.0));
    for name in ["prelu1.alpha", "dense1.weight", "dense1.bias", "dense2.weight"] {
        let (a, w) = (autodiff.get(name).unwrap(), written.get(name).unwrap());
        assert!(a.iter().zip(w).all(|(a, w)| (a - w).abs() <= 1e-12 * (1.0 + a.abs())), "{name}: {a:?} vs {w:?}");
    }
}

/// `noise` is a fresh N(0, 1) draw per training step, and 0 in evaluation.
#[test]
fn noise_is_drawn_per_step_and_absent_in_evaluation() {
    let src = unit_net("unit noisy(std = 0.5) = x + std * noise", "noisy");
    let net = net(&src);
    let logits = |mode: Mode, step: u64| {
        let program = lower(&net, LowerOptions { mode, seed: 1 }).unwrap();
        let params = init_params(&program, &Init::Xavier, 1);
        let data = random(&[4, 5], 3, 1.0);
        let labels = Tensor::new(vec![4], vec![0.0, 1.0, 2.0, 0.0]).unwrap();
        let feed = Feed { data: Some(&data), labels: Some(&labels), step, params: &params };
        Interpreter::default().run_f64(&program, &feed).unwrap().get(netc_ir::LOGITS).unwrap().to_vec()
    };
    let (step1, step1_again, step2) = (logits(Mode::Train, 1), logits(Mode::Train, 1), logits(Mode::Train, 2));
    assert_eq!(step1, step1_again, "the same step draws the same noise");
    assert_ne!(step1, step2, "another step draws other noise");
    let net_without = self::net(&unit_net("unit noisy(std = 0.5) = x", "noisy"));
    let program = lower(&net_without, LowerOptions { mode: Mode::Eval, seed: 1 }).unwrap();
    let params = init_params(&program, &Init::Xavier, 1);
    let data = random(&[4, 5], 3, 1.0);
    let labels = Tensor::new(vec![4], vec![0.0, 1.0, 2.0, 0.0]).unwrap();
    let feed = Feed { data: Some(&data), labels: Some(&labels), step: 0, params: &params };
    let clean = Interpreter::default().run_f64(&program, &feed).unwrap().get(netc_ir::LOGITS).unwrap().to_vec();
    assert_eq!(logits(Mode::Eval, 1), clean, "evaluation has no noise");
}
