//! Lowering, differentiation and initialisation: structure of the programs and errors.

use netc_check::{Init, Net, Node};
use netc_ir::{grad, Builder, Input, InputKind, Mode, Op, OutputKind, ParamInfo, ParamInit, Program, Shape, UnaryFn};
use netc_lower::{init_params, lower, LowerOptions};

fn net(src: &str) -> Net {
    let file = netc_syntax::parse(src).unwrap();
    netc_check::check(&file, &[])
        .unwrap_or_else(|e| panic!("{}", netc_syntax::render(&e, "t.net", src, false)))
        .nets
        .remove(0)
}

fn lowered(src: &str, mode: Mode, seed: u64) -> Program {
    lower(&net(src), LowerOptions { mode, seed }).unwrap()
}

fn count(program: &Program, name: &str) -> usize {
    program.insts().iter().filter(|i| i.op.name() == name).count()
}

const DROPOUT: &str = "net d { input x: [4]\n dense(4)\n dropout(p=0.5)\n dense(2)\n loss softmax_xent(classes=2) }";

#[test]
fn only_training_programs_draw_per_step() {
    let train = lowered(DROPOUT, Mode::Train, 0);
    assert!(train.uses_step());
    assert_eq!(count(&train, "random_bernoulli"), 1);
    let eval = lowered(DROPOUT, Mode::Eval, 0);
    assert!(!eval.uses_step());
    assert_eq!(count(&eval, "random_bernoulli"), 0);
    // Fixed masks need no step in either mode.
    let mixlu =
        "net m { input x: [4]\n dense(8)\n mixlu(negfrac=0.5, mask=fixed)\n dense(2)\n loss softmax_xent(classes=2) }";
    assert!(!lowered(mixlu, Mode::Train, 0).uses_step());
}

