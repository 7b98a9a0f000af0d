//! Every op's vector-Jacobian rule against central finite differences, on random shapes (odd
//! sizes included) and inputs. Inputs are distinct non-zero multiples of 1/64 and the step is
//! 2⁻¹⁰, so `x ± h` is exact in `f32`, no ReLU-type op sees a kink and no max a tie within `h`.

mod common;

use common::{check_gradients, Options, Setup};
use netc_ir::rng::Key;
use netc_ir::{
    BinaryFn, Builder, Conv, Dim, Input, InputKind, Mode, Op, OutputKind, ParamInfo, ParamInit, PoolKind, Program,
    Shape, ShapeError, Tensor, UnaryFn, ValueId, Window,
};
use proptest::prelude::*;

const OPTIONS: Options = Options { h: 1.0 / 1024.0, max_coords: 48, abs: 1e-6, rel: 1e-5, skip_kinks: false };

/// `n` distinct non-zero multiples of 1/64 with random signs.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let key = Key { seed, stream: netc_ir::rng::stream("values"), step: 0 };
    key.permutation(n)
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let sign = if key.bits(n as u64 + i as u64) & 1 == 0 { 1.0 } else { -1.0 };
            sign * (p + 1) as f32 / 64.0
        })
        .collect()
}

fn param_input(name: &str, shape: &[usize]) -> Op {
    let info =
        ParamInfo { role: netc_ir::ParamRole::Weight, init: ParamInit::Zeros, lr_mult: 1.0, wd_mult: 1.0, sign: None };
    Op::Input(Input { name: name.into(), kind: InputKind::Param(info), shape: Shape::fixed(shape) })
}

/// A program whose parameters `p0, p1, ...` have the given shapes, applying `body` to them and
/// projecting its result onto a random constant to get a scalar loss.
fn program(
    shapes: &[Vec<usize>],
    seed: u64,
    body: impl FnOnce(&mut Builder, &[ValueId]) -> Result<ValueId, ShapeError>,
) -> Result<(Program, Vec<(String, Tensor)>), ShapeError> {
    let mut b = Builder::new("op", Mode::Train);
    let mut ids = Vec::new();
    let mut params = Vec::new();
    for (k, shape) in shapes.iter().enumerate() {
        let name = format!("p{k}");
        ids.push(b.push(param_input(&name, shape), &[])?);
        let data = values(shape.iter().product(), seed.wrapping_add(k as u64));
        params.push((name, Tensor::new(shape.clone(), data).expect("sized")));
    }
    let y = body(&mut b, &ids)?;
    let shape = b.shape(y).cloned().expect("defined").as_fixed().expect("no batch");
    let key = Key { seed, stream: netc_ir::rng::stream("projection"), step: 0 };
    let r: Vec<f32> =
        (0..shape.iter().product::<usize>() as u64).map(|i| (2.0 * key.uniform(i) - 1.0) as f32).collect();
    let rank = shape.len();
    let r = b.push(Op::Const(Tensor::new(shape, r).expect("sized")), &[])?;
    let yr = b.push(Op::Mul, &[y, r])?;
    let loss = b.push(Op::ReduceSum { axes: (0..rank).collect() }, &[yr])?;
    b.output(netc_ir::LOSS, OutputKind::Loss, loss)?;
    Ok((b.finish(), params))
}

fn check(
    shapes: &[Vec<usize>],
    seed: u64,
    body: impl FnOnce(&mut Builder, &[ValueId]) -> Result<ValueId, ShapeError>,
) -> Result<(), TestCaseError> {
    let (program, params) = program(shapes, seed, body).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let setup = Setup { data: None, labels: None, step: 0 };
    check_gradients(&program, &setup, &params, &OPTIONS).map_err(|e| TestCaseError::fail(format!("{e}\n{program}")))?;
    Ok(())
}

fn dims(rank: std::ops::RangeInclusive<usize>, extent: std::ops::Range<usize>) -> impl Strategy<Value = Vec<usize>> {
    rank.prop_flat_map(move |r| proptest::collection::vec(extent.clone(), r))
}

const UNARY: [UnaryFn; 7] = [
    UnaryFn::Relu,
    UnaryFn::Sigmoid,
    UnaryFn::Tanh,
    UnaryFn::Scale { c: -2.5 },
    UnaryFn::Exp,
    UnaryFn::Abs,
    UnaryFn::Softplus,
];

/// Functions defined for positive arguments only: checked on `|x| + 1`, where the step `h` is
/// small against the curvature.
const POSITIVE_UNARY: [UnaryFn; 3] = [UnaryFn::Log, UnaryFn::Log1p, UnaryFn::Sqrt];

