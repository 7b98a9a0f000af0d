//! Forward results of the kernels against hand-computed values and naive references, and the
//! interpreter's handling of inputs, batch sizes and runtime problems.

use netc_interp::{Feed, Interpreter, RunError};
use netc_ir::rng::Key;
use netc_ir::{
    Builder, Conv, Dim, Input, InputKind, Mode, Op, OutputKind, ParamInfo, ParamInit, PoolKind, Program, Shape, Source,
    Tensor, UnaryFn, ValueId, Window,
};
use proptest::prelude::*;

fn param_input(name: &str, shape: &[usize]) -> Op {
    let info =
        ParamInfo { role: netc_ir::ParamRole::Weight, init: ParamInit::Zeros, lr_mult: 1.0, wd_mult: 1.0, sign: None };
    Op::Input(Input { name: name.into(), kind: InputKind::Param(info), shape: Shape::fixed(shape) })
}

/// Runs `op` on parameter inputs holding `args` and returns its result.
fn apply(op: Op, args: &[&Tensor]) -> Tensor {
    let mut b = Builder::new("t", Mode::Eval);
    let ids: Vec<ValueId> =
        args.iter().enumerate().map(|(k, t)| b.push(param_input(&format!("p{k}"), t.shape()), &[]).unwrap()).collect();
    let y = b.push(op, &ids).unwrap();
    b.output("y", OutputKind::Logits, y).unwrap();
    let program = b.finish();
    let params: Vec<(String, Tensor)> = args.iter().enumerate().map(|(k, t)| (format!("p{k}"), (*t).clone())).collect();
    let out =
        Interpreter::default().run(&program, &Feed { data: None, labels: None, step: 0, params: &params }).unwrap();
    out.get("y").unwrap().clone()
}

fn t(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::new(shape.to_vec(), data.to_vec()).unwrap()
}

fn random(shape: &[usize], seed: u64) -> Tensor {
    let key = Key { seed, stream: netc_ir::rng::stream("random"), step: 0 };
    let len: usize = shape.iter().product();
    t(shape, &(0..len as u64).map(|i| (2.0 * key.uniform(i) - 1.0) as f32).collect::<Vec<_>>())
}

/// The textbook definition, with signed indices and explicit bounds checks.
fn naive_conv(x: &Tensor, w: &Tensor, stride: usize, pad: usize, groups: usize) -> Vec<f32> {
    let [n, c, h, wd] = x.shape()[..] else { panic!() };
    let [o, cpg, kh, kw] = w.shape()[..] else { panic!() };
    let ho = (h + 2 * pad - kh) / stride + 1;
    let wo = (wd + 2 * pad - kw) / stride + 1;
    let opg = o / groups;
    let mut y = vec![0.0f32; n * o * ho * wo];
    for b in 0..n {
        for oc in 0..o {
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = 0.0;
                    for k in 0..cpg {
                        let ic = (oc / opg) * cpg + k;
                        for a in 0..kh {
                            for e in 0..kw {
                                let r = (i * stride + a) as isize - pad as isize;
                                let s = (j * stride + e) as isize - pad as isize;
                                if r >= 0 && s >= 0 && (r as usize) < h && (s as usize) < wd {
                                    acc += x.data()[((b * c + ic) * h + r as usize) * wd + s as usize]
                                        * w.data()[((oc * cpg + k) * kh + a) * kw + e];
                                }
                            }
                        }
                    }
                    y[((b * o + oc) * ho + i) * wo + j] = acc;
                }
            }
        }
    }
    y
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn conv2d_matches_the_textbook_definition(
        n in 1..3usize, groups in 1..3usize, cpg in 1..3usize, opg in 1..3usize,
        extra_h in 0..5usize, extra_w in 0..5usize, kh in 1..4usize, kw in 1..4usize, stride in 1..3usize, pad in 0..2usize, seed: u64,
    ) {
        let h = kh.saturating_sub(2 * pad).max(1) + extra_h;
        let w = kw.saturating_sub(2 * pad).max(1) + extra_w;
        let x = random(&[n, groups * cpg, h, w], seed);
        let filter = random(&[groups * opg, cpg, kh, kw], seed ^ 1);
        let y = apply(Op::Conv2d(Conv { stride, pad, groups }), &[&x, &filter]);
        let want = naive_conv(&x, &filter, stride, pad, groups);
        prop_assert_eq!(y.len(), want.len());
        for (a, b) in y.data().iter().zip(&want) {
            prop_assert!((a - b).abs() < 1e-5, "{} vs {}", a, b);
        }
    }
}

