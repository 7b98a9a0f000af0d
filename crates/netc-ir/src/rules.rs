//! The shape rule of every op: the result shape for operands of given shapes, or why they do
//! not fit. [`Builder`](crate::Builder) applies it to every instruction, so lowering, autodiff
//! and the text parser all go through the same checks. Extents are checked for overflow: a
//! hand-written program with absurd sizes gets an error, never a panic.

use crate::op::{Conv, Op, Pad, Window};
use crate::shape::{Dim, Shape};
use std::fmt;

/// Why an instruction's operands do not fit its op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeError {
    pub op: String,
    pub message: String,
}

impl fmt::Display for ShapeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.op, self.message)
    }
}

impl std::error::Error for ShapeError {}

type Rule = Result<Shape, String>;

impl Op {
    /// The op's shape rule: the result shape for operands of shapes `args`.
    pub fn infer(&self, args: &[&Shape]) -> Result<Shape, ShapeError> {
        self.rule(args).map_err(|message| ShapeError { op: self.name().to_string(), message })
    }

    fn arity(&self) -> Option<usize> {
        Some(match self {
            Op::Input(_) | Op::Const(_) | Op::Fill { .. } => 0,
            Op::RandomBernoulli { .. } | Op::RandomParts { .. } | Op::RandomNormal { .. } => 1,
            Op::StopGradient => 1,
            Op::Unary(_) | Op::Broadcast { .. } | Op::Reshape { .. } | Op::Slice { .. } => 1,
            Op::ReduceSum { .. } | Op::ReduceMax { .. } | Op::Pool { .. } | Op::AvgPoolBackward { .. } => 1,
            Op::Add | Op::Sub | Op::Mul | Op::Binary(_) | Op::ReduceMaxBackward { .. } | Op::MatMul { .. } => 2,
            Op::BiasAdd => 2,
            Op::Conv2d(_) | Op::Conv2dBackwardData { .. } | Op::Conv2dBackwardFilter { .. } => 2,
            Op::MaxPoolBackward(_) | Op::SoftmaxXent | Op::SoftmaxXentGrad => 2,
            Op::Select | Op::CustomGrad => 3,
            Op::Concat { .. } => return None,
        })
    }

    fn rule(&self, args: &[&Shape]) -> Rule {
        match self.arity() {
            Some(n) if n != args.len() => return Err(format!("takes {n} operands, got {}", args.len())),
            None if args.is_empty() => return Err("needs at least one operand".into()),
            _ => {}
        }
        match self {
            Op::Input(input) => Ok(input.shape.clone()),
            Op::Const(t) => Ok(Shape::fixed(t.shape())),
            Op::Fill { shape, .. } => Ok(shape.clone()),
            Op::RandomBernoulli { shape, .. } | Op::RandomParts { shape, .. } | Op::RandomNormal { shape, .. } => {
                random(shape, args[0])
            }
            Op::Unary(_) | Op::Add | Op::Sub | Op::Mul | Op::Binary(_) | Op::Select => elementwise(args),
            Op::StopGradient | Op::CustomGrad => elementwise(args),
            Op::Broadcast { shape, axes } => broadcast(shape, axes, args[0]),
            Op::Reshape { shape } => reshape(shape, args[0]),
            Op::Concat { axis } => concat(*axis, args),
            Op::Slice { axis, start, len } => slice(*axis, *start, *len, args[0]),
            Op::ReduceSum { axes } => reduce_sum(axes, args[0]),
            Op::ReduceMax { axis } => reduce_max(*axis, args[0]),
            Op::ReduceMaxBackward { axis } => same_as_input(reduce_max(*axis, args[0])?, args),
            Op::MatMul { trans_a, trans_b } => matmul(*trans_a, *trans_b, args),
            Op::BiasAdd => bias_add(args),
            Op::Conv2d(conv) => conv2d(conv, args),
            Op::Conv2dBackwardData { conv, input_hw } => conv2d_backward_data(conv, *input_hw, args),
            Op::Conv2dBackwardFilter { conv, kernel } => conv2d_backward_filter(conv, *kernel, args),
            Op::Pool { window, .. } => pool(window, args[0]),
            Op::MaxPoolBackward(window) => same_as_input(pool(window, args[0])?, args),
            Op::AvgPoolBackward { window, input_hw } => avgpool_backward(window, *input_hw, args[0]),
            Op::SoftmaxXent => softmax_xent(args).map(|_| Shape::scalar()),
            Op::SoftmaxXentGrad => softmax_xent(args),
        }
    }
}

