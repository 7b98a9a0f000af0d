//! Configurations that are provably a simpler net in disguise, proved bit for bit.
//!
//! A NegLU is a ReLU with its signs flipped: `min(0, z) = −relu(−z)`. When a layer of fixed
//! NegLU/ReLU units sits between two linear layers, negating a NegLU unit's incoming weights and
//! bias and its outgoing weights turns it into a ReLU unit and leaves the logits unchanged.
//! Negation is exact in floating point (rounding to nearest is symmetric), so the two nets
//! compute the same bits (up to the sign of a zero); the flipped net's gradients are the
//! original's, flipped; and SGD with
//! momentum and weight decay, linear in parameters and gradients, keeps the two nets flips of each
//! other at every step. The same holds for Min-Maxout: `min(a, b) = −max(−a, −b)`.
//! A symmetric initialisation (N(0, σ²)) draws θ and its flip with equal probability, so such a
//! sweep measures nothing but the ReLU (or Maxout) net — docs/experiments.md says so.

use netc::ir::{Mode, Program, Tensor};
use netc::train::optimizer::{Slot, Update};

type Named = (String, Tensor);

fn model(example: &str, set: &[(&str, &str)]) -> netc::Model {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(example);
    let source = netc::Source::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let set: Vec<(String, String)> = set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    netc::model(&source, &set, None).unwrap_or_else(|e| panic!("{e}"))
}

/// The units of `layer` that play its second part (NegLUs, min units), as lowering chose them.
fn second_part_units(model: &netc::Model, layer: &str) -> Vec<usize> {
    let choices = netc::lower::all_fixed_units(model.net(), model.train().seed);
    let choice = choices.iter().find(|c| c.layer == layer).unwrap_or_else(|| panic!("no fixed units in {layer}"));
    choice.units_of(1)
}

/// Negates, for every unit `u` of `units`, the rows `rows_of(u)` of `incoming.weight` and
/// `incoming.bias`, and the elements of `outgoing.weight` that read unit `u`.
fn flip(params: &mut [Named], incoming: &str, outgoing: &str, rows: &[usize], units: &[usize], unit_count: usize) {
    for (name, tensor) in params.iter_mut() {
        let shape = tensor.shape().to_vec();
        let data = tensor.data_mut();
        if *name == format!("{incoming}.weight") {
            let row: usize = shape[1..].iter().product();
            for &r in rows {
                data[r * row..(r + 1) * row].iter_mut().for_each(|w| *w = -*w);
            }
        } else if *name == format!("{incoming}.bias") {
            rows.iter().for_each(|&r| data[r] = -data[r]);
        } else if *name == format!("{outgoing}.weight") {
            let block: usize = shape[2..].iter().product();
            for (i, w) in data.iter_mut().enumerate() {
                if units.contains(&((i / block) % unit_count)) {
                    *w = -*w;
                }
            }
        }
    }
}

/// Loss, logits and gradients (in parameter order) of one training step on the interpreter.
fn step(program: &Program, params: &[Named], data: &Tensor, labels: &Tensor) -> (Vec<f32>, Vec<f32>, Vec<Vec<f32>>) {
    let feed = netc::interp::Feed { data: Some(data), labels: Some(labels), step: 1, params };
    let out = netc::interp::Interpreter::default().run(program, &feed).unwrap_or_else(|e| panic!("{e}"));
    let get = |name: &str| out.get(name).unwrap_or_else(|| panic!("no output {name}")).data().to_vec();
    let grads = params.iter().map(|(name, _)| get(name)).collect();
    (get("loss"), get("logits"), grads)
}

fn batch(seed: u64) -> (Tensor, Tensor) {
    let key = netc::ir::rng::Key { seed, stream: netc::ir::rng::stream("equivalence"), step: 0 };
    let images = (0..4 * 784).map(|i| key.uniform(i) as f32 - 0.5).collect();
    let labels = (0..4).map(|i| key.below(10_000 + i, 10) as f32).collect();
    (Tensor::new(vec![4, 1, 28, 28], images).unwrap(), Tensor::new(vec![4], labels).unwrap())
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Panics, naming the first differing element, unless `got` and `want` hold the same numbers:
/// identical bits, except that a zero's sign may differ (`w·0` is `−0` when `w < 0`, and the
/// flip turns one into the other), which no computation of these nets turns into a difference.
fn assert_same_numbers(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a == 0.0 && b == 0.0);
    if let Some(i) = (0..got.len()).find(|&i| !same(got[i], want[i])) {
        panic!("{what}: element {i} is {}, expected {}", got[i], want[i]);
    }
}

