//! User-defined units: random unit expressions, parsed, checked and lowered like any `.net` file,
//! have gradients (their learned parameters' included) that match central finite differences in
//! `f64`; a written `grad` is the derivative the input gets; `noise` is drawn per step and gone
//! in evaluation.

mod common;
#[path = "common/unit_exprs.rs"]
mod unit_exprs;

use common::{check_gradients, Options, Setup};
use netc_check::{Init, Net};
use netc_interp::{Feed, Interpreter};
use netc_ir::rng::Key;
use netc_ir::{grad, Mode, Tensor};
use netc_lower::{init_params, lower, LowerOptions};
use proptest::prelude::*;
use unit_exprs::expression;

fn net(src: &str) -> Net {
    let file = netc_syntax::parse(src).unwrap_or_else(|e| panic!("{e:?}\n{src}"));
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

/// `input x: [5]`, a dense layer, the unit, a dense layer and the loss.
fn unit_net(unit: &str, name: &str) -> String {
    format!("{unit}\nnet n {{\n  input x: [5]\n  dense(4)\n  {name}\n  dense(3)\n  loss softmax_xent(classes=3)\n}}")
}

const OPTIONS: Options = Options { h: 1e-3, max_coords: 16, abs: 1e-6, rel: 2e-4, skip_kinks: true };

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
        check_gradients(&forward, &setup, &params, &OPTIONS)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{src}\n{forward}")))?;
    }
}

/// The net's input gradient is not a parameter's, so look at the first layer's weight: with
/// `dense(4, bias=false)` before the unit, `d loss / d w[j][i] = Σ_n δ[n][j] · x[n][i]` where δ is
/// the gradient reaching the unit's input. Two units with equal forward values and derivatives
/// `d` and `−d` give opposite first-layer gradients, everything else equal.
#[test]
fn a_written_grad_is_the_derivative_the_input_gets() {
    let src = |unit: &str| {
        format!("{unit}\nnet n {{\n  input x: [5]\n  dense(4, bias=false)\n  f\n  dense(3)\n  loss softmax_xent(classes=3)\n}}")
    };
    let gradients = |unit: &str| {
        let net = net(&src(unit));
        let forward = lower(&net, LowerOptions { mode: Mode::Train, seed: 5 }).unwrap();
        let backward = grad(&forward).unwrap();
        let params = init_params(&forward, &Init::Xavier, 5);
        let data = random(&[6, 5], 9, 1.0);
        let labels = Tensor::new(vec![6], vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0]).unwrap();
        let feed = Feed { data: Some(&data), labels: Some(&labels), step: 0, params: &params };
        Interpreter::default().run_f64(&backward, &feed).unwrap()
    };
    let exact = gradients("unit f = min(x, 0)");
    let written = gradients("unit f = min(x, 0) grad (x < 0)");
    let flipped = gradients("unit f = min(x, 0) grad -(x < 0)");
    let first = |g: &netc_interp::Outputs64| g.get("dense1.weight").unwrap().to_vec();
    let last = |g: &netc_interp::Outputs64| g.get("dense2.weight").unwrap().to_vec();
    // Writing the true derivative changes nothing; flipping it flips the gradient below the unit.
    assert_eq!(first(&exact), first(&written));
    assert!(first(&exact).iter().any(|&g| g != 0.0));
    assert_eq!(first(&flipped), first(&exact).iter().map(|g| -g).collect::<Vec<_>>());
    // Above the unit nothing changes.
    assert_eq!(last(&flipped), last(&exact));
    assert_eq!(exact.get(netc_ir::LOSS).unwrap(), flipped.get(netc_ir::LOSS).unwrap());
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
