//! Reverse-mode automatic differentiation as a program-to-program transformation.
//!
//! Each op has one vector-Jacobian rule (`vjp`): given the gradient `g` of the loss with
//! respect to an instruction's result, it emits instructions computing the gradient with
//! respect to each operand that needs one. Gradient instructions keep the source layer of the
//! instruction they differentiate, so a NaN in a backward pass is reported against its layer.
//!
//! Only forward ops have rules; the backward and derivative ops that `grad` emits do not, so a
//! gradient program cannot be differentiated again.

use crate::op::{BinaryFn, Input, InputKind, Op, PoolKind, UnaryFn};
use crate::program::{Builder, Inst, OutputKind, Program, ValueId};
use crate::rules::ShapeError;
use crate::shape::{Dim, Shape};
use std::fmt;

/// Why a program cannot be differentiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GradError {
    pub message: String,
}

impl fmt::Display for GradError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for GradError {}

impl From<ShapeError> for GradError {
    fn from(e: ShapeError) -> GradError {
        GradError { message: format!("internal error while differentiating: {e}") }
    }
}

/// The program computing everything `forward` computes plus, for every parameter, the gradient
/// of the scalar `loss` output, as an output of kind `Gradient` named like the parameter.
/// Parameters the loss does not depend on get a zero gradient. Dead values are pruned.
pub fn grad(forward: &Program) -> Result<Program, GradError> {
    let loss = forward
        .outputs()
        .iter()
        .find(|o| o.kind == OutputKind::Loss)
        .ok_or_else(|| GradError { message: "the program has no loss output".into() })?
        .value;
    let insts = forward.insts();
    if insts[loss.0].shape.rank() != 0 {
        return Err(GradError { message: format!("the loss must be a scalar, not {}", insts[loss.0].shape) });
    }
    // Values that depend on a parameter: only they need gradients.
    let mut needs = vec![false; insts.len()];
    for (i, inst) in insts.iter().enumerate() {
        needs[i] = matches!(&inst.op, Op::Input(Input { kind: InputKind::Param(_), .. }))
            || inst.args.iter().any(|a| needs[a.0]);
    }
    let mut b = Builder::from_program(forward.clone());
    let mut grads: Vec<Option<ValueId>> = vec![None; insts.len()];
    b.use_source(insts[loss.0].source);
    grads[loss.0] = Some(b.push(Op::Fill { value: 1.0, shape: Shape::scalar() }, &[])?);
    for (i, inst) in insts.iter().enumerate().rev() {
        let Some(g) = grads[i].filter(|_| needs[i]) else { continue };
        b.use_source(inst.source);
        let wants: Vec<bool> = inst.args.iter().map(|a| needs[a.0]).collect();
        let contributions = vjp(&mut b, inst, g, &wants).map_err(|e| match forward.source_of(ValueId(i)) {
            Some(src) => GradError { message: format!("{} (in `{}`)", e.message, src.name) },
            None => e,
        })?;
        for (arg, dx) in inst.args.iter().zip(contributions) {
            let Some(dx) = dx else { continue };
            grads[arg.0] = Some(match grads[arg.0] {
                Some(sum) => b.push(Op::Add, &[sum, dx])?,
                None => dx,
            });
        }
    }
    for p in forward.params() {
        let g = match grads[p.value.0] {
            Some(g) => g,
            None => {
                b.use_source(insts[p.value.0].source);
                b.push(Op::Fill { value: 0.0, shape: Shape::fixed(&p.shape) }, &[])?
            }
        };
        b.output(p.name, OutputKind::Gradient, g)?;
    }
    Ok(b.finish())
}

fn zeros(b: &mut Builder, shape: Shape) -> Result<ValueId, GradError> {
    Ok(b.push(Op::Fill { value: 0.0, shape }, &[])?)
}

fn shape_of(b: &Builder, v: ValueId) -> Result<Shape, GradError> {
    b.shape(v).cloned().ok_or_else(|| GradError { message: format!("internal error: {v} is undefined") })
}

/// Whether `v` is the constant 1, so multiplying by it can be skipped.
fn is_one(b: &Builder, v: ValueId) -> bool {
    matches!(b.inst(v).map(|i| &i.op), Some(Op::Fill { value, .. }) if *value == 1.0)
}

