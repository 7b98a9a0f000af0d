//! The operations of the IR and their shape rules. Ops are small and orthogonal: a DSL layer
//! lowers to several of them, and each has one shape rule (here) and one vector-Jacobian rule
//! (in `autodiff`).

use crate::rng::RandomStream;
use crate::shape::Shape;
use crate::tensor::Tensor;

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
    /// `(step)`: a standard normal number per element, keyed by (key, step, element).
    RandomNormal { key: RandomKey, shape: Shape },
    /// `(x)`: an elementwise function.
    Unary(UnaryFn),
    /// `(a, b)`: elementwise `a + b` of equal shapes.
    Add,
    /// `(a, b)`: elementwise `a − b`.
    Sub,
    /// `(a, b)`: elementwise `a · b`.
    Mul,
    /// `(a, b)`: an elementwise function of two operands of one shape.
    Binary(BinaryFn),
    /// `(mask, a, b)`: `a` where the mask is non-zero, else `b`. All three shapes are equal.
    Select,
    /// `(x)`: `x`, through which no gradient flows.
    StopGradient,
    /// `(value, x, derivative)`: `value`, whose gradient with respect to `x` is taken to be the
    /// incoming gradient times `derivative` (a unit's `grad EXPR`); the gradient also flows
    /// into `value` unchanged, for the parameters it depends on. All three shapes are equal.
    /// Lowering builds `value` from `x` through [`Op::StopGradient`], so `x` gets the given
    /// derivative and nothing else.
    CustomGrad,
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
    /// A learned parameter of a user-defined unit (PReLU's `alpha`).
    UnitParam,
}

impl ParamRole {
    pub fn name(self) -> &'static str {
        match self {
            ParamRole::Weight => "weight",
            ParamRole::Bias => "bias",
            ParamRole::ActivationFilter => "activation_filter",
            ParamRole::UnitParam => "unit_param",
        }
    }

    pub const ALL: [ParamRole; 4] =
        [ParamRole::Weight, ParamRole::Bias, ParamRole::ActivationFilter, ParamRole::UnitParam];
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
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ParamInit {
    /// Drawn from the run's configured distribution with these fans.
    Weight {
        fan_in: usize,
        fan_out: usize,
    },
    Zeros,
    /// Depthwise `[C, k, k]` filters that are 1 at the centre and 0 elsewhere.
    CentreTap,
    /// Every element `value` (a unit's `learned(value)`).
    Constant {
        value: f64,
    },
    /// Drawn from the layer's own distribution (`conv(…, init=normal(std=0.05))`), whatever the
    /// run's.
    Drawn(Distribution),
}

/// A distribution weights are drawn from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// N(0, std²).
    Normal { std: f64 },
    /// Glorot/Xavier uniform: U(±√(6 / (fan_in + fan_out))).
    Xavier { fan_in: usize, fan_out: usize },
    /// He normal: N(0, 2 / fan_in).
    He { fan_in: usize },
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
    Sigmoid,
    Tanh,
    /// `c·x`, with `c` rounded to `f32` first: executors on `f32` tensors multiply by the `f32`
    /// constant, and the exact product of two `f32`s rounded once is the same number in `f64`.
    Scale {
        c: f64,
    },
    /// `1[x == value]`, to turn part indices into masks.
    Equal {
        value: f64,
    },
    Exp,
    /// `ln x`
    Log,
    /// `ln(1 + x)`, accurate near 0.
    Log1p,
    Sqrt,
    Abs,
    /// `ln(1 + e^x)`, computed stably.
    Softplus,
    /// `−1`, `0` or `1`: the derivative of `abs` (0 at 0).
    Sign,
    /// `1[x > 0]`
    ReluDeriv,
    /// `σ(x)·(1 − σ(x))`
    SigmoidDeriv,
    /// `1 − tanh²(x)`
    TanhDeriv,
    /// `1 / x`
    LogDeriv,
    /// `1 / (1 + x)`
    Log1pDeriv,
    /// `1 / (2·√x)`
    SqrtDeriv,
}