fn text(shapes: &[&Shape]) -> String {
    shapes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
}

fn mismatch(args: &[&Shape]) -> Rule {
    Err(format!("operand shapes {} do not fit", text(args)))
}

fn axes_ok(axes: &[usize], rank: usize) -> bool {
    axes.windows(2).all(|w| w[0] < w[1]) && axes.iter().all(|&a| a < rank)
}

/// `[B, C, H, W]` with known C, H, W.
fn nchw(s: &Shape) -> Option<(Dim, usize, usize, usize)> {
    match s.dims() {
        [b, c, h, w] => Some((*b, c.fixed()?, h.fixed()?, w.fixed()?)),
        _ => None,
    }
}

/// The random ops read the step counter, a scalar.
fn random(shape: &Shape, step: &Shape) -> Rule {
    if step.rank() != 0 {
        return Err(format!("the step operand must be a scalar, got {step}"));
    }
    Ok(shape.clone())
}

/// Elementwise ops: every operand has the result's shape.
fn elementwise(args: &[&Shape]) -> Rule {
    if args.iter().any(|a| *a != args[0]) {
        return mismatch(args);
    }
    Ok(args[0].clone())
}

/// A backward op's result is shaped like its forward op's input, and its gradient operand like
/// the forward op's result.
fn same_as_input(forward: Shape, args: &[&Shape]) -> Rule {
    if &forward != args[1] {
        return mismatch(args);
    }
    Ok(args[0].clone())
}

fn broadcast(shape: &Shape, axes: &[usize], x: &Shape) -> Rule {
    let fits = axes.len() == x.rank()
        && axes_ok(axes, shape.rank())
        && axes.iter().zip(x.dims()).all(|(&a, d)| shape.dims()[a] == *d);
    if !fits {
        return Err(format!("cannot broadcast {x} to {shape} along axes {axes:?}"));
    }
    Ok(shape.clone())
}

/// The product of a shape's known extents, or `None` when it overflows.
fn elements(s: &Shape) -> Option<usize> {
    s.dims().iter().filter_map(|d| d.fixed()).try_fold(1usize, |n, d| n.checked_mul(d))
}

fn reshape(shape: &Shape, x: &Shape) -> Rule {
    match (elements(x), elements(shape)) {
        (Some(a), Some(b)) if a == b && x.batch_count() == shape.batch_count() => Ok(shape.clone()),
        _ => Err(format!("cannot reshape {x} to {shape}: the element counts differ")),
    }
}

fn concat(axis: usize, args: &[&Shape]) -> Rule {
    let first = args[0];
    let mut total = 0usize;
    for s in args {
        let same_elsewhere =
            s.rank() == first.rank() && (0..s.rank()).all(|i| i == axis || s.dims()[i] == first.dims()[i]);
        match s.fixed_at(axis).and_then(|d| total.checked_add(d)) {
            Some(sum) if same_elsewhere => total = sum,
            _ => return Err(format!("cannot join {} along axis {axis}", text(args))),
        }
    }
    let mut out = first.clone();
    out.0[axis] = Dim::Fixed(total);
    Ok(out)
}

fn slice(axis: usize, start: usize, len: usize, x: &Shape) -> Rule {
    match (x.fixed_at(axis), start.checked_add(len)) {
        (Some(d), Some(end)) if end <= d && len > 0 => {
            let mut out = x.clone();
            out.0[axis] = Dim::Fixed(len);
            Ok(out)
        }
        _ => Err(format!("cannot take {len} elements from {start} of axis {axis} of {x}")),
    }
}

fn reduce_sum(axes: &[usize], x: &Shape) -> Rule {
    if !axes_ok(axes, x.rank()) {
        return Err(format!("bad axes {axes:?} for {x}"));
    }
    Ok(Shape(x.dims().iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| *d).collect()))
}

fn reduce_max(axis: usize, x: &Shape) -> Rule {
    if axis >= x.rank() {
        return Err(format!("bad axis {axis} for {x}"));
    }
    let mut out = x.clone();
    out.0.remove(axis);
    Ok(out)
}