/// The gradients of `f(a, b)` with respect to `a` and `b` (where wanted), given the gradient `g`
/// of its result. Where a function has no derivative, the conventions are the built-ins':
/// `max(a, b)` passes the gradient to `a` only where `a > b` (so `max(x, 0)` has ReLU's
/// derivative 0 at 0), `min(a, b)` to `a` only where `a < b`; comparisons are piecewise constant
/// and pass none. `pow(a, b)` with respect to `b` is `aᵇ·ln a`, NaN where `a < 0`.
fn binary_vjp(
    b: &mut Builder,
    f: BinaryFn,
    args: &[ValueId],
    g: ValueId,
    want_a: bool,
    want_b: bool,
) -> Result<Vec<Option<ValueId>>, GradError> {
    let (x, y) = (args[0], args[1]);
    let mut out = vec![None, None];
    match f {
        BinaryFn::Less
        | BinaryFn::LessEqual
        | BinaryFn::Greater
        | BinaryFn::GreaterEqual
        | BinaryFn::Equal
        | BinaryFn::NotEqual => {}
        BinaryFn::Div => {
            if want_a {
                out[0] = Some(b.push(Op::Binary(BinaryFn::Div), &[g, y])?);
            }
            if want_b {
                // d(x/y)/dy = −(x/y)/y; the quotient is the forward value (the builder finds it).
                let quotient = b.push(Op::Binary(BinaryFn::Div), &[x, y])?;
                let scaled = b.push(Op::Mul, &[g, quotient])?;
                let over = b.push(Op::Binary(BinaryFn::Div), &[scaled, y])?;
                out[1] = Some(b.push(Op::Unary(UnaryFn::Scale { c: -1.0 }), &[over])?);
            }
        }
        BinaryFn::Min | BinaryFn::Max => {
            let picks_a = if f == BinaryFn::Max { BinaryFn::Greater } else { BinaryFn::Less };
            let mask = b.push(Op::Binary(picks_a), &[x, y])?;
            let z = zeros(b, shape_of(b, g)?)?;
            if want_a {
                out[0] = Some(b.push(Op::Select, &[mask, g, z])?);
            }
            if want_b {
                out[1] = Some(b.push(Op::Select, &[mask, z, g])?);
            }
        }
        BinaryFn::Pow => {
            let power = b.push(Op::Binary(BinaryFn::Pow), &[x, y])?;
            if want_a {
                // d(xʸ)/dx = y·x^(y−1), which is finite at x = 0 for y ≥ 1.
                let one = b.push(Op::Fill { value: 1.0, shape: shape_of(b, y)? }, &[])?;
                let lowered = b.push(Op::Sub, &[y, one])?;
                let lower_power = b.push(Op::Binary(BinaryFn::Pow), &[x, lowered])?;
                let slope = b.push(Op::Mul, &[y, lower_power])?;
                out[0] = Some(b.push(Op::Mul, &[g, slope])?);
            }
            if want_b {
                let ln = b.push(Op::Unary(UnaryFn::Log), &[x])?;
                let slope = b.push(Op::Mul, &[power, ln])?;
                out[1] = Some(b.push(Op::Mul, &[g, slope])?);
            }
        }
    }
    Ok(out)
}