#[test]
fn lowering_is_deterministic_and_masks_follow_the_seed() {
    let src = "net m { input x: [4]\n dense(64)\n mixlu(negfrac=0.25, mask=fixed)\n dense(2)\n loss softmax_xent(classes=2) }";
    assert_eq!(lowered(src, Mode::Train, 3), lowered(src, Mode::Train, 3));
    assert_ne!(lowered(src, Mode::Train, 3), lowered(src, Mode::Train, 4));
    let mask = |p: &Program| {
        p.insts()
            .iter()
            .find_map(|i| match &i.op {
                Op::Const(t) => Some(t.data().to_vec()),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(mask(&lowered(src, Mode::Train, 3)).iter().sum::<f32>(), 16.0);
    // The same units in evaluation.
    assert_eq!(mask(&lowered(src, Mode::Train, 3)), mask(&lowered(src, Mode::Eval, 3)));
}

#[test]
fn degenerate_mixes_lower_to_a_single_activation() {
    for (negfrac, act) in [("0.0", "relu"), ("1.0", "min"), ("0.01", "relu")] {
        // 0.01 of 8 units rounds to no NegLU at all.
        let src = format!(
            "net m {{ input x: [4]\n dense(8)\n mixlu(negfrac={negfrac}, mask=fixed)\n dense(2)\n loss softmax_xent(classes=2) }}"
        );
        let p = lowered(&src, Mode::Train, 0);
        assert_eq!(count(&p, "select"), 0, "{p}");
        assert_eq!(count(&p, act), 1, "{p}");
    }
}

#[test]
fn grad_relu_gives_neglu_units_a_written_derivative() {
    let src = |grad: &str| {
        format!("net m {{ input x: [4]\n dense(8)\n mixlu(negfrac=0.5, grad={grad})\n dense(2)\n loss softmax_xent(classes=2) }}")
    };
    // The prelude's `neglu_relu_grad`: its value through `stop_gradient`, ReLU's derivative
    // joined by `custom_grad` (nets.rs in netc-interp checks the gradient it gives).
    let relu = lowered(&src("relu"), Mode::Train, 0);
    assert_eq!(count(&relu, "custom_grad"), 1, "{relu}");
    assert_eq!(count(&relu, "stop_gradient"), 1, "{relu}");
    let exact = lowered(&src("exact"), Mode::Train, 0);
    assert_eq!(count(&exact, "custom_grad"), 0, "{exact}");
}

#[test]
fn gradients_are_named_like_the_parameters_in_order() {
    let p = grad(&lowered(DROPOUT, Mode::Train, 0)).unwrap();
    let grads: Vec<&str> =
        p.outputs().iter().filter(|o| o.kind == OutputKind::Gradient).map(|o| o.name.as_str()).collect();
    let params: Vec<&str> = p.params().iter().map(|p| p.name).collect();
    assert_eq!(grads, ["dense1.weight", "dense1.bias", "dense2.weight", "dense2.bias"]);
    assert_eq!(grads, params);
    for o in p.outputs().iter().filter(|o| o.kind == OutputKind::Gradient) {
        let param = p.params().into_iter().find(|q| q.name == o.name).unwrap();
        assert_eq!(p.insts()[o.value.0].shape, Shape::fixed(&param.shape));
    }
    assert!(p.output(netc_ir::LOSS).is_some() && p.output(netc_ir::LOGITS).is_some());
}

fn param(name: &str, shape: &[usize]) -> Op {
    let info =
        ParamInfo { role: netc_ir::ParamRole::Weight, init: ParamInit::Zeros, lr_mult: 1.0, wd_mult: 1.0, sign: None };
    Op::Input(Input { name: name.into(), kind: InputKind::Param(info), shape: Shape::fixed(shape) })
}

#[test]
fn unused_parameters_get_zero_gradients_and_dead_code_is_pruned() {
    let mut b = Builder::new("t", Mode::Train);
    let used = b.push(param("used", &[3]), &[]).unwrap();
    b.push(param("unused", &[2, 2]), &[]).unwrap();
    let y = b.push(Op::Unary(UnaryFn::Tanh), &[used]).unwrap();
    let loss = b.push(Op::ReduceSum { axes: vec![0] }, &[y]).unwrap();
    b.output(netc_ir::LOSS, OutputKind::Loss, loss).unwrap();
    let p = grad(&b.finish()).unwrap();
    let unused = p.output("unused").unwrap();
    assert_eq!(p.insts()[unused.value.0].op, Op::Fill { value: 0.0, shape: Shape::fixed(&[2, 2]) });
    let text = p.to_string();
    assert!(text.contains("tanh_deriv"), "{text}");
    // Every instruction but the inputs is read by another or is an output.
    for (i, inst) in p.insts().iter().enumerate() {
        let read =
            p.insts().iter().any(|j| j.args.iter().any(|a| a.0 == i)) || p.outputs().iter().any(|o| o.value.0 == i);
        assert!(read || matches!(inst.op, Op::Input(_)), "dead %{i} in\n{text}");
    }
}

#[test]
fn grad_rejects_programs_it_cannot_differentiate() {
    let mut b = Builder::new("t", Mode::Train);
    let x = b.push(param("x", &[1, 1, 4, 4]), &[]).unwrap();
    b.output("y", OutputKind::Logits, x).unwrap();
    assert_eq!(grad(&b.clone().finish()).unwrap_err().message, "the program has no loss output");
    let mut not_scalar = b.clone();
    not_scalar.output(netc_ir::LOSS, OutputKind::Loss, x).unwrap();
    assert!(grad(&not_scalar.finish()).unwrap_err().message.contains("scalar"));
    // Backward ops have no rule of their own: gradient programs are differentiated once.
    let window = netc_ir::Window { kernel: [2, 2], stride: 2, pad: netc_ir::Pad::uniform(0) };
    let g = b.push(Op::Fill { value: 1.0, shape: Shape::fixed(&[1, 1, 2, 2]) }, &[]).unwrap();
    let dx = b.push(Op::MaxPoolBackward(window), &[x, g]).unwrap();
    let loss = b.push(Op::ReduceSum { axes: vec![0, 1, 2, 3] }, &[dx]).unwrap();
    b.output(netc_ir::LOSS, OutputKind::Loss, loss).unwrap();
    let err = grad(&b.finish()).unwrap_err();
    assert_eq!(err.message, "`maxpool_bwd` has no gradient rule; programs are differentiated once");
}

#[test]
fn a_net_whose_layers_read_later_layers_is_an_error_not_a_panic() {
    let mut n = net(DROPOUT);
    n.layers[0].inputs = vec![Node::Layer(2)];
    let err = lower(&n, LowerOptions { mode: Mode::Train, seed: 0 }).unwrap_err();
    assert_eq!(err.layer, "dense1");
    let mut n = net(DROPOUT);
    n.layers[1].inputs.clear();
    assert!(lower(&n, LowerOptions { mode: Mode::Eval, seed: 0 }).is_err());
    let mut n = net(DROPOUT);
    n.loss.input = Node::Layer(9);
    assert!(lower(&n, LowerOptions { mode: Mode::Eval, seed: 0 }).is_err());
    let mut n = net(DROPOUT);
    n.layers[2].out_shape = vec![3];
    let err = lower(&n, LowerOptions { mode: Mode::Eval, seed: 0 }).unwrap_err();
    assert!(err.to_string().contains("cannot lower `dense2`"), "{err}");
}

#[test]
fn every_example_lowers_in_both_modes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "net") {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        for n in netc_check::check(&netc_syntax::parse(&src).unwrap(), &[]).unwrap().nets {
            for mode in [Mode::Train, Mode::Eval] {
                let p = lower(&n, LowerOptions { mode, seed: 0 }).unwrap();
                assert_eq!(p.params().len(), n.parameters().len());
                grad(&p).unwrap();
            }
        }
    }
}

fn stats(values: &[f32]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

#[test]
fn initial_values_follow_the_configured_distribution() {
    let src = "net i { input x: [1, 12, 12]\n conv(40, k=5)\n convact(k=3)\n flatten\n dense(10)\n loss softmax_xent(classes=10) }";
    let p = lowered(src, Mode::Train, 0);
    let get =
        |params: &[(String, netc_ir::Tensor)], name: &str| params.iter().find(|(n, _)| n == name).unwrap().1.clone();

    let normal = init_params(&p, &Init::Normal { std: 0.1 }, 1);
    let names: Vec<&str> = normal.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["conv1.weight", "conv1.bias", "convact1.pos", "convact1.neg", "dense1.weight", "dense1.bias"]);
    let (mean, var) = stats(get(&normal, "dense1.weight").data());
    assert!(mean.abs() < 0.01 && (var.sqrt() - 0.1).abs() < 0.005, "{mean} {var}");
    assert!(get(&normal, "conv1.bias").data().iter().all(|&v| v == 0.0));
    assert!(get(&normal, "convact1.neg").data().iter().all(|&v| v == 0.0));
    let pos = get(&normal, "convact1.pos");
    assert_eq!(pos.shape(), &[40, 3, 3]);
    for (i, &v) in pos.data().iter().enumerate() {
        assert_eq!(v, if i % 9 == 4 { 1.0 } else { 0.0 });
    }

    // He: N(0, 2 / fan_in) with fan_in = 25 for conv1.
    let he = init_params(&p, &Init::He, 1);
    let (_, var) = stats(get(&he, "conv1.weight").data());
    assert!((var - 2.0 / 25.0).abs() < 0.01, "{var}");
    // Xavier: U(±sqrt(6 / (fan_in + fan_out))), fan_in = 40·8·8 = 2560, fan_out = 10.
    let xavier = init_params(&p, &Init::Xavier, 1);
    let bound = (6.0f64 / 2570.0).sqrt() as f32;
    let w = get(&xavier, "dense1.weight");
    assert!(w.data().iter().all(|v| v.abs() <= bound));
    assert!(w.data().iter().any(|v| v.abs() > 0.9 * bound));

    assert_eq!(init_params(&p, &Init::He, 1), he);
    assert_ne!(init_params(&p, &Init::He, 2), he);
}

#[test]
fn a_layer_initialises_and_scales_its_own_parameters() {
    // cnn_cifar's pattern: the first layer drawn with std 0.01, the next with 0.05; learning
    // rate ×0.1 for weights and ×2 for biases, no decay of biases.
    let src = "net c { input x: [3, 12, 12]
 conv(32, k=5, lr_mult=[0.1, 2], wd_mult=[1, 0])
 conv(32, k=5, init=normal(std=0.05), lr_mult=0.5)
 flatten
 dense(10, init=he)
 loss softmax_xent(classes=10) }";
    let p = lowered(src, Mode::Train, 0);
    let info = |name: &str| p.params().into_iter().find(|q| q.name == name).unwrap().info.clone();
    let mults = |name: &str| (info(name).lr_mult, info(name).wd_mult);
    assert_eq!(mults("conv1.weight"), (0.1, 1.0));
    assert_eq!(mults("conv1.bias"), (2.0, 0.0));
    assert_eq!(mults("conv2.weight"), (0.5, 1.0));
    assert_eq!(mults("conv2.bias"), (0.5, 1.0));
    assert_eq!(info("conv2.weight").init, ParamInit::Drawn(netc_ir::Distribution::Normal { std: 0.05 }));
    assert_eq!(info("dense1.weight").init, ParamInit::Drawn(netc_ir::Distribution::He { fan_in: 32 * 4 * 4 }));
    assert!(matches!(info("conv1.weight").init, ParamInit::Weight { .. }));

    let params = init_params(&p, &Init::Normal { std: 0.01 }, 3);
    let sd = |name: &str| stats(params.iter().find(|(n, _)| n == name).unwrap().1.data()).1.sqrt();
    // 2,400 and 25,600 draws: the sample sd is within a few percent of the distribution's.
    assert!((sd("conv1.weight") / 0.01 - 1.0).abs() < 0.05, "{}", sd("conv1.weight"));
    assert!((sd("conv2.weight") / 0.05 - 1.0).abs() < 0.05, "{}", sd("conv2.weight"));
    assert!((sd("dense1.weight") / (2.0f64 / 512.0).sqrt() - 1.0).abs() < 0.05, "{}", sd("dense1.weight"));
    // The layer's own distribution does not depend on the run's.
    let other = init_params(&p, &Init::Xavier, 3);
    let weight = |ps: &[(String, netc_ir::Tensor)], n: &str| ps.iter().find(|(m, _)| m == n).unwrap().1.clone();
    assert_eq!(weight(&other, "conv2.weight"), weight(&params, "conv2.weight"));
    assert_ne!(weight(&other, "conv1.weight"), weight(&params, "conv1.weight"));
}

