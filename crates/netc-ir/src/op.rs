//! The operations of the IR and their shape rules. Ops are small and orthogonal: a DSL layer
//! lowers to several of them, and each has one shape rule (here) and one vector-Jacobian rule
//! (in `autodiff`).

use crate::rng::RandomStream;
use crate::shape::{Dim, Shape};
use crate::tensor::Tensor;
use std::fmt;

/// An IR operation. The operands are the instruction's `args`, in the order documented on
/// each variant. Spatial tensors are NCHW.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A program input (no operands).
    Input(Input),
    /// A constant without a batch dimension, e.g. a fixed activation mask.
    Const(Tensor),
    /// Every element `value`; the shape may involve the batch size.
    Fill { value: f32, shape: Shape },
    /// `(step)`: 1 with probability `keep`, else 0, independently per element, keyed by
    /// (key, step, element).
    RandomBernoulli { keep: f64, key: RandomKey, shape: Shape },
    /// `(step)`: each element's part index (0, 1, ...) such that exactly
    /// `rng::part_counts(fracs, elements)` elements fall in each part, chosen afresh per step.
    RandomParts { fracs: Vec<f64>, key: RandomKey, shape: Shape },
    /// `(x)`: an elementwise function.
    Unary(UnaryFn),
    /// `(a, b)`: elementwise `a + b` of equal shapes.
    Add,
    /// `(a, b)`: elementwise `a − b`.
    Sub,
    /// `(a, b)`: elementwise `a · b`.
    Mul,
    /// `(mask, a, b)`: `a` where the mask is non-zero, else `b`. All three shapes are equal.
    Select,
    /// `(x)`: repeats `x` into `shape`; input dimension `i` becomes output axis `axes[i]`, the
    /// other output axes are new.
    Broadcast { shape: Shape, axes: Vec<usize> },
    /// `(x)`: the same row-major elements under another shape.
    Reshape { shape: Shape },
    /// `(x₀, x₁, ...)`: joins along `axis`; the other dimensions agree.
    Concat { axis: usize },
    /// `(x)`: elements `start..start+len` of `axis`.
    Slice { axis: usize, start: usize, len: usize },
    /// `(x)`: sums over `axes` (increasing), which disappear from the shape.
    ReduceSum { axes: Vec<usize> },
    /// `(x)`: the largest element along `axis`, which disappears.
    ReduceMax { axis: usize },
    /// `(x, g)`: routes `g` (shaped like `ReduceMax`'s result) to the first largest element of
    /// each reduced row of `x`.
    ReduceMaxBackward { axis: usize },
    /// `(a, b)`: the matrix product of two rank-2 operands, each optionally transposed first.
    MatMul { trans_a: bool, trans_b: bool },
    /// `(x, b)`: adds `b[c]` to every element of channel `c` (axis 1) of `x`.
    BiasAdd,
    /// `(x, w)`: grouped 2-D cross-correlation, x `[B,C,H,W]`, w `[O,C/groups,kh,kw]`,
    /// zero padding.
    Conv2d(Conv),
    /// `(dy, w)`: the gradient of `Conv2d` with respect to its input of spatial size `input_hw`.
    Conv2dBackwardData { conv: Conv, input_hw: [usize; 2] },
    /// `(x, dy)`: the gradient of `Conv2d` with respect to its `kernel`-sized filter.
    Conv2dBackwardFilter { conv: Conv, kernel: [usize; 2] },
    /// `(x)`: max or average pooling of `[B,C,H,W]`. Max pooling ignores padding; average
    /// pooling counts padding as zeros and divides by the full window `kh·kw` (as MatConvNet).
    Pool { kind: PoolKind, window: Window },
    /// `(x, dy)`: routes each window's gradient to the window's first largest input.
    MaxPoolBackward(Window),
    /// `(dy)`: spreads each window's gradient evenly over its `kh·kw` positions.
    AvgPoolBackward { window: Window, input_hw: [usize; 2] },
    /// `(logits [B,K], labels [B])`: mean over the batch of `logsumexp(z) − z[label]`; labels
    /// hold class indices.
    SoftmaxXent,
    /// `(logits, labels)`: the gradient of `SoftmaxXent`, `(softmax(z) − onehot(label)) / B`.
    SoftmaxXentGrad,
}