fn matmul(trans_a: bool, trans_b: bool, args: &[&Shape]) -> Rule {
    let (a, b) = match (args[0].dims(), args[1].dims()) {
        ([a0, a1], [b0, b1]) => {
            (if trans_a { [*a1, *a0] } else { [*a0, *a1] }, if trans_b { [*b1, *b0] } else { [*b0, *b1] })
        }
        _ => return Err(format!("needs two matrices, got {}", text(args))),
    };
    if a[1] != b[0] {
        return mismatch(args);
    }
    Ok(Shape(vec![a[0], b[1]]))
}

/// `(x, b)`: `b` has one element per channel (axis 1) of `x`.
fn bias_add(args: &[&Shape]) -> Rule {
    match (args[0].dims().get(1), args[1].dims()) {
        (Some(c), [b]) if c == b && c.fixed().is_some() => Ok(args[0].clone()),
        _ => mismatch(args),
    }
}

/// Output extent of a sliding window, `floor((input + 2·pad − k) / stride) + 1`, or `None`
/// when the window does not fit, the stride is 0, or the sizes overflow.
/// A padding as the text form and messages write it: `1`, or `[0,1,0,1]` (top, bottom, left,
/// right) when the sides differ.
pub(crate) fn pad_text(pad: Pad) -> String {
    match pad.as_uniform() {
        Some(p) => p.to_string(),
        None => format!("[{},{},{},{}]", pad.top, pad.bottom, pad.left, pad.right),
    }
}

/// Output size of a window sliding over `input` padded by `before` and `after`.
fn window_out(input: usize, k: usize, stride: usize, before: usize, after: usize) -> Option<usize> {
    if stride == 0 || k == 0 {
        return None;
    }
    let padded = before.checked_add(after).and_then(|p| input.checked_add(p))?;
    padded.checked_sub(k).map(|room| room / stride + 1)
}

fn conv_groups_fit(conv: &Conv, c: usize, o: usize, c_per_group: usize) -> Result<(), String> {
    let g = conv.groups;
    if g == 0 || c % g != 0 || o % g != 0 || c / g != c_per_group {
        return Err(format!("{c} input and {o} output channels do not split into {g} groups of {c_per_group} inputs"));
    }
    Ok(())
}

fn conv_out(conv: &Conv, [h, w]: [usize; 2], [kh, kw]: [usize; 2]) -> Result<(usize, usize), String> {
    let (s, p) = (conv.stride, conv.pad);
    match (window_out(h, kh, s, p, p), window_out(w, kw, s, p, p)) {
        (Some(ho), Some(wo)) => Ok((ho, wo)),
        _ => Err(format!("a {kh}x{kw} filter with stride {} and pad {} does not fit {h}x{w}", conv.stride, conv.pad)),
    }
}

/// `(x [B,C,H,W], w [O,C/groups,kh,kw])`.
fn conv2d(conv: &Conv, args: &[&Shape]) -> Rule {
    let ((b, c, h, w), wshape) = match (nchw(args[0]), args[1].as_fixed()) {
        (Some(x), Some(w)) if w.len() == 4 => (x, w),
        _ => return mismatch(args),
    };
    let (o, kh, kw) = (wshape[0], wshape[2], wshape[3]);
    conv_groups_fit(conv, c, o, wshape[1])?;
    let (ho, wo) = conv_out(conv, [h, w], [kh, kw])?;
    Ok(Shape(vec![b, Dim::Fixed(o), Dim::Fixed(ho), Dim::Fixed(wo)]))
}

/// `(dy [B,O,Ho,Wo], w)`: the gradient with respect to a convolution's `input_hw`-sized input.
fn conv2d_backward_data(conv: &Conv, input_hw: [usize; 2], args: &[&Shape]) -> Rule {
    let ((b, o, ho, wo), wshape) = match (nchw(args[0]), args[1].as_fixed()) {
        (Some(dy), Some(w)) if w.len() == 4 && Some(w[0]) == args[0].fixed_at(1) => (dy, w),
        _ => return mismatch(args),
    };
    let c = wshape[1].checked_mul(conv.groups).ok_or_else(|| format!("{} groups overflow", conv.groups))?;
    conv_groups_fit(conv, c, o, wshape[1])?;
    if conv_out(conv, input_hw, [wshape[2], wshape[3]])? != (ho, wo) {
        return mismatch(args);
    }
    Ok(Shape(vec![b, Dim::Fixed(c), Dim::Fixed(input_hw[0]), Dim::Fixed(input_hw[1])]))
}