const DALE: &str = "net d {
  input x: [3, 6, 6]
  conv(10, k=3)
  relu
  cells = dale(inhibitory=0.3)
  maxpool(2)
  flatten
  hidden = dense(5)
  conv(4, k=1) from cells
  dense(2) from hidden
  loss softmax_xent(classes=2)
}";

fn signs(program: &Program) -> Vec<(String, netc_ir::SignConstraint)> {
    program.params().iter().filter_map(|p| Some((p.name.to_string(), p.info.sign.clone()?))).collect()
}

#[test]
fn dale_signs_every_weight_that_reads_the_population_and_nothing_else() {
    let program = lowered(DALE, Mode::Train, 5);
    let signs = signs(&program);
    let names: Vec<&str> = signs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["hidden.weight", "conv2.weight"]);
    let (_, dense) = &signs[0];
    let (_, conv) = &signs[1];
    // Exactly round(0.3·10) = 3 inhibitory channels, the same for both readers.
    assert_eq!(dense.population, "cells");
    assert_eq!(dense.inhibitory_units(), 3);
    assert_eq!(dense.inhibitory, conv.inhibitory);
    // `hidden` reads the flattened [10, 2, 2] pooling output: 4 columns per channel; conv2 is 1×1.
    assert_eq!((dense.block, conv.block), (4, 1));
    for channel in 0..10 {
        let inhibitory = dense.inhibitory[channel];
        assert!((0..4).all(|p| dense.is_inhibitory(channel * 4 + p) == inhibitory));
        // Row 3 of hidden's [5, 40] weight, row 2 of conv2's [4, 10, 1, 1] weight.
        assert_eq!(dense.is_inhibitory(3 * 40 + channel * 4), inhibitory);
        assert_eq!(conv.is_inhibitory(2 * 10 + channel), inhibitory);
    }
    let text = program.to_string();
    let listed: Vec<String> = (0..10).filter(|&u| dense.inhibitory[u]).map(|u| u.to_string()).collect();
    let line = format!(
        "param hidden.weight role=weight init=fans(40,5) population=cells units=10 block=4 inhibitory=[{}]",
        listed.join(", ")
    );
    assert!(text.contains(&line), "{line}\n{text}");
}