/// A program input.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub name: String,
    pub kind: InputKind,
    pub shape: Shape,
}

#[derive(Clone, Debug, PartialEq)]
pub enum InputKind {
    /// The data batch.
    Data,
    /// Class indices `[N]`, as `f32`.
    Labels,
    /// The training-step counter `[]`; random ops read it to draw fresh numbers per step.
    Step,
    /// A learned parameter, named `layer.param`.
    Param(ParamInfo),
}

/// What a trainer needs to know about a parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamInfo {
    pub role: ParamRole,
    pub init: ParamInit,
    /// Multipliers of the global learning rate and weight decay, from the layer.
    pub lr_mult: f64,
    pub wd_mult: f64,
    /// The signs the weight must keep, when its layer reads a `dale` population.
    pub sign: Option<SignConstraint>,
}

/// What a parameter is for: weight decay and sign constraints treat the roles differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamRole {
    /// The weight of a dense layer or a convolution.
    Weight,
    Bias,
    /// A learned filter of an activation (ConvAct's `pos` and `neg`).
    ActivationFilter,
}

impl ParamRole {
    pub fn name(self) -> &'static str {
        match self {
            ParamRole::Weight => "weight",
            ParamRole::Bias => "bias",
            ParamRole::ActivationFilter => "activation_filter",
        }
    }

    pub const ALL: [ParamRole; 3] = [ParamRole::Weight, ParamRole::Bias, ParamRole::ActivationFilter];
}

/// Dale's principle on a weight `[out, units·block]`: the elements leaving an excitatory
/// input unit stay ≥ 0, those leaving an inhibitory one ≤ 0. Element `i` leaves unit
/// `(i / block) mod units`; a block is `kh·kw` for a convolution and the positions of one
/// channel for a dense layer over a flattened `[C, H, W]` tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignConstraint {
    /// The `dale` layer that declares the population.
    pub population: String,
    /// Per input unit, whether it is inhibitory.
    pub inhibitory: Vec<bool>,
    /// The consecutive elements of a weight row that leave one unit.
    pub block: usize,
}

impl SignConstraint {
    /// Whether element `index` of the weight must be ≤ 0 (otherwise it must be ≥ 0).
    pub fn is_inhibitory(&self, index: usize) -> bool {
        let units = self.inhibitory.len().max(1);
        self.inhibitory.get((index / self.block.max(1)) % units).copied().unwrap_or(false)
    }

    /// Sets every element of the wrong sign to 0: the closest weight that keeps the signs.
    pub fn project(&self, weight: &mut [f32]) {
        for (i, w) in weight.iter_mut().enumerate() {
            *w = if self.is_inhibitory(i) { w.min(0.0) } else { w.max(0.0) };
        }
    }

    /// Turns a weight drawn from a symmetric distribution into one that keeps the signs and is
    /// balanced: every element gets its unit's sign, and when the population has units of both
    /// kinds (`e` excitatory, `i` inhibitory), excitatory magnitudes are scaled by `√(i/e)` and
    /// inhibitory ones by `√(e/i)`. A unit's excitatory and inhibitory inputs then cancel in
    /// expectation (for inputs of equal mean), and the weights keep their mean square, so the
    /// layer starts as scaled as without the constraint. Without inhibitory units this is |w|.
    pub fn balance_signs(&self, weight: &mut [f32]) {
        let inhibitory = self.inhibitory_units();
        let excitatory = self.inhibitory.len() - inhibitory;
        let (excitatory_scale, inhibitory_scale) = if inhibitory > 0 && excitatory > 0 {
            let ratio = inhibitory as f64 / excitatory as f64;
            (ratio.sqrt() as f32, (1.0 / ratio).sqrt() as f32)
        } else {
            (1.0, 1.0)
        };
        for (i, w) in weight.iter_mut().enumerate() {
            *w = if self.is_inhibitory(i) { -inhibitory_scale * w.abs() } else { excitatory_scale * w.abs() };
        }
    }