/// The gradient with respect to each operand (where `wants` says so) of an instruction whose
/// result has gradient `g`.
fn vjp(b: &mut Builder, inst: &Inst, g: ValueId, wants: &[bool]) -> Result<Vec<Option<ValueId>>, GradError> {
    let args = &inst.args;
    let want = |i: usize| wants.get(i).copied().unwrap_or(false);
    let arg_shape = |b: &Builder, i: usize| shape_of(b, args[i]);
    let not_differentiable = || GradError {
        message: format!("`{}` has no gradient rule; programs are differentiated once", inst.op.name()),
    };
    let mut out: Vec<Option<ValueId>> = vec![None; args.len()];
    match &inst.op {
        // No operands, or only the step counter: nothing to propagate.
        Op::Input(_) | Op::Const(_) | Op::Fill { .. } | Op::RandomBernoulli { .. } | Op::RandomParts { .. } => {}
        Op::RandomNormal { .. } | Op::StopGradient => {}
        // The value passes the gradient on for its parameters; `x` gets the given derivative.
        Op::CustomGrad => {
            out[0] = Some(g);
            if want(1) {
                out[1] = Some(b.push(Op::Mul, &[g, args[2]])?);
            }
        }
        Op::Unary(UnaryFn::Scale { c }) => out[0] = Some(b.push(Op::Unary(UnaryFn::Scale { c: *c }), &[g])?),
        Op::Unary(f) => {
            let d = f.derivative().ok_or_else(not_differentiable)?;
            let dydx = b.push(Op::Unary(d), &[args[0]])?;
            out[0] = Some(b.push(Op::Mul, &[g, dydx])?);
        }
        Op::Add => out = vec![Some(g), Some(g)],
        Op::Sub => {
            out[0] = Some(g);
            if want(1) {
                out[1] = Some(b.push(Op::Unary(UnaryFn::Scale { c: -1.0 }), &[g])?);
            }
        }
        Op::Mul => {
            if want(0) {
                out[0] = Some(b.push(Op::Mul, &[g, args[1]])?);
            }
            if want(1) {
                out[1] = Some(b.push(Op::Mul, &[g, args[0]])?);
            }
        }
        Op::Binary(f) => out = binary_vjp(b, *f, args, g, want(0), want(1))?,
        // The mask is piecewise constant: it gets no gradient.
        Op::Select => {
            let z = zeros(b, shape_of(b, g)?)?;
            if want(1) {
                out[1] = Some(b.push(Op::Select, &[args[0], g, z])?);
            }
            if want(2) {
                out[2] = Some(b.push(Op::Select, &[args[0], z, g])?);
            }
        }
        Op::Broadcast { shape, axes } => {
            let others: Vec<usize> = (0..shape.rank()).filter(|a| !axes.contains(a)).collect();
            out[0] = Some(if others.is_empty() { g } else { b.push(Op::ReduceSum { axes: others }, &[g])? });
        }
        Op::Reshape { .. } => {
            let shape = arg_shape(b, 0)?;
            out[0] = Some(b.push(Op::Reshape { shape }, &[g])?);
        }
        Op::Concat { axis } => {
            let mut start = 0;
            for (i, o) in out.iter_mut().enumerate() {
                let len = arg_shape(b, i)?.fixed_at(*axis).unwrap_or(0);
                if want(i) {
                    *o = Some(b.push(Op::Slice { axis: *axis, start, len }, &[g])?);
                }
                start += len;
            }
        }
        Op::Slice { axis, start, len } => {
            let x = arg_shape(b, 0)?;
            let total = x.fixed_at(*axis).unwrap_or(0);
            let mut pieces = Vec::new();
            for (offset, extent) in [(0, *start), (start + len, total.saturating_sub(start + len))] {
                if extent > 0 {
                    let mut s = x.clone();
                    s.0[*axis] = Dim::Fixed(extent);
                    pieces.push((offset, zeros(b, s)?));
                }
            }
            pieces.push((*start, g));
            pieces.sort_by_key(|p| p.0);
            let parts: Vec<ValueId> = pieces.into_iter().map(|p| p.1).collect();
            out[0] = Some(if parts.len() == 1 { g } else { b.push(Op::Concat { axis: *axis }, &parts)? });
        }
        Op::ReduceSum { axes } => {
            let shape = arg_shape(b, 0)?;
            let kept: Vec<usize> = (0..shape.rank()).filter(|a| !axes.contains(a)).collect();
            out[0] = Some(b.push(Op::Broadcast { shape, axes: kept }, &[g])?);
        }
        Op::ReduceMax { axis } => out[0] = Some(b.push(Op::ReduceMaxBackward { axis: *axis }, &[args[0], g])?),
        Op::MatMul { trans_a, trans_b } => {
            let (ta, tb) = (*trans_a, *trans_b);
            // C = A'·B' with A' = op(a), B' = op(b): dA' = G·B'ᵀ and dB' = A'ᵀ·G.
            if want(0) {
                out[0] = Some(if ta {
                    b.push(Op::MatMul { trans_a: tb, trans_b: true }, &[args[1], g])?
                } else {
                    b.push(Op::MatMul { trans_a: false, trans_b: !tb }, &[g, args[1]])?
                });
            }
            if want(1) {
                out[1] = Some(if tb {
                    b.push(Op::MatMul { trans_a: true, trans_b: ta }, &[g, args[0]])?
                } else {
                    b.push(Op::MatMul { trans_a: !ta, trans_b: false }, &[args[0], g])?
                });
            }
        }
        Op::BiasAdd => {
            out[0] = Some(g);
            if want(1) {
                let rank = shape_of(b, g)?.rank();
                let axes: Vec<usize> = (0..rank).filter(|&a| a != 1).collect();
                out[1] = Some(b.push(Op::ReduceSum { axes }, &[g])?);
            }
        }
        Op::Conv2d(conv) => {
            if want(0) {
                let x = arg_shape(b, 0)?;
                let input_hw = [x.fixed_at(2).unwrap_or(0), x.fixed_at(3).unwrap_or(0)];
                out[0] = Some(b.push(Op::Conv2dBackwardData { conv: *conv, input_hw }, &[g, args[1]])?);
            }
            if want(1) {
                let w = arg_shape(b, 1)?;
                let kernel = [w.fixed_at(2).unwrap_or(0), w.fixed_at(3).unwrap_or(0)];
                out[1] = Some(b.push(Op::Conv2dBackwardFilter { conv: *conv, kernel }, &[args[0], g])?);
            }
        }
        Op::Pool { kind: PoolKind::Max, window } => out[0] = Some(b.push(Op::MaxPoolBackward(*window), &[args[0], g])?),
        Op::Pool { kind: PoolKind::Avg, window } => {
            let x = arg_shape(b, 0)?;
            let input_hw = [x.fixed_at(2).unwrap_or(0), x.fixed_at(3).unwrap_or(0)];
            out[0] = Some(b.push(Op::AvgPoolBackward { window: *window, input_hw }, &[g])?);
        }
        // The labels are data: they get no gradient.
        Op::SoftmaxXent => {
            let dz = b.push(Op::SoftmaxXentGrad, &[args[0], args[1]])?;
            out[0] = Some(if is_one(b, g) {
                dz
            } else {
                let shape = arg_shape(b, 0)?;
                let gb = b.push(Op::Broadcast { shape, axes: vec![] }, &[g])?;
                b.push(Op::Mul, &[gb, dz])?
            });
        }
        Op::ReduceMaxBackward { .. }
        | Op::Conv2dBackwardData { .. }
        | Op::Conv2dBackwardFilter { .. }
        | Op::MaxPoolBackward(_)
        | Op::AvgPoolBackward { .. }
        | Op::SoftmaxXentGrad => return Err(not_differentiable()),
    }
    for (o, w) in out.iter_mut().zip(wants) {
        if !w {
            *o = None;
        }
    }
    Ok(out)
}