#[test]
fn dale_populations_are_reproducible_from_the_seed() {
    let inhibitory = |seed| signs(&lowered(DALE, Mode::Train, seed))[0].1.inhibitory.clone();
    assert_eq!(inhibitory(5), inhibitory(5));
    assert_eq!(signs(&lowered(DALE, Mode::Eval, 5))[0].1.inhibitory, inhibitory(5));
    assert!((0..8).any(|seed| inhibitory(seed) != inhibitory(5)));
    // The summary's list is the lowering's.
    let choice = netc_lower::fixed_units(&net(DALE), 2, 5).unwrap();
    let listed: Vec<usize> = choice.units_of(1);
    let lowered: Vec<usize> = (0..10).filter(|&c| inhibitory(5)[c]).collect();
    assert_eq!(listed, lowered);
    assert_eq!(choice.parts, ["excitatory", "inhibitory"]);
}

#[test]
fn dale_populations_have_exactly_the_rounded_share_of_inhibitory_units() {
    for units in [1, 2, 3, 7, 20, 101] {
        for f in [0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 1.0] {
            let src = format!(
                "net d {{ input x: [4]\n dense({units})\n relu\n dale(inhibitory={f:?})\n dense(2)\n loss softmax_xent(classes=2) }}"
            );
            for seed in [0, 9] {
                let sign = signs(&lowered(&src, Mode::Train, seed)).remove(0).1;
                assert_eq!(sign.inhibitory.len(), units);
                assert_eq!(sign.inhibitory_units(), (f * units as f64).round() as usize, "f={f} units={units}");
                assert_eq!(sign, signs(&lowered(&src, Mode::Eval, seed)).remove(0).1);
            }
        }
    }
}