/// Trains `a` from `params_a` and `b` from its flip for a few SGD steps on the interpreter, and
/// checks at every step: the same loss and logits bit for bit, `b`'s gradients the flip of
/// `a`'s, and after the update `b`'s parameters the flip of `a`'s.
fn assert_flip_equivalent(a: &netc::Model, b: &netc::Model, flip_params: &dyn Fn(&mut [Named])) {
    let program_a = netc::run::compile(a, Mode::Train, true).unwrap();
    let program_b = netc::run::compile(b, Mode::Train, true).unwrap();
    let mut params_a = netc::run::init_params(a, &program_a);
    let mut params_b = params_a.clone();
    flip_params(&mut params_b);
    assert_ne!(params_a, params_b, "the flip changes the parameters");
    let optimizer = &a.train().optimizer;
    let mults = vec![(1.0, 1.0); params_a.len()];
    let mut slots_a: Vec<Slot> = params_a.iter().map(|(_, t)| Slot::new(optimizer, t.len())).collect();
    let mut slots_b = slots_a.clone();
    for t in 0..3 {
        let (data, labels) = batch(t);
        let (loss_a, logits_a, grads_a) = step(&program_a, &params_a, &data, &labels);
        let (loss_b, logits_b, grads_b) = step(&program_b, &params_b, &data, &labels);
        assert_same_numbers(&loss_b, &loss_a, &format!("step {t}: the loss"));
        assert_same_numbers(&logits_b, &logits_a, &format!("step {t}: the logits"));
        let mut flipped: Vec<Named> = params_a
            .iter()
            .zip(&grads_a)
            .map(|((n, p), g)| (n.clone(), Tensor::new(p.shape().to_vec(), g.clone()).unwrap()))
            .collect();
        flip_params(&mut flipped);
        for ((name, want), got) in flipped.iter().zip(&grads_b) {
            assert_same_numbers(got, want.data(), &format!("step {t}: the gradient of {name}"));
        }
        let update = Update { optimizer, lr: 0.01, t: t + 1, mults: &mults };
        update.apply(&mut params_a, &grads_a, &mut slots_a);
        update.apply(&mut params_b, &grads_b, &mut slots_b);
        let mut want = params_a.clone();
        flip_params(&mut want);
        for ((name, w), (_, got)) in want.iter().zip(&params_b) {
            assert_same_numbers(got.data(), w.data(), &format!("step {t}: {name} after the update"));
        }
    }
}

#[test]
fn a_fixed_mixlu_between_linear_layers_is_a_relu_net_with_flipped_signs() {
    let mixlu = model("mixlu_lenet.net", &[("negfrac", "0.1"), ("mask", "fixed"), ("grad", "exact")]);
    let relu = model("lenet.net", &[]);
    let neglus = second_part_units(&mixlu, "mixlu1");
    assert_eq!(neglus.len(), 50);
    assert_flip_equivalent(&mixlu, &relu, &|p| flip(p, "conv3", "conv4", &neglus, &neglus, 500));
}

#[test]
fn a_net_of_neglus_alone_is_a_relu_net_with_flipped_signs() {
    let relu = model("lenet.net", &[]);
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/lenet.net")).unwrap();
    let neglu_source = netc::Source::new("neglu_lenet.net", source.replacen("    relu\n", "    neglu\n", 1));
    let neglu = netc::model(&neglu_source, &[], None).unwrap_or_else(|e| panic!("{e}"));
    let all: Vec<usize> = (0..500).collect();
    assert_flip_equivalent(&neglu, &relu, &|p| flip(p, "conv3", "conv4", &all, &all, 500));
}

#[test]
fn fixed_min_maxout_before_a_linear_layer_is_maxout_with_flipped_signs() {
    let minmax = model("minmaxout.net", &[("minfrac", "0.5")]);
    let maxout = model("minmaxout.net", &[("minfrac", "0")]);
    let mins = second_part_units(&minmax, "minmaxout1");
    assert_eq!(mins.len(), 250);
    // A unit's two pieces are consecutive channels of conv3.
    let pieces: Vec<usize> = mins.iter().flat_map(|&u| [2 * u, 2 * u + 1]).collect();
    assert_flip_equivalent(&minmax, &maxout, &|p| flip(p, "conv3", "conv4", &pieces, &mins, 500));
}

#[test]
fn the_flip_is_not_an_equivalence_when_a_max_pool_follows() {
    // A control: max-pooling does not commute with negation, so the same flip changes the logits.
    let with_pool = |act: &str| {
        let src = format!(
            "net t {{\n input x: [1, 28, 28]\n conv(4, k=5)\n {act}\n maxpool(2, stride=2)\n conv(10, k=12)\n loss softmax_xent(classes=10)\n}}\ntrain {{ init = normal(std=0.1) }}"
        );
        netc::model(&netc::Source::new("t.net", src), &[], None).unwrap_or_else(|e| panic!("{e}"))
    };
    let (neglu, relu) = (with_pool("neglu"), with_pool("relu"));
    let program_n = netc::run::compile(&neglu, Mode::Train, true).unwrap();
    let program_r = netc::run::compile(&relu, Mode::Train, true).unwrap();
    let params = netc::run::init_params(&neglu, &program_n);
    let mut flipped = params.clone();
    flip(&mut flipped, "conv1", "conv2", &[0, 1, 2, 3], &[0, 1, 2, 3], 4);
    let (data, labels) = batch(9);
    let (_, logits_n, _) = step(&program_n, &params, &data, &labels);
    let (_, logits_r, _) = step(&program_r, &flipped, &data, &labels);
    assert_ne!(bits(&logits_n), bits(&logits_r));
}

/// With no NegLUs a MixLU layer is a ReLU layer under every reading: the programs of the three
/// readings are the same program, so a sweep runs 0% once and shares it between them.
#[test]
fn every_reading_of_mixlu_at_zero_negfrac_is_the_same_program() {
    let readings: [&[(&str, &str)]; 3] = [
        &[("mask", "fixed"), ("grad", "exact"), ("eval", "expect")],
        &[("mask", "resample"), ("grad", "exact"), ("eval", "expect")],
        &[("mask", "resample"), ("grad", "relu"), ("eval", "sample")],
    ];
    for mode in [Mode::Train, Mode::Eval] {
        let programs: Vec<String> = readings
            .iter()
            .map(|reading| {
                let set: Vec<(&str, &str)> = [("negfrac", "0")].into_iter().chain(reading.iter().copied()).collect();
                let program = netc::run::lower(&model("mixlu_lenet.net", &set), mode).unwrap();
                assert!(!program.uses_step(), "{mode:?}: a draw at negfrac=0");
                program.to_string()
            })
            .collect();
        assert_eq!(programs[0], programs[1], "{mode:?}");
        assert_eq!(programs[0], programs[2], "{mode:?}");
    }
}