    pub fn inhibitory_units(&self) -> usize {
        self.inhibitory.iter().filter(|&&i| i).count()
    }
}

/// How a parameter starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamInit {
    /// Drawn from the run's configured distribution with these fans.
    Weight {
        fan_in: usize,
        fan_out: usize,
    },
    Zeros,
    /// Depthwise `[C, k, k]` filters that are 1 at the centre and 0 elsewhere.
    CentreTap,
}

/// The key of a random op: the numbers for element `e` at step `s` are
/// `rng::Key::new(seed, &stream, s).bits(e)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RandomKey {
    pub seed: u64,
    pub stream: RandomStream,
}

/// Elementwise functions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryFn {
    /// `max(0, x)`
    Relu,
    /// `min(0, x)`
    NegLU,
    /// `min(0, x)` whose derivative is taken to be ReLU's, `1[x > 0]` (`grad=relu`).
    NegLUReluGrad,
    /// `−ln(1 + e^−x)`, computed stably.
    SoftNegLU,
    Sigmoid,
    Tanh,
    /// `x` for `x > 0`, else `alpha·x`.
    LeakyRelu {
        alpha: f64,
    },
    /// `c·x`
    Scale {
        c: f64,
    },
    /// `1[x == value]`, to turn part indices into masks.
    Equal {
        value: f64,
    },
    /// `1[x > 0]`
    ReluDeriv,
    /// `1[x < 0]`
    NegLUDeriv,
    /// `1 / (1 + e^x)`
    SoftNegLUDeriv,
    /// `σ(x)·(1 − σ(x))`
    SigmoidDeriv,
    /// `1 − tanh²(x)`
    TanhDeriv,
    /// `1` for `x > 0`, else `alpha`.
    LeakyReluDeriv {
        alpha: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

/// Stride, symmetric zero padding and group count of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv {
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
}

/// A pooling window: size, stride and symmetric padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kernel: [usize; 2],
    pub stride: usize,
    pub pad: usize,
}

impl UnaryFn {
    /// The elementwise derivative, for the ops that autodiff differentiates through a
    /// derivative map; `None` for linear `Scale` (handled directly) and for the derivative
    /// maps themselves.
    pub fn derivative(self) -> Option<UnaryFn> {
        Some(match self {
            UnaryFn::Relu | UnaryFn::NegLUReluGrad => UnaryFn::ReluDeriv,
            UnaryFn::NegLU => UnaryFn::NegLUDeriv,
            UnaryFn::SoftNegLU => UnaryFn::SoftNegLUDeriv,
            UnaryFn::Sigmoid => UnaryFn::SigmoidDeriv,
            UnaryFn::Tanh => UnaryFn::TanhDeriv,
            UnaryFn::LeakyRelu { alpha } => UnaryFn::LeakyReluDeriv { alpha },
            _ => return None,
        })
    }

    /// The function's value in `f64`; every executor computes these formulas.
    pub fn eval(self, x: f64) -> f64 {
        match self {
            UnaryFn::Relu => x.max(0.0),
            UnaryFn::NegLU | UnaryFn::NegLUReluGrad => x.min(0.0),
            // −ln(1 + e^−x) = min(x, 0) − ln(1 + e^−|x|): no overflow for any x.
            UnaryFn::SoftNegLU => x.min(0.0) - (-x.abs()).exp().ln_1p(),
            UnaryFn::Sigmoid => sigmoid(x),
            UnaryFn::Tanh => x.tanh(),
            UnaryFn::LeakyRelu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            UnaryFn::Scale { c } => c * x,
            UnaryFn::Equal { value } => f64::from(u8::from(x == value)),
            UnaryFn::ReluDeriv => f64::from(u8::from(x > 0.0)),
            UnaryFn::NegLUDeriv => f64::from(u8::from(x < 0.0)),
            UnaryFn::SoftNegLUDeriv => sigmoid(-x),
            UnaryFn::SigmoidDeriv => {
                let s = sigmoid(x);
                s * (1.0 - s)
            }
            UnaryFn::TanhDeriv => {
                let t = x.tanh();
                1.0 - t * t
            }
            UnaryFn::LeakyReluDeriv { alpha } => {
                if x > 0.0 {
                    1.0
                } else {
                    alpha
                }
            }
        }
    }
}