#[test]
fn dale_weights_start_with_their_signs() {
    let with_dale = lowered(DALE, Mode::Train, 1);
    let without = lowered(&DALE.replace("dale(inhibitory=0.3)", "dropout(p=0)"), Mode::Train, 1);
    let init = init_params(&with_dale, &Init::Normal { std: 0.1 }, 1);
    let plain = init_params(&without, &Init::Normal { std: 0.1 }, 1);
    let by_name =
        |params: &[(String, netc_ir::Tensor)], name: &str| params.iter().find(|(n, _)| n == name).unwrap().1.clone();
    for (name, sign) in signs(&with_dale) {
        let (w, unconstrained) = (by_name(&init, &name), by_name(&plain, &name));
        // 3 inhibitory and 7 excitatory channels: magnitudes scaled by √(7/3) and √(3/7).
        let scale = |inhibitory: bool| if inhibitory { (7.0f32 / 3.0).sqrt() } else { (3.0f32 / 7.0).sqrt() };
        for (i, (&v, &u)) in w.data().iter().zip(unconstrained.data()).enumerate() {
            let expected = scale(sign.is_inhibitory(i)) * u.abs();
            assert!((v.abs() - expected).abs() <= 1e-6 * expected, "{name}[{i}]: {v} for {u}");
            assert!(if sign.is_inhibitory(i) { v <= 0.0 } else { v >= 0.0 }, "{name}[{i}] = {v}");
        }
    }
}