/// `(x, dy)`: the gradient with respect to a convolution's `kernel`-sized filter.
fn conv2d_backward_filter(conv: &Conv, kernel: [usize; 2], args: &[&Shape]) -> Rule {
    let ((b, c, h, w), (b2, o, ho, wo)) = match (nchw(args[0]), nchw(args[1])) {
        (Some(x), Some(dy)) => (x, dy),
        _ => return mismatch(args),
    };
    if b != b2 || conv.groups == 0 || c % conv.groups != 0 {
        return mismatch(args);
    }
    conv_groups_fit(conv, c, o, c / conv.groups)?;
    if conv_out(conv, [h, w], kernel)? != (ho, wo) {
        return mismatch(args);
    }
    Ok(Shape::fixed(&[o, c / conv.groups, kernel[0], kernel[1]]))
}

/// Pooling output size; padding must be smaller than the window so that every window holds
/// at least one input element.
fn pool_out(window: &Window, [h, w]: [usize; 2]) -> Result<(usize, usize), String> {
    let [kh, kw] = window.kernel;
    let Pad { top, bottom, left, right } = window.pad;
    if top.max(bottom) >= kh || left.max(right) >= kw {
        return Err(format!("padding {} is not smaller than the {kh}x{kw} window", pad_text(window.pad)));
    }
    match (window_out(h, kh, window.stride, top, bottom), window_out(w, kw, window.stride, left, right)) {
        (Some(ho), Some(wo)) => Ok((ho, wo)),
        _ => Err(format!("a {kh}x{kw} window with stride {} does not fit {h}x{w}", window.stride)),
    }
}

fn pool(window: &Window, x: &Shape) -> Rule {
    let (b, c, h, w) = nchw(x).ok_or_else(|| format!("needs [B,C,H,W], got {x}"))?;
    let (ho, wo) = pool_out(window, [h, w])?;
    Ok(Shape(vec![b, Dim::Fixed(c), Dim::Fixed(ho), Dim::Fixed(wo)]))
}

/// `(dy)`: the gradient of an average pooling of an `input_hw`-sized input.
fn avgpool_backward(window: &Window, input_hw: [usize; 2], dy: &Shape) -> Rule {
    let (b, c, ho, wo) = nchw(dy).ok_or_else(|| format!("needs [B,C,H,W], got {dy}"))?;
    if pool_out(window, input_hw)? != (ho, wo) {
        return Err(format!("{dy} is not what a {window:?} pooling of {input_hw:?} gives"));
    }
    Ok(Shape(vec![b, Dim::Fixed(c), Dim::Fixed(input_hw[0]), Dim::Fixed(input_hw[1])]))
}

/// `(logits [B,K], labels [B])`: the shape of the logits (the loss itself is a scalar).
fn softmax_xent(args: &[&Shape]) -> Rule {
    match (args[0].dims(), args[1].dims()) {
        ([b, k], [b2]) if b == b2 && k.fixed().is_some_and(|k| k > 0) => Ok(args[0].clone()),
        _ => Err(format!("needs logits [B,K] and labels [B], got {}", text(args))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::PoolKind;

    fn infer(op: Op, args: &[Shape]) -> Result<String, ShapeError> {
        op.infer(&args.iter().collect::<Vec<_>>()).map(|s| s.to_string())
    }

    #[test]
    fn sizes_that_overflow_are_errors_not_panics() {
        let huge = usize::MAX / 2 + 1;
        let conv = Conv { stride: 1, pad: huge, groups: 1 };
        let x = Shape::batched(&[1, 4, 4]);
        assert!(infer(Op::Conv2d(conv), &[x.clone(), Shape::fixed(&[1, 1, 3, 3])]).is_err());
        let window = Window { kernel: [huge, huge], stride: 1, pad: Pad::uniform(huge - 1) };
        assert!(infer(Op::Pool { kind: PoolKind::Max, window }, std::slice::from_ref(&x)).is_err());
        assert!(infer(Op::Slice { axis: 1, start: usize::MAX, len: 2 }, std::slice::from_ref(&x)).is_err());
        let big = Shape::batched(&[huge, 4]);
        assert!(infer(Op::Reshape { shape: Shape::batched(&[8]) }, &[big]).is_err());
        assert!(infer(Op::Concat { axis: 1 }, &[Shape::batched(&[usize::MAX]), Shape::batched(&[1])]).is_err());
    }
}