/// `1 / (1 + e^−x)` without overflow for large |x|.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Output extent of a sliding window, `floor((input + 2·pad − k) / stride) + 1`, or `None`
/// when the window does not fit or the stride is 0.
fn window_out(input: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    if stride == 0 || k == 0 {
        return None;
    }
    (input + 2 * pad).checked_sub(k).map(|room| room / stride + 1)
}

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

fn text(shapes: &[&Shape]) -> String {
    shapes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
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

impl Op {
    /// The op's shape rule: the result shape for operands of shapes `args`.
    pub fn infer(&self, args: &[&Shape]) -> Result<Shape, ShapeError> {
        self.infer_inner(args).map_err(|message| ShapeError { op: self.name().to_string(), message })
    }

    fn arity(&self) -> Option<usize> {
        Some(match self {
            Op::Input(_) | Op::Const(_) | Op::Fill { .. } => 0,
            Op::RandomBernoulli { .. } | Op::RandomParts { .. } => 1,
            Op::Unary(_) | Op::Broadcast { .. } | Op::Reshape { .. } | Op::Slice { .. } => 1,
            Op::ReduceSum { .. } | Op::ReduceMax { .. } | Op::Pool { .. } | Op::AvgPoolBackward { .. } => 1,
            Op::Add | Op::Sub | Op::Mul | Op::ReduceMaxBackward { .. } | Op::MatMul { .. } | Op::BiasAdd => 2,
            Op::Conv2d(_) | Op::Conv2dBackwardData { .. } | Op::Conv2dBackwardFilter { .. } => 2,
            Op::MaxPoolBackward(_) | Op::SoftmaxXent | Op::SoftmaxXentGrad => 2,
            Op::Select => 3,
            Op::Concat { .. } => return None,
        })
    }

    fn infer_inner(&self, args: &[&Shape]) -> Result<Shape, String> {
        match self.arity() {
            Some(n) if n != args.len() => return Err(format!("takes {n} operands, got {}", args.len())),
            None if args.is_empty() => return Err("needs at least one operand".into()),
            _ => {}
        }
        let mismatch = || Err(format!("operand shapes {} do not fit", text(args)));
        match self {
            Op::Input(input) => Ok(input.shape.clone()),
            Op::Const(t) => Ok(Shape::fixed(t.shape())),
            Op::Fill { shape, .. } => Ok(shape.clone()),
            Op::RandomBernoulli { shape, .. } | Op::RandomParts { shape, .. } => {
                if args[0].rank() != 0 {
                    return Err(format!("the step operand must be a scalar, got {}", args[0]));
                }
                Ok(shape.clone())
            }
            Op::Unary(_) => Ok(args[0].clone()),
            Op::Add | Op::Sub | Op::Mul => {
                if args[0] != args[1] {
                    return mismatch();
                }
                Ok(args[0].clone())
            }
            Op::Select => {
                if args[0] != args[1] || args[1] != args[2] {
                    return mismatch();
                }
                Ok(args[1].clone())
            }
            Op::Broadcast { shape, axes } => {
                let fits = axes.len() == args[0].rank()
                    && axes_ok(axes, shape.rank())
                    && axes.iter().zip(args[0].dims()).all(|(&a, d)| shape.dims()[a] == *d);
                if !fits {
                    return Err(format!("cannot broadcast {} to {shape} along axes {axes:?}", args[0]));
                }
                Ok(shape.clone())
            }
            Op::Reshape { shape } => {
                let x = args[0];
                if x.batch_count() != shape.batch_count() || x.fixed_product() != shape.fixed_product() {
                    return Err(format!("cannot reshape {x} to {shape}: the element counts differ"));
                }
                Ok(shape.clone())
            }
            Op::Concat { axis } => {
                let first = args[0];
                let mut total = 0;
                for s in args {
                    let same_elsewhere =
                        s.rank() == first.rank() && (0..s.rank()).all(|i| i == *axis || s.dims()[i] == first.dims()[i]);
                    match s.fixed_at(*axis) {
                        Some(d) if same_elsewhere => total += d,
                        _ => return Err(format!("cannot join {} along axis {axis}", text(args))),
                    }
                }
                let mut out = first.clone();
                out.0[*axis] = Dim::Fixed(total);
                Ok(out)
            }
            Op::Slice { axis, start, len } => match args[0].fixed_at(*axis) {
                Some(d) if start + len <= d && *len > 0 => {
                    let mut out = args[0].clone();
                    out.0[*axis] = Dim::Fixed(*len);
                    Ok(out)
                }
                _ => Err(format!("cannot take {start}..{} of axis {axis} of {}", start + len, args[0])),
            },
            Op::ReduceSum { axes } => {
                if !axes_ok(axes, args[0].rank()) {
                    return Err(format!("bad axes {axes:?} for {}", args[0]));
                }
                Ok(Shape(
                    args[0].dims().iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| *d).collect(),
                ))
            }
            Op::ReduceMax { axis } => {
                if *axis >= args[0].rank() {
                    return Err(format!("bad axis {axis} for {}", args[0]));
                }
                let mut out = args[0].clone();
                out.0.remove(*axis);
                Ok(out)
            }
            Op::ReduceMaxBackward { axis } => {
                let reduced = Op::ReduceMax { axis: *axis }.infer_inner(&args[..1])?;
                if &reduced != args[1] {
                    return mismatch();
                }
                Ok(args[0].clone())
            }
            Op::MatMul { trans_a, trans_b } => {
                let (a, b) = match (args[0].dims(), args[1].dims()) {
                    ([a0, a1], [b0, b1]) => {
                        (if *trans_a { [*a1, *a0] } else { [*a0, *a1] }, if *trans_b { [*b1, *b0] } else { [*b0, *b1] })
                    }
                    _ => return Err(format!("needs two matrices, got {}", text(args))),
                };
                if a[1] != b[0] {
                    return mismatch();
                }
                Ok(Shape(vec![a[0], b[1]]))
            }
            Op::BiasAdd => match (args[0].dims().get(1), args[1].dims()) {
                (Some(c), [b]) if c == b && c.fixed().is_some() => Ok(args[0].clone()),
                _ => mismatch(),
            },
            Op::Conv2d(conv) => {
                let ((b, c, h, w), wshape) = match (nchw(args[0]), args[1].as_fixed()) {
                    (Some(x), Some(w)) if w.len() == 4 => (x, w),
                    _ => return mismatch(),
                };
                let (o, kh, kw) = (wshape[0], wshape[2], wshape[3]);
                conv_groups_fit(conv, c, o, wshape[1])?;
                let (ho, wo) = conv_out(conv, [h, w], [kh, kw])?;
                Ok(Shape(vec![b, Dim::Fixed(o), Dim::Fixed(ho), Dim::Fixed(wo)]))
            }
            Op::Conv2dBackwardData { conv, input_hw } => {
                let ((b, o, ho, wo), wshape) = match (nchw(args[0]), args[1].as_fixed()) {
                    (Some(dy), Some(w)) if w.len() == 4 && w[0] == o_of(args[0]) => (dy, w),
                    _ => return mismatch(),
                };
                let c = wshape[1] * conv.groups;
                conv_groups_fit(conv, c, o, wshape[1])?;
                if conv_out(conv, *input_hw, [wshape[2], wshape[3]])? != (ho, wo) {
                    return mismatch();
                }
                Ok(Shape(vec![b, Dim::Fixed(c), Dim::Fixed(input_hw[0]), Dim::Fixed(input_hw[1])]))
            }
            Op::Conv2dBackwardFilter { conv, kernel } => {
                let ((b, c, h, w), (b2, o, ho, wo)) = match (nchw(args[0]), nchw(args[1])) {
                    (Some(x), Some(dy)) => (x, dy),
                    _ => return mismatch(),
                };
                if b != b2 || conv.groups == 0 || c % conv.groups != 0 {
                    return mismatch();
                }
                conv_groups_fit(conv, c, o, c / conv.groups)?;
                if conv_out(conv, [h, w], *kernel)? != (ho, wo) {
                    return mismatch();
                }
                Ok(Shape::fixed(&[o, c / conv.groups, kernel[0], kernel[1]]))
            }
            Op::Pool { window, .. } => {
                let (b, c, h, w) = nchw(args[0]).ok_or_else(|| format!("needs [B,C,H,W], got {}", args[0]))?;
                let (ho, wo) = pool_out(window, [h, w])?;
                Ok(Shape(vec![b, Dim::Fixed(c), Dim::Fixed(ho), Dim::Fixed(wo)]))
            }
            Op::MaxPoolBackward(window) => {
                let pooled = Op::Pool { kind: PoolKind::Max, window: *window }.infer_inner(&args[..1])?;
                if &pooled != args[1] {
                    return mismatch();
                }
                Ok(args[0].clone())
            }
            Op::AvgPoolBackward { window, input_hw } => {
                let (b, c, ho, wo) = nchw(args[0]).ok_or_else(|| format!("needs [B,C,H,W], got {}", args[0]))?;
                if pool_out(window, *input_hw)? != (ho, wo) {
                    return mismatch();
                }
                Ok(Shape(vec![b, Dim::Fixed(c), Dim::Fixed(input_hw[0]), Dim::Fixed(input_hw[1])]))
            }
            Op::SoftmaxXent | Op::SoftmaxXentGrad => match (args[0].dims(), args[1].dims()) {
                ([b, k], [b2]) if b == b2 && k.fixed().is_some_and(|k| k > 0) => {
                    Ok(if *self == Op::SoftmaxXent { Shape::scalar() } else { args[0].clone() })
                }
                _ => Err(format!("needs logits [B,K] and labels [B], got {}", text(args))),
            },
        }
    }

    /// The op's mnemonic in the textual IR.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input(input) => match input.kind {
                InputKind::Data => "input",
                InputKind::Labels => "labels",
                InputKind::Step => "step",
                InputKind::Param(_) => "param",
            },
            Op::Const(_) => "const",
            Op::Fill { .. } => "fill",
            Op::RandomBernoulli { .. } => "random_bernoulli",
            Op::RandomParts { .. } => "random_parts",
            Op::Unary(f) => f.name(),
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Select => "select",
            Op::Broadcast { .. } => "broadcast",
            Op::Reshape { .. } => "reshape",
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::ReduceSum { .. } => "reduce_sum",
            Op::ReduceMax { .. } => "reduce_max",
            Op::ReduceMaxBackward { .. } => "reduce_max_bwd",
            Op::MatMul { .. } => "matmul",
            Op::BiasAdd => "bias_add",
            Op::Conv2d(_) => "conv2d",
            Op::Conv2dBackwardData { .. } => "conv2d_bwd_data",
            Op::Conv2dBackwardFilter { .. } => "conv2d_bwd_filter",
            Op::Pool { kind: PoolKind::Max, .. } => "maxpool",
            Op::Pool { kind: PoolKind::Avg, .. } => "avgpool",
            Op::MaxPoolBackward(_) => "maxpool_bwd",
            Op::AvgPoolBackward { .. } => "avgpool_bwd",
            Op::SoftmaxXent => "softmax_xent",
            Op::SoftmaxXentGrad => "softmax_xent_grad",
        }
    }
}