#[test]
fn a_population_without_inhibitory_units_keeps_weights_nonnegative() {
    let src = DALE.replace("inhibitory=0.3", "inhibitory=0");
    let program = lowered(&src, Mode::Train, 1);
    let (_, sign) = &signs(&program)[0];
    assert_eq!(sign.inhibitory_units(), 0);
    let mut weight = vec![-2.0, -0.5, 0.0, 0.25, 3.0];
    sign.project(&mut weight);
    assert_eq!(weight, [0.0, 0.0, 0.0, 0.25, 3.0]);
    let mut weight = vec![-2.0, 0.5];
    sign.balance_signs(&mut weight);
    assert_eq!(weight, [2.0, 0.5]);
}

#[test]
fn projection_zeroes_exactly_the_wrong_signed_weights() {
    let sign = netc_ir::SignConstraint { population: "p".into(), inhibitory: vec![false, true], block: 2 };
    // Row of 4: units 0, 0, 1, 1; two rows.
    let mut weight = vec![1.0, -1.0, 1.0, -1.0, -3.0, 2.0, -4.0, 5.0];
    sign.project(&mut weight);
    assert_eq!(weight, [1.0, 0.0, 0.0, -1.0, 0.0, 2.0, -4.0, 0.0]);
}

#[test]
fn balanced_signs_cancel_in_expectation_and_keep_the_mean_square() {
    let sign =
        netc_ir::SignConstraint { population: "p".into(), inhibitory: vec![false, true, false, false], block: 1 };
    let mut weight = vec![1.0, 1.0, -1.0, 1.0];
    sign.balance_signs(&mut weight);
    let third = (1.0f32 / 3.0).sqrt();
    assert_eq!(weight, [third, -(3.0f32.sqrt()), third, third]);
    assert!(weight.iter().sum::<f32>().abs() < 1e-6);
    assert!((weight.iter().map(|w| w * w).sum::<f32>() - 4.0).abs() < 1e-5);
}

#[test]
fn fixed_units_cover_every_mixed_layer_with_exact_counts() {
    let src = "net m { input x: [2, 4, 4]
      conv(50, k=1)
      mixlu(negfrac=0.04, mask=fixed)
      mix(relu=0.5, neglu=0.25, tanh=0.25, per=position)
      conv(20, k=1)
      minmaxout(pieces=2, minfrac=0.3)
      mixlu(negfrac=0.5, mask=resample)
      dense(2)
      loss softmax_xent(classes=2) }";
    let choices = netc_lower::all_fixed_units(&net(src), 0);
    let summary: Vec<(&str, Vec<usize>, Vec<usize>)> = choices
        .iter()
        .map(|c| {
            let counts = (0..c.parts.len()).map(|p| c.units_of(p).len()).collect();
            (c.layer.as_str(), c.shape.clone(), counts)
        })
        .collect();
    // The resampled mixlu has no fixed choice.
    assert_eq!(
        summary,
        [
            ("mixlu1", vec![50], vec![48, 2]),
            ("mix1", vec![50, 4, 4], vec![400, 200, 200]),
            ("minmaxout1", vec![10], vec![7, 3]),
        ]
    );
}