#[test]
fn average_pooling_divides_by_the_full_window_and_max_pooling_ignores_padding() {
    let window = Window { kernel: [2, 2], stride: 1, pad: netc_ir::Pad::uniform(1) };
    let ones = Tensor::full(vec![1, 1, 2, 2], 1.0);
    let avg = apply(Op::Pool { kind: PoolKind::Avg, window }, &[&ones]);
    assert_eq!(avg.shape(), &[1, 1, 3, 3]);
    assert_eq!(avg.data(), &[0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25]);
    let negative = t(&[1, 1, 2, 2], &[-1.0, -2.0, -3.0, -4.0]);
    let max = apply(Op::Pool { kind: PoolKind::Max, window }, &[&negative]);
    assert_eq!(max.data(), &[-1.0, -1.0, -2.0, -1.0, -1.0, -2.0, -3.0, -3.0, -4.0]);
    let strided = apply(
        Op::Pool { kind: PoolKind::Max, window: Window { kernel: [2, 2], stride: 2, pad: netc_ir::Pad::uniform(0) } },
        &[&random(&[2, 3, 5, 5], 1)],
    );
    assert_eq!(strided.shape(), &[2, 3, 2, 2]);
}

#[test]
fn asymmetric_padding_pads_only_the_sides_it_names() {
    // A 3×3 plane 1..9, 2×2 windows with stride 2, padded below and to the right (MatConvNet's
    // [0 1 0 1]): windows start at rows and columns 0 and 2, the second reaching into the pad.
    let x = t(&[1, 1, 3, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let pad = netc_ir::Pad { top: 0, bottom: 1, left: 0, right: 1 };
    let window = Window { kernel: [2, 2], stride: 2, pad };
    let avg = apply(Op::Pool { kind: PoolKind::Avg, window }, &[&x]);
    assert_eq!(avg.shape(), &[1, 1, 2, 2]);
    // (1+2+4+5)/4, (3+6)/4, (7+8)/4, 9/4: padding counts as zeros in the full window.
    assert_eq!(avg.data(), &[3.0, 2.25, 3.75, 2.25]);
    let max = apply(Op::Pool { kind: PoolKind::Max, window }, &[&x]);
    assert_eq!(max.data(), &[5.0, 6.0, 8.0, 9.0]);
    // Padding above and to the left instead shifts every window up and left by one.
    let before = Window { kernel: [2, 2], stride: 2, pad: netc_ir::Pad { top: 1, bottom: 0, left: 1, right: 0 } };
    assert_eq!(apply(Op::Pool { kind: PoolKind::Max, window: before }, &[&x]).data(), &[1.0, 3.0, 7.0, 9.0]);
}

#[test]
fn matmul_transposes_its_operands() {
    let a = t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let b = t(&[3, 1], &[1.0, 0.0, -1.0]);
    assert_eq!(apply(Op::MatMul { trans_a: false, trans_b: false }, &[&a, &b]).data(), &[-2.0, -2.0]);
    let bt = t(&[1, 3], &[1.0, 0.0, -1.0]);
    assert_eq!(apply(Op::MatMul { trans_a: false, trans_b: true }, &[&a, &bt]).data(), &[-2.0, -2.0]);
    let c = t(&[2, 2], &[1.0, 1.0, 0.0, 1.0]);
    // aᵀ·c = [[1, 5], [2, 7], [3, 9]]
    assert_eq!(apply(Op::MatMul { trans_a: true, trans_b: false }, &[&a, &c]).data(), &[1.0, 5.0, 2.0, 7.0, 3.0, 9.0]);
}

#[test]
fn shape_ops_move_the_right_elements() {
    let x = t(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(apply(Op::ReduceSum { axes: vec![0] }, &[&x]).data(), &[5.0, 7.0, 9.0]);
    assert_eq!(apply(Op::ReduceSum { axes: vec![1] }, &[&x]).data(), &[6.0, 15.0]);
    assert_eq!(apply(Op::ReduceSum { axes: vec![0, 1] }, &[&x]).data(), &[21.0]);
    assert_eq!(apply(Op::ReduceMax { axis: 0 }, &[&x]).data(), &[4.0, 5.0, 6.0]);
    assert_eq!(apply(Op::Slice { axis: 1, start: 1, len: 2 }, &[&x]).data(), &[2.0, 3.0, 5.0, 6.0]);
    let y = t(&[2, 1], &[7.0, 8.0]);
    assert_eq!(apply(Op::Concat { axis: 1 }, &[&x, &y]).data(), &[1.0, 2.0, 3.0, 7.0, 4.0, 5.0, 6.0, 8.0]);
    let b = t(&[3], &[10.0, 20.0, 30.0]);
    let wide = apply(Op::Broadcast { shape: Shape::fixed(&[2, 3]), axes: vec![1] }, &[&b]);
    assert_eq!(wide.data(), &[10.0, 20.0, 30.0, 10.0, 20.0, 30.0]);
    assert_eq!(apply(Op::BiasAdd, &[&x, &b]).data(), &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
    let column = t(&[2], &[1.0, 2.0]);
    let tall = apply(Op::Broadcast { shape: Shape::fixed(&[2, 3]), axes: vec![0] }, &[&column]);
    assert_eq!(tall.data(), &[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
}

fn softmax_program(classes: usize) -> Program {
    let mut b = Builder::new("t", Mode::Eval);
    let z = b
        .push(Op::Input(Input { name: "z".into(), kind: InputKind::Data, shape: Shape::batched(&[classes]) }), &[])
        .unwrap();
    let l = b
        .push(Op::Input(Input { name: "labels".into(), kind: InputKind::Labels, shape: Shape(vec![Dim::Batch]) }), &[])
        .unwrap();
    let loss = b.push(Op::SoftmaxXent, &[z, l]).unwrap();
    b.output("loss", OutputKind::Loss, loss).unwrap();
    b.finish()
}

#[test]
fn softmax_cross_entropy_is_the_batch_mean_and_stable() {
    let program = softmax_program(2);
    let run = |z: &[f32], labels: &[f32]| {
        let z = t(&[labels.len(), 2], z);
        let labels = t(&[labels.len()], labels);
        let feed = Feed { data: Some(&z), labels: Some(&labels), step: 0, params: &[] };
        Interpreter::default().run(&program, &feed).map(|o| o.get("loss").unwrap().data()[0])
    };
    assert!((run(&[0.0, 0.0], &[0.0]).unwrap() - 2f32.ln()).abs() < 1e-6);
    assert_eq!(run(&[1000.0, 0.0], &[1.0]).unwrap(), 1000.0);
    // Mean of ln 2 and 1000.
    assert!((run(&[0.0, 0.0, 1000.0, 0.0], &[0.0, 1.0]).unwrap() - (2f32.ln() + 1000.0) / 2.0).abs() < 1e-3);
    assert_eq!(run(&[0.0, 0.0], &[2.0]), Err(RunError::BadLabel { example: 0, value: 2.0, classes: 2 }));
    assert_eq!(run(&[0.0, 0.0], &[0.5]), Err(RunError::BadLabel { example: 0, value: 0.5, classes: 2 }));
}

#[test]
fn inputs_are_checked_against_the_program() {
    let program = softmax_program(3);
    let z = Tensor::zeros(vec![2, 3]);
    let labels = Tensor::zeros(vec![3]);
    let run = |z: Option<&Tensor>, labels: Option<&Tensor>| {
        Interpreter::default().run(&program, &Feed { data: z, labels, step: 0, params: &[] })
    };
    assert_eq!(run(Some(&z), None), Err(RunError::MissingInput { name: "labels".into() }));
    assert!(matches!(run(Some(&z), Some(&labels)), Err(RunError::BatchSize { .. })));
    let wrong = Tensor::zeros(vec![2, 4]);
    assert!(matches!(run(Some(&wrong), Some(&labels)), Err(RunError::InputShape { .. })));
    let empty = Tensor::zeros(vec![0, 3]);
    let no_labels = Tensor::zeros(vec![0]);
    assert!(matches!(run(Some(&empty), Some(&no_labels)), Err(RunError::BatchSize { .. })));
}

#[test]
fn a_nan_is_reported_with_its_source_layer() {
    let mut b = Builder::new("t", Mode::Eval);
    let x = b.push(param_input("p", &[2]), &[]).unwrap();
    b.set_source(Source::new("blowup", Some(3), netc_ir::Span::new(5, 9)));
    let y = b.push(Op::Unary(UnaryFn::Scale { c: 1e30 }), &[x]).unwrap();
    let z = b.push(Op::Sub, &[y, y]).unwrap();
    b.output("z", OutputKind::Logits, z).unwrap();
    let program = b.finish();
    let params = vec![("p".to_string(), t(&[2], &[1e10, 1.0]))];
    let err =
        Interpreter::default().run(&program, &Feed { data: None, labels: None, step: 0, params: &params }).unwrap_err();
    assert_eq!(err.layer().map(|s| s.name.as_str()), Some("blowup"));
    assert!(err.to_string().contains("`scale` produced a NaN or infinity (%1) in `blowup`"), "{err}");
    // In f64 the value is finite.
    let out =
        Interpreter::default().run_f64(&program, &Feed { data: None, labels: None, step: 0, params: &params }).unwrap();
    assert_eq!(out.get("z").unwrap(), &[0.0, 0.0]);
    let unchecked = Interpreter { check_finite: false };
    assert!(unchecked.run(&program, &Feed { data: None, labels: None, step: 0, params: &params }).is_ok());
}

fn random_program(op: Op) -> Program {
    let mut b = Builder::new("t", Mode::Train);
    b.push(Op::Input(Input { name: "x".into(), kind: InputKind::Data, shape: Shape::batched(&[1]) }), &[]).unwrap();
    let step =
        b.push(Op::Input(Input { name: "step".into(), kind: InputKind::Step, shape: Shape::scalar() }), &[]).unwrap();
    let m = b.push(op, &[step]).unwrap();
    b.output("m", OutputKind::Logits, m).unwrap();
    b.finish()
}

#[test]
fn random_ops_depend_on_seed_stream_and_step_only() {
    let key = netc_ir::RandomKey { seed: 4, stream: netc_ir::RandomStream::Dropout("d".into()) };
    let program = random_program(Op::RandomBernoulli { keep: 0.7, key, shape: Shape::batched(&[50, 40]) });
    let x = Tensor::zeros(vec![3, 1]);
    let run = |step| {
        Interpreter::default()
            .run(&program, &Feed { data: Some(&x), labels: None, step, params: &[] })
            .unwrap()
            .get("m")
            .unwrap()
            .clone()
    };
    let (a, b, c) = (run(1), run(1), run(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let kept = a.data().iter().filter(|&&v| v == 1.0).count() as f64 / a.len() as f64;
    assert!((kept - 0.7).abs() < 0.03, "kept {kept}");
    assert!(a.data().iter().all(|&v| v == 0.0 || v == 1.0));

    let key = netc_ir::RandomKey { seed: 4, stream: netc_ir::RandomStream::Mask("m".into()) };
    let program = random_program(Op::RandomParts { fracs: vec![0.5, 0.3, 0.2], key, shape: Shape::batched(&[7]) });
    let out =
        Interpreter::default().run(&program, &Feed { data: Some(&x), labels: None, step: 9, params: &[] }).unwrap();
    let parts = out.get("m").unwrap().data();
    let count = |p: f32| parts.iter().filter(|&&v| v == p).count();
    // 21 elements: 10.5, 6.3, 4.2 → 10, 6, 4 and the remaining one to the largest remainder.
    assert_eq!((count(0.0), count(1.0), count(2.0)), (11, 6, 4));
}