/// `x + c`.
fn plus(b: &mut Builder, x: ValueId, c: f32) -> Result<ValueId, ShapeError> {
    let shape = b.shape(x).cloned().expect("defined");
    let c = b.push(Op::Fill { value: c, shape }, &[])?;
    b.push(Op::Add, &[x, c])
}

/// `x + 1/128`: never a multiple of 1/64, so never within `h` of another input (no ties).
fn offset(b: &mut Builder, x: ValueId) -> Result<ValueId, ShapeError> {
    plus(b, x, 1.0 / 128.0)
}

/// `|x| + 1`.
fn positive(b: &mut Builder, x: ValueId) -> Result<ValueId, ShapeError> {
    let magnitude = b.push(Op::Unary(UnaryFn::Abs), &[x])?;
    plus(b, magnitude, 1.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn unary(shape in dims(1..=3, 1..6), f in 0..UNARY.len(), seed: u64) {
        check(&[shape], seed, |b, p| b.push(Op::Unary(UNARY[f]), &[p[0]]))?;
    }

    #[test]
    fn unary_on_positive_arguments(shape in dims(1..=3, 1..6), f in 0..POSITIVE_UNARY.len(), seed: u64) {
        check(&[shape], seed, |b, p| {
            let x = positive(b, p[0])?;
            b.push(Op::Unary(POSITIVE_UNARY[f]), &[x])
        })?;
    }

    #[test]
    fn binary(shape in dims(1..=3, 1..5), f in 0..BinaryFn::ALL.len(), seed: u64) {
        let f = BinaryFn::ALL[f];
        check(&[shape.clone(), shape], seed, |b, p| {
            let second = offset(b, p[1])?;
            match f {
                // A positive base, a denominator away from 0.
                BinaryFn::Pow => {
                    let base = positive(b, p[0])?;
                    b.push(Op::Binary(f), &[base, second])
                }
                BinaryFn::Div => {
                    let denominator = positive(b, p[1])?;
                    b.push(Op::Binary(f), &[p[0], denominator])
                }
                // Comparisons are piecewise constant: multiplied by an operand, their gradient
                // is the mask itself.
                _ if !matches!(f, BinaryFn::Min | BinaryFn::Max) => {
                    let mask = b.push(Op::Binary(f), &[p[0], second])?;
                    b.push(Op::Mul, &[mask, p[0]])
                }
                _ => b.push(Op::Binary(f), &[p[0], second]),
            }
        })?;
    }

    #[test]
    fn add_sub_mul(shape in dims(1..=3, 1..5), which in 0..4usize, seed: u64) {
        check(&[shape.clone(), shape], seed, |b, p| match which {
            0 => b.push(Op::Add, &[p[0], p[1]]),
            1 => b.push(Op::Sub, &[p[0], p[1]]),
            2 => b.push(Op::Mul, &[p[0], p[1]]),
            // Both operands the same value: the contributions must accumulate.
            _ => b.push(Op::Mul, &[p[0], p[0]]),
        })?;
    }

    #[test]
    fn select(shape in dims(1..=3, 1..5), seed: u64) {
        check(&[shape.clone(), shape.clone()], seed, |b, p| {
            let key = Key { seed, stream: netc_ir::rng::stream("mask"), step: 0 };
            let mask = (0..shape.iter().product::<usize>() as u64).map(|i| (key.bits(i) & 1) as f32).collect();
            let m = b.push(Op::Const(Tensor::new(shape.clone(), mask).expect("sized")), &[])?;
            b.push(Op::Select, &[m, p[0], p[1]])
        })?;
    }

    #[test]
    fn broadcast(out in dims(1..=3, 1..5), keep in 0..8usize, seed: u64) {
        let axes: Vec<usize> = (0..out.len()).filter(|a| keep & (1 << a) != 0).collect();
        let input: Vec<usize> = axes.iter().map(|&a| out[a]).collect();
        check(&[input], seed, |b, p| b.push(Op::Broadcast { shape: Shape::fixed(&out), axes: axes.clone() }, &[p[0]]))?;
    }

    #[test]
    fn reshape(shape in dims(1..=3, 1..5), seed: u64) {
        let total: usize = shape.iter().product();
        check(&[shape], seed, |b, p| b.push(Op::Reshape { shape: Shape::fixed(&[1, total]) }, &[p[0]]))?;
    }

    #[test]
    fn concat(rest in dims(1..=2, 1..4), sizes in proptest::collection::vec(1..4usize, 2..4), axis_pick: usize, seed: u64) {
        let axis = axis_pick % (rest.len() + 1);
        let shapes: Vec<Vec<usize>> = sizes.iter().map(|&s| { let mut v = rest.clone(); v.insert(axis, s); v }).collect();
        check(&shapes, seed, |b, p| b.push(Op::Concat { axis }, p))?;
    }

    #[test]
    fn slice(shape in dims(1..=3, 1..6), axis_pick: usize, a: usize, l: usize, seed: u64) {
        let axis = axis_pick % shape.len();
        let start = a % shape[axis];
        let len = 1 + l % (shape[axis] - start);
        check(&[shape], seed, |b, p| b.push(Op::Slice { axis, start, len }, &[p[0]]))?;
    }

    #[test]
    fn reduce_sum(shape in dims(1..=4, 1..4), pick in 0..16usize, seed: u64) {
        let axes: Vec<usize> = (0..shape.len()).filter(|a| pick & (1 << a) != 0).collect();
        check(&[shape], seed, |b, p| b.push(Op::ReduceSum { axes: axes.clone() }, &[p[0]]))?;
    }

    #[test]
    fn reduce_max(shape in dims(1..=3, 1..5), axis_pick: usize, seed: u64) {
        let axis = axis_pick % shape.len();
        check(&[shape], seed, |b, p| b.push(Op::ReduceMax { axis }, &[p[0]]))?;
    }

    #[test]
    fn matmul(m in 1..5usize, k in 1..5usize, n in 1..5usize, trans_a: bool, trans_b: bool, seed: u64) {
        let a = if trans_a { vec![k, m] } else { vec![m, k] };
        let b_shape = if trans_b { vec![n, k] } else { vec![k, n] };
        check(&[a, b_shape], seed, |b, p| b.push(Op::MatMul { trans_a, trans_b }, &[p[0], p[1]]))?;
    }

    #[test]
    fn bias_add(shape in dims(2..=4, 1..4), seed: u64) {
        check(&[shape.clone(), vec![shape[1]]], seed, |b, p| b.push(Op::BiasAdd, &[p[0], p[1]]))?;
    }

    #[test]
    fn conv2d(
        n in 1..3usize, groups in 1..3usize, cpg in 1..3usize, opg in 1..3usize,
        extra_h in 0..6usize, extra_w in 0..6usize, kh in 1..4usize, kw in 1..4usize,
        stride in 1..3usize, pad in 0..3usize, seed: u64,
    ) {
        // The smallest input the padded window fits, plus some.
        let h = kh.saturating_sub(2 * pad).max(1) + extra_h;
        let w = kw.saturating_sub(2 * pad).max(1) + extra_w;
        let x = vec![n, groups * cpg, h, w];
        let filter = vec![groups * opg, cpg, kh, kw];
        check(&[x, filter], seed, |b, p| b.push(Op::Conv2d(Conv { stride, pad, groups }), &[p[0], p[1]]))?;
    }

    #[test]
    fn pool(
        n in 1..3usize, c in 1..3usize, extra_h in 0..6usize, extra_w in 0..6usize,
        kh in 1..4usize, kw in 1..4usize, stride in 1..4usize, pad_pick: usize, max: bool, seed: u64,
    ) {
        let pad = pad_pick % kh.min(kw);
        let h = kh.saturating_sub(2 * pad).max(1) + extra_h;
        let w = kw.saturating_sub(2 * pad).max(1) + extra_w;
        let kind = if max { PoolKind::Max } else { PoolKind::Avg };
        let window = Window { kernel: [kh, kw], stride, pad: netc_ir::Pad::uniform(pad) };
        check(&[vec![n, c, h, w]], seed, |b, p| b.push(Op::Pool { kind, window }, &[p[0]]))?;
    }

    #[test]
    fn softmax_xent(batch in 1..5usize, classes in 1..7usize, seed: u64) {
        let key = Key { seed, stream: netc_ir::rng::stream("labels"), step: 0 };
        let labels: Vec<f32> = (0..batch as u64).map(|i| key.below(i, classes as u64) as f32).collect();
        let labels = Tensor::new(vec![batch], labels).expect("sized");
        let (program, params) = program(&[vec![batch, classes]], seed, |b, p| {
            let l = b.push(Op::Input(Input { name: "labels".into(), kind: InputKind::Labels, shape: Shape(vec![Dim::Fixed(batch)]) }), &[])?;
            b.push(Op::SoftmaxXent, &[p[0], l])
        }).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let setup = Setup { data: None, labels: Some(&labels), step: 0 };
        check_gradients(&program, &setup, &params, &OPTIONS).map_err(TestCaseError::fail)?;
    }
}