/// Elementwise functions of two operands. Comparisons give 1 where they hold, else 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryFn {
    Div,
    /// `a` if `a < b`, else `b`.
    Min,
    /// `a` if `a > b`, else `b`.
    Max,
    /// `a^b`
    Pow,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    Equal,
    NotEqual,
}

impl BinaryFn {
    pub const ALL: [BinaryFn; 10] = [
        BinaryFn::Div,
        BinaryFn::Min,
        BinaryFn::Max,
        BinaryFn::Pow,
        BinaryFn::Less,
        BinaryFn::LessEqual,
        BinaryFn::Greater,
        BinaryFn::GreaterEqual,
        BinaryFn::Equal,
        BinaryFn::NotEqual,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BinaryFn::Div => "div",
            BinaryFn::Min => "min",
            BinaryFn::Max => "max",
            BinaryFn::Pow => "pow",
            BinaryFn::Less => "lt",
            BinaryFn::LessEqual => "le",
            BinaryFn::Greater => "gt",
            BinaryFn::GreaterEqual => "ge",
            BinaryFn::Equal => "eq",
            BinaryFn::NotEqual => "ne",
        }
    }

    /// The function's value in `f64`; every executor computes these formulas (division and the
    /// comparisons round alike in `f32` and `f64`, so `f32` executors may compute them directly).
    pub fn eval(self, a: f64, b: f64) -> f64 {
        let holds = |c: bool| f64::from(u8::from(c));
        match self {
            BinaryFn::Div => a / b,
            BinaryFn::Min => {
                if a < b {
                    a
                } else {
                    b
                }
            }
            BinaryFn::Max => {
                if a > b {
                    a
                } else {
                    b
                }
            }
            BinaryFn::Pow => a.powf(b),
            BinaryFn::Less => holds(a < b),
            BinaryFn::LessEqual => holds(a <= b),
            BinaryFn::Greater => holds(a > b),
            BinaryFn::GreaterEqual => holds(a >= b),
            BinaryFn::Equal => holds(a == b),
            BinaryFn::NotEqual => holds(a != b),
        }
    }
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

/// A pooling window: size, stride and padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kernel: [usize; 2],
    pub stride: usize,
    pub pad: Pad,
}

/// Zero padding on each side of a plane: MatConvNet pads pooling windows `[0 1 0 1]`, only
/// below and to the right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pad {
    pub top: usize,
    pub bottom: usize,
    pub left: usize,
    pub right: usize,
}

impl Pad {
    /// The same padding on every side.
    pub const fn uniform(pad: usize) -> Pad {
        Pad { top: pad, bottom: pad, left: pad, right: pad }
    }

    /// `Some(p)` when every side is padded by `p`.
    pub fn as_uniform(self) -> Option<usize> {
        (self == Pad::uniform(self.top)).then_some(self.top)
    }
}

impl UnaryFn {
    /// The elementwise derivative, for the ops that autodiff differentiates through a
    /// derivative map; `None` for linear `Scale` (handled directly) and for the derivative
    /// maps themselves.
    pub fn derivative(self) -> Option<UnaryFn> {
        Some(match self {
            UnaryFn::Relu => UnaryFn::ReluDeriv,
            UnaryFn::Sigmoid => UnaryFn::SigmoidDeriv,
            UnaryFn::Tanh => UnaryFn::TanhDeriv,
            UnaryFn::Exp => UnaryFn::Exp,
            UnaryFn::Log => UnaryFn::LogDeriv,
            UnaryFn::Log1p => UnaryFn::Log1pDeriv,
            UnaryFn::Sqrt => UnaryFn::SqrtDeriv,
            UnaryFn::Abs => UnaryFn::Sign,
            UnaryFn::Softplus => UnaryFn::Sigmoid,
            _ => return None,
        })
    }