/// The output channel count of a `[B,O,H,W]` shape, or 0 when unknown.
fn o_of(s: &Shape) -> usize {
    s.fixed_at(1).unwrap_or(0)
}

fn conv_groups_fit(conv: &Conv, c: usize, o: usize, c_per_group: usize) -> Result<(), String> {
    let g = conv.groups;
    if g == 0 || c % g != 0 || o % g != 0 || c / g != c_per_group {
        return Err(format!("{c} input and {o} output channels do not split into {g} groups of {c_per_group} inputs"));
    }
    Ok(())
}

fn conv_out(conv: &Conv, [h, w]: [usize; 2], [kh, kw]: [usize; 2]) -> Result<(usize, usize), String> {
    match (window_out(h, kh, conv.stride, conv.pad), window_out(w, kw, conv.stride, conv.pad)) {
        (Some(ho), Some(wo)) => Ok((ho, wo)),
        _ => Err(format!("a {kh}x{kw} filter with stride {} and pad {} does not fit {h}x{w}", conv.stride, conv.pad)),
    }
}

/// Pooling output size; padding must be smaller than the window so that every window holds
/// at least one input element.
fn pool_out(window: &Window, [h, w]: [usize; 2]) -> Result<(usize, usize), String> {
    let [kh, kw] = window.kernel;
    if window.pad >= kh.min(kw) {
        return Err(format!("padding {} is not smaller than the {kh}x{kw} window", window.pad));
    }
    match (window_out(h, kh, window.stride, window.pad), window_out(w, kw, window.stride, window.pad)) {
        (Some(ho), Some(wo)) => Ok((ho, wo)),
        _ => Err(format!("a {kh}x{kw} window with stride {} does not fit {h}x{w}", window.stride)),
    }
}