    /// The function's value in `f64`; every executor computes these formulas.
    pub fn eval(self, x: f64) -> f64 {
        match self {
            UnaryFn::Relu => x.max(0.0),
            UnaryFn::Sigmoid => sigmoid(x),
            UnaryFn::Tanh => x.tanh(),
            UnaryFn::Scale { c } => f64::from(c as f32) * x,
            UnaryFn::Exp => x.exp(),
            UnaryFn::Log => x.ln(),
            UnaryFn::Log1p => x.ln_1p(),
            UnaryFn::Sqrt => x.sqrt(),
            UnaryFn::Abs => x.abs(),
            // ln(1 + e^x) = max(x, 0) + ln(1 + e^−|x|): no overflow for any x.
            UnaryFn::Softplus => x.max(0.0) + (-x.abs()).exp().ln_1p(),
            UnaryFn::Sign => f64::from(u8::from(x > 0.0)) - f64::from(u8::from(x < 0.0)),
            UnaryFn::LogDeriv => 1.0 / x,
            UnaryFn::Log1pDeriv => 1.0 / (1.0 + x),
            UnaryFn::SqrtDeriv => 0.5 / x.sqrt(),
            UnaryFn::Equal { value } => f64::from(u8::from(x == value)),
            UnaryFn::ReluDeriv => f64::from(u8::from(x > 0.0)),
            UnaryFn::SigmoidDeriv => {
                let s = sigmoid(x);
                s * (1.0 - s)
            }
            UnaryFn::TanhDeriv => {
                let t = x.tanh();
                1.0 - t * t
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

impl Op {
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
            Op::RandomNormal { .. } => "random_normal",
            Op::Unary(f) => f.name(),
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Binary(f) => f.name(),
            Op::Select => "select",
            Op::StopGradient => "stop_gradient",
            Op::CustomGrad => "custom_grad",
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

impl UnaryFn {
    pub fn name(self) -> &'static str {
        match self {
            UnaryFn::Relu => "relu",
            UnaryFn::Sigmoid => "sigmoid",
            UnaryFn::Tanh => "tanh",
            UnaryFn::Scale { .. } => "scale",
            UnaryFn::Equal { .. } => "equal",
            UnaryFn::ReluDeriv => "relu_deriv",
            UnaryFn::SigmoidDeriv => "sigmoid_deriv",
            UnaryFn::TanhDeriv => "tanh_deriv",
            UnaryFn::Exp => "exp",
            UnaryFn::Log => "log",
            UnaryFn::Log1p => "log1p",
            UnaryFn::Sqrt => "sqrt",
            UnaryFn::Abs => "abs",
            UnaryFn::Softplus => "softplus",
            UnaryFn::Sign => "sign",
            UnaryFn::LogDeriv => "log_deriv",
            UnaryFn::Log1pDeriv => "log1p_deriv",
            UnaryFn::SqrtDeriv => "sqrt_deriv",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::ShapeError;

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
        let window = Window { kernel: [2, 2], stride: 2, pad: Pad::uniform(2) };
        assert!(infer(Op::Pool { kind: PoolKind::Max, window }, &[Shape::batched(&[1, 4, 4])]).is_err());
        let window = Window { kernel: [3, 3], stride: 2, pad: Pad::uniform(1) };
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
        assert_eq!(UnaryFn::Softplus.eval(1000.0), 1000.0);
        assert_eq!(UnaryFn::Softplus.eval(-1000.0), 0.0);
        assert!((UnaryFn::Softplus.eval(0.0) - 2f64.ln()).abs() < 1e-15);
        assert_eq!(UnaryFn::Sigmoid.eval(-1000.0), 0.0);
        assert_eq!(UnaryFn::Sigmoid.eval(1000.0), 1.0);
        assert_eq!(UnaryFn::ReluDeriv.eval(0.0), 0.0);
    }
}