impl UnaryFn {
    pub fn name(self) -> &'static str {
        match self {
            UnaryFn::Relu => "relu",
            UnaryFn::NegLU => "neglu",
            UnaryFn::NegLUReluGrad => "neglu_relugrad",
            UnaryFn::SoftNegLU => "softneglu",
            UnaryFn::Sigmoid => "sigmoid",
            UnaryFn::Tanh => "tanh",
            UnaryFn::LeakyRelu { .. } => "leaky_relu",
            UnaryFn::Scale { .. } => "scale",
            UnaryFn::Equal { .. } => "equal",
            UnaryFn::ReluDeriv => "relu_deriv",
            UnaryFn::NegLUDeriv => "neglu_deriv",
            UnaryFn::SoftNegLUDeriv => "softneglu_deriv",
            UnaryFn::SigmoidDeriv => "sigmoid_deriv",
            UnaryFn::TanhDeriv => "tanh_deriv",
            UnaryFn::LeakyReluDeriv { .. } => "leaky_relu_deriv",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infer(op: Op, args: &[Shape]) -> Result<String, ShapeError> {
        op.infer(&args.iter().collect::<Vec<_>>()).map(|s| s.to_string())
    }

    #[test]
    fn conv_and_its_backward_ops_agree_on_shapes() {
        let conv = Conv { stride: 2, pad: 1, groups: 1 };
        let x = Shape::batched(&[3, 7, 6]);
        let w = Shape::fixed(&[4, 3, 3, 2]);
        assert_eq!(infer(Op::Conv2d(conv), &[x.clone(), w.clone()]).unwrap(), "[N,4,4,4]");
        let dy = Shape::batched(&[4, 4, 4]);
        assert_eq!(
            infer(Op::Conv2dBackwardData { conv, input_hw: [7, 6] }, &[dy.clone(), w.clone()]).unwrap(),
            "[N,3,7,6]"
        );
        assert_eq!(infer(Op::Conv2dBackwardFilter { conv, kernel: [3, 2] }, &[x, dy]).unwrap(), "[4,3,3,2]");
        let depthwise = Conv { stride: 1, pad: 1, groups: 3 };
        assert_eq!(
            infer(Op::Conv2d(depthwise), &[Shape::batched(&[3, 5, 5]), Shape::fixed(&[3, 1, 3, 3])]).unwrap(),
            "[N,3,5,5]"
        );
        let err = infer(Op::Conv2d(conv), &[Shape::batched(&[2, 7, 6]), w]).unwrap_err();
        assert!(err.message.contains("groups"), "{err}");
    }

    #[test]
    fn matmul_contracts_over_the_batch_when_transposed() {
        let x = Shape::batched(&[800]);
        let w = Shape::fixed(&[500, 800]);
        let y = infer(Op::MatMul { trans_a: false, trans_b: true }, &[x.clone(), w]).unwrap();
        assert_eq!(y, "[N,500]");
        let dy = Shape::batched(&[500]);
        assert_eq!(infer(Op::MatMul { trans_a: true, trans_b: false }, &[dy, x.clone()]).unwrap(), "[500,800]");
        assert!(infer(Op::MatMul { trans_a: false, trans_b: false }, &[x.clone(), x]).is_err());
    }

    #[test]
    fn reshape_keeps_the_element_count_and_the_batch() {
        let x = Shape::batched(&[50, 4, 4]);
        assert_eq!(infer(Op::Reshape { shape: Shape::batched(&[800]) }, std::slice::from_ref(&x)).unwrap(), "[N,800]");
        assert!(infer(Op::Reshape { shape: Shape::batched(&[801]) }, std::slice::from_ref(&x)).is_err());
        assert!(infer(Op::Reshape { shape: Shape::fixed(&[800]) }, &[x]).is_err());
    }

    #[test]
    fn pooling_rejects_windows_of_only_padding() {
        let window = Window { kernel: [2, 2], stride: 2, pad: 2 };
        assert!(infer(Op::Pool { kind: PoolKind::Max, window }, &[Shape::batched(&[1, 4, 4])]).is_err());
        let window = Window { kernel: [3, 3], stride: 2, pad: 1 };
        assert_eq!(
            infer(Op::Pool { kind: PoolKind::Avg, window }, &[Shape::batched(&[1, 5, 5])]).unwrap(),
            "[N,1,3,3]"
        );
    }

    #[test]
    fn broadcast_concat_slice_and_reduce() {
        let b = Op::Broadcast { shape: Shape::batched(&[3, 2, 2]), axes: vec![1] };
        assert_eq!(infer(b.clone(), &[Shape::fixed(&[3])]).unwrap(), "[N,3,2,2]");
        assert!(infer(b, &[Shape::fixed(&[2])]).is_err());
        let cat = infer(Op::Concat { axis: 1 }, &[Shape::batched(&[3, 2]), Shape::batched(&[5, 2])]).unwrap();
        assert_eq!(cat, "[N,8,2]");
        assert!(infer(Op::Concat { axis: 1 }, &[Shape::batched(&[3, 2]), Shape::batched(&[5, 1])]).is_err());
        assert_eq!(infer(Op::Slice { axis: 1, start: 3, len: 5 }, &[Shape::batched(&[8, 2])]).unwrap(), "[N,5,2]");
        assert!(infer(Op::Slice { axis: 1, start: 4, len: 5 }, &[Shape::batched(&[8, 2])]).is_err());
        assert_eq!(infer(Op::ReduceSum { axes: vec![0, 2] }, &[Shape::batched(&[8, 2])]).unwrap(), "[8]");
        assert!(infer(Op::ReduceSum { axes: vec![2, 0] }, &[Shape::batched(&[8, 2])]).is_err());
    }

    #[test]
    fn unary_functions_are_stable_at_the_extremes() {
        assert_eq!(UnaryFn::SoftNegLU.eval(-1000.0), -1000.0);
        assert_eq!(UnaryFn::SoftNegLU.eval(1000.0), 0.0);
        assert!((UnaryFn::SoftNegLU.eval(0.0) + 2f64.ln()).abs() < 1e-15);
        assert_eq!(UnaryFn::Sigmoid.eval(-1000.0), 0.0);
        assert_eq!(UnaryFn::SoftNegLUDeriv.eval(1000.0), 0.0);
        assert_eq!(UnaryFn::SoftNegLUDeriv.eval(-1000.0), 1.0);
        assert_eq!(UnaryFn::ReluDeriv.eval(0.0), 0.0);
        assert_eq!(UnaryFn::NegLUDeriv.eval(0.0), 0.0);
        assert_eq!(UnaryFn::NegLUDeriv.eval(-0.5), 1.0);
    }
}
