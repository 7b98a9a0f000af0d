//! The checked network: every name resolved, every argument typed and in range, every shape
//! known. This is what the checker hands to lowering; nothing downstream re-validates it.

use netc_syntax::Span;
use std::fmt;
use std::sync::Arc;

/// A per-example tensor shape. The batch dimension is not part of it.
pub type Shape = Vec<usize>;

/// A checked network, ready to lower.
#[derive(Clone, Debug, PartialEq)]
pub struct Net {
    pub name: String,
    /// Net parameters after defaults and `--set` overrides, in declaration order.
    pub params: Vec<(String, ParamValue)>,
    pub input: Input,
    /// Layers in source order, which is a topological order: a layer reads only earlier nodes.
    /// A block's layers are inlined where it is used.
    pub layers: Vec<Layer>,
    /// The uses of blocks, in source order (an inner use after the outer one).
    pub blocks: Vec<BlockUse>,
    pub loss: Loss,
    pub span: Span,
}

/// A use of a block in the checked net, for summaries: which layers it inlined.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockUse {
    /// The use's name, `residual1` (`outer1.inner1` for a block used inside another).
    pub name: String,
    /// The block's name, `residual`.
    pub block: String,
    /// The use as written, `residual(16)`.
    pub call: String,
    /// The layers it inlined, a range of `Net::layers`.
    pub layers: std::ops::Range<usize>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub name: String,
    pub shape: Shape,
    pub span: Span,
}

/// Where a layer reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    Input,
    Layer(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// The user's name, or an automatic one (`conv1`, `relu2`, ...); unique within the net.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<Node>,
    pub out_shape: Shape,
    /// Multipliers of the global learning rate and weight decay for this layer's parameters.
    pub lr_mult: Mult,
    pub wd_mult: Mult,
    /// The layer's own weight initialisation; `None` draws from the train block's `init`.
    pub init: Option<crate::config::Init>,
    pub span: Span,
}

/// A multiplier of the learning rate or the weight decay: one for a layer's weights (and
/// ConvAct's filters), one for its biases, as MatConvNet's per-layer `learningRate = [w b]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mult {
    pub weights: f64,
    pub biases: f64,
}

impl Mult {
    pub const ONE: Mult = Mult { weights: 1.0, biases: 1.0 };
}

/// The final softmax cross-entropy loss.
#[derive(Clone, Debug, PartialEq)]
pub struct Loss {
    pub classes: usize,
    pub input: Node,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// 2-D convolution over `[C, H, W]`, weight `[out, C, kh, kw]`.
    Conv {
        out: usize,
        kernel: [usize; 2],
        stride: usize,
        pad: usize,
        bias: bool,
    },
    Pool {
        kind: PoolKind,
        kernel: [usize; 2],
        stride: usize,
        /// Top, bottom, left, right.
        pad: [usize; 4],
    },
    /// Fully connected; a spatial input is flattened first. Weight `[out, in]`.
    Dense {
        out: usize,
        bias: bool,
    },
    Flatten,
    Dropout {
        p: f64,
    },
    Activation(Activation),
    /// `mixlu(negfrac)`: a fraction of the units are NegLUs, the rest ReLUs.
    MixLU {
        negfrac: f64,
        mask: Mask,
    },
    /// `mix(relu=.., neglu=.., ...)`: a per-unit mix of activations whose fractions sum to 1.
    Mix {
        parts: Vec<(Activation, f64)>,
        mask: Mask,
    },
    /// Groups of `pieces` consecutive channels; a max unit outputs the largest, a min unit the
    /// smallest. `minfrac` of the `units` are min units.
    MinMaxout {
        units: usize,
        pieces: usize,
        minfrac: f64,
    },
    /// Learned activation `y = a⁺ ⊛ relu(x) + a⁻ ⊛ neglu(x)` with depthwise `k×k` filters.
    ConvAct {
        k: usize,
    },
    /// `dale(inhibitory)`: the identity, declaring the units of its input (channels of a
    /// `[C, ...]` tensor, elements of a flat one) an excitatory/inhibitory population: a seeded
    /// fraction `inhibitory` of them are inhibitory. The weight layers that read the units keep
    /// the weights leaving excitatory units ≥ 0 and those leaving inhibitory units ≤ 0.
    Dale {
        inhibitory: f64,
    },
    /// A user-defined unit applied to every element.
    Unit(Arc<UnitUse>),
    /// Elementwise sum of two or more equal shapes.
    Add,
    /// Concatenation along the channel (first) axis.
    Concat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Activation {
    Relu,
    /// `min(0, x)`
    NegLU,
    /// `-ln(1 + e^-x)`
    SoftNegLU,
    Sigmoid,
    Tanh,
    LeakyRelu {
        alpha: f64,
    },
    /// A unit defined in the file.
    User(Arc<UnitUse>),
}

/// A user-defined unit, checked: an elementwise function of its input `Var(0)`. Units it
/// calls are inlined, so the expression reads only its own parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitDef {
    pub name: String,
    pub params: Vec<UnitParam>,
    pub body: UnitExpr,
    /// The derivative dy/dx written after `grad`, replacing the body's.
    pub grad: Option<UnitExpr>,
    /// How many `noise` terms the body has (numbered from 0).
    pub noises: usize,
    /// How many variables the expressions bind (`Var(0)`, the input, included).
    pub vars: usize,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UnitParam {
    pub name: String,
    pub default: UnitValue,
}

/// A unit parameter's value: a constant, or a learned parameter with its initial value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnitValue {
    Const(f64),
    Learned(f64),
}

/// A use of a unit: the definition, and its parameters' values at this use.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitUse {
    pub def: Arc<UnitDef>,
    pub values: Vec<UnitValue>,
}

impl UnitUse {
    /// The names of the learned parameters, in declaration order.
    pub fn learned(&self) -> impl Iterator<Item = (&str, f64)> {
        self.def.params.iter().zip(&self.values).filter_map(|(p, v)| match v {
            UnitValue::Learned(init) => Some((p.name.as_str(), *init)),
            UnitValue::Const(_) => None,
        })
    }
}

/// A checked unit expression.
#[derive(Clone, Debug, PartialEq)]
pub enum UnitExpr {
    /// A bound input: `Var(0)` is the unit's input; a [`UnitExpr::Custom`] binds others.
    Var(usize),
    Const(f64),
    /// The unit's parameter, by index.
    Param(usize),
    /// The `k`-th `noise` term: N(0, 1) per element and step in training, 0 in evaluation.
    Noise(usize),
    Neg(Box<UnitExpr>),
    Binary(UnitOp, Box<UnitExpr>, Box<UnitExpr>),
    Func(UnitFn, Box<UnitExpr>),
    /// `where(c, a, b)`: `a` where `c` is non-zero, else `b`.
    Where(Box<UnitExpr>, Box<UnitExpr>, Box<UnitExpr>),
    /// A call of a unit with a `grad`: `body` of `arg` (bound to `Var(var)`), whose derivative
    /// with respect to `arg` is `grad`.
    Custom {
        var: usize,
        arg: Box<UnitExpr>,
        body: Box<UnitExpr>,
        grad: Box<UnitExpr>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitOp {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    Pow,
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    Equal,
    NotEqual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitFn {
    Relu,
    Abs,
    Exp,
    Log,
    Log1p,
    Sqrt,
    Tanh,
    Sigmoid,
    Softplus,
}

/// How the units of a mixed layer are assigned their activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mask {
    pub mode: MaskMode,
    pub per: MaskPer,
    pub grad: MaskGrad,
    pub eval: MaskEval,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskMode {
    /// Chosen once from the seed; the same in training and evaluation.
    Fixed,
    /// A fresh random choice over the whole batch tensor at every training step.
    Resample,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskPer {
    /// One choice per channel (per unit for flat tensors).
    Channel,
    /// One choice per element of the example tensor.
    Position,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskGrad {
    /// The true derivative of each unit's activation.
    Exact,
    /// The ReLU derivative for the NegLU units, as the thesis's reference code did.
    Relu,
}

/// What a resampled mask does in evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskEval {
    /// The expectation over masks, `Σ fᵢ·actᵢ(x)`: deterministic.
    Expect,
    /// A fresh mask per evaluation batch, as the thesis's reference code drew (its custom layer
    /// ignored MatConvNet's test mode); keyed by seed, pass and batch.
    Sample,
}

/// A resolved net parameter value.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Ident(String),
}

/// A learned tensor of a layer, such as `conv1.weight`.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Shape,
    /// Whether weight decay applies by default (the thesis recipe decays weights and biases).
    pub kind: ParamKind,
    /// The initial value of a unit's learned parameter.
    pub init: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    Weight,
    Bias,
    /// ConvAct's activation filters.
    ActivationFilter,
    /// A learned parameter of a user-defined unit, one per channel (or per unit of a flat layer).
    UnitParam,
}

impl Op {
    /// Whether a population of units declared before this op is still one after it: the op
    /// keeps every unit's values apart (flatten, dropout, pooling within each channel).
    pub fn keeps_units(&self) -> bool {
        matches!(self, Op::Flatten | Op::Dropout { .. } | Op::Pool { .. })
    }

    /// Whether the op has a weight whose inputs are the units of the layer it reads.
    pub fn has_weights(&self) -> bool {
        matches!(self, Op::Conv { .. } | Op::Dense { .. })
    }
}

impl Net {
    /// The `dale` layer whose population `node` carries: `node` itself, or the layer it reads
    /// through ops that keep units.
    pub fn population(&self, mut node: Node) -> Option<usize> {
        // A loop, not recursion: a chain of such ops may be as long as the net.
        loop {
            let Node::Layer(i) = node else { return None };
            let layer = self.layers.get(i)?;
            match layer.op {
                Op::Dale { .. } => return Some(i),
                _ if layer.op.keeps_units() => node = *layer.inputs.first()?,
                _ => return None,
            }
        }
    }

    pub fn shape_of(&self, node: Node) -> &Shape {
        match node {
            Node::Input => &self.input.shape,
            Node::Layer(i) => &self.layers[i].out_shape,
        }
    }

    pub fn in_shape(&self, layer: &Layer) -> &Shape {
        self.shape_of(layer.inputs[0])
    }

    /// Parameters of every layer, in order, named `LAYER.PARAM`.
    pub fn parameters(&self) -> Vec<(String, ParamSpec)> {
        self.layers
            .iter()
            .flat_map(|l| {
                l.parameters(self.in_shape(l)).into_iter().map(move |p| (format!("{}.{}", l.name, p.name), p))
            })
            .collect()
    }
}

impl Layer {
    /// The learned tensors of this layer given its input shape.
    pub fn parameters(&self, in_shape: &[usize]) -> Vec<ParamSpec> {
        let spec = |name: &str, shape: &[usize], kind| ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
            kind,
            init: None,
        };
        // A unit's learned parameters: one per channel, or per element of a flat input.
        let unit_params = |unit: &UnitUse, prefix: &str| -> Vec<ParamSpec> {
            let units = in_shape.first().copied().unwrap_or(1);
            unit.learned()
                .map(|(name, init)| ParamSpec {
                    name: format!("{prefix}{name}"),
                    shape: vec![units],
                    kind: ParamKind::UnitParam,
                    init: Some(init),
                })
                .collect()
        };
        match &self.op {
            Op::Conv { out, kernel: [kh, kw], bias, .. } => {
                let mut ps = vec![spec("weight", &[*out, in_shape[0], *kh, *kw], ParamKind::Weight)];
                if *bias {
                    ps.push(spec("bias", &[*out], ParamKind::Bias));
                }
                ps
            }
            Op::Dense { out, bias } => {
                let features = in_shape.iter().product();
                let mut ps = vec![spec("weight", &[*out, features], ParamKind::Weight)];
                if *bias {
                    ps.push(spec("bias", &[*out], ParamKind::Bias));
                }
                ps
            }
            Op::ConvAct { k } => {
                let channels = in_shape[0];
                vec![
                    spec("pos", &[channels, *k, *k], ParamKind::ActivationFilter),
                    spec("neg", &[channels, *k, *k], ParamKind::ActivationFilter),
                ]
            }
            Op::Unit(unit) => unit_params(unit, ""),
            // Each unit of a mix has its own parameters, named after it.
            Op::Mix { parts, .. } => parts
                .iter()
                .filter_map(|(a, _)| match a {
                    Activation::User(unit) => Some(unit_params(unit, &format!("{}.", unit.def.name))),
                    _ => None,
                })
                .flatten()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Multiply-accumulates of the forward pass for one example.
    pub fn macs(&self, in_shape: &[usize]) -> u64 {
        let out: u64 = self.out_shape.iter().map(|&d| d as u64).product();
        match &self.op {
            Op::Conv { kernel: [kh, kw], .. } => out * (in_shape[0] * kh * kw) as u64,
            Op::Dense { .. } => out * in_shape.iter().map(|&d| d as u64).product::<u64>(),
            Op::ConvAct { k } => 2 * out * (k * k) as u64,
            _ => 0,
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Relu => f.write_str("relu"),
            Activation::NegLU => f.write_str("neglu"),
            Activation::SoftNegLU => f.write_str("softneglu"),
            Activation::Sigmoid => f.write_str("sigmoid"),
            Activation::Tanh => f.write_str("tanh"),
            Activation::LeakyRelu { alpha } => write!(f, "leaky_relu(alpha={alpha})"),
            Activation::User(unit) => f.write_str(&unit.def.name),
        }
    }
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            MaskMode::Fixed => "fixed",
            MaskMode::Resample => "resample",
        };
        write!(f, "mask={mode}")?;
        if self.per == MaskPer::Position {
            f.write_str(", per=position")?;
        }
        if self.grad == MaskGrad::Relu {
            f.write_str(", grad=relu")?;
        }
        if self.eval == MaskEval::Sample {
            f.write_str(", eval=sample")?;
        }
        Ok(())
    }
}

/// The op as the user would write it, for summaries and IR comments.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kernel = |[h, w]: [usize; 2]| {
            if h == w {
                h.to_string()
            } else {
                format!("[{h}, {w}]")
            }
        };
        match self {
            Op::Conv { out, kernel: k, stride, pad, bias } => {
                write!(f, "conv({out}, k={}", kernel(*k))?;
                if *stride != 1 {
                    write!(f, ", stride={stride}")?;
                }
                if *pad != 0 {
                    write!(f, ", pad={pad}")?;
                }
                if !bias {
                    f.write_str(", bias=false")?;
                }
                f.write_str(")")
            }
            Op::Pool { kind, kernel: k, stride, pad } => {
                let name = if *kind == PoolKind::Max { "maxpool" } else { "avgpool" };
                write!(f, "{name}({}, stride={stride}", kernel(*k))?;
                if *pad != [0; 4] {
                    write!(f, ", pad={}", crate::ops::pad_text(*pad))?;
                }
                f.write_str(")")
            }
            Op::Dense { out, bias } => {
                write!(f, "dense({out}")?;
                if !bias {
                    f.write_str(", bias=false")?;
                }
                f.write_str(")")
            }
            Op::Flatten => f.write_str("flatten"),
            Op::Dropout { p } => write!(f, "dropout(p={p})"),
            Op::Activation(a) => write!(f, "{a}"),
            Op::MixLU { negfrac, mask } => write!(f, "mixlu(negfrac={negfrac}, {mask})"),
            Op::Mix { parts, mask } => {
                f.write_str("mix(")?;
                for (a, frac) in parts {
                    write!(f, "{a}={frac}, ")?;
                }
                write!(f, "{mask})")
            }
            Op::MinMaxout { units, pieces, minfrac } => {
                write!(f, "minmaxout(units={units}, pieces={pieces}, minfrac={minfrac})")
            }
            Op::ConvAct { k } => write!(f, "convact(k={k})"),
            Op::Dale { inhibitory } => write!(f, "dale(inhibitory={inhibitory})"),
            Op::Unit(unit) => write!(f, "{unit}"),
            Op::Add => f.write_str("add"),
            Op::Concat => f.write_str("concat"),
        }
    }
}

/// `prelu(alpha=learned(0.25))`: the unit with every parameter's value at this use.
impl fmt::Display for UnitUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.def.name)?;
        if self.values.is_empty() {
            return Ok(());
        }
        let args: Vec<String> = self
            .def
            .params
            .iter()
            .zip(&self.values)
            .map(|(p, v)| match v {
                UnitValue::Const(c) => format!("{}={c}", p.name),
                UnitValue::Learned(init) => format!("{}=learned({init})", p.name),
            })
            .collect();
        write!(f, "({})", args.join(", "))
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Float(v) => write!(f, "{v}"),
            ParamValue::Bool(v) => write!(f, "{v}"),
            ParamValue::Str(v) => write!(f, "{v:?}"),
            ParamValue::Ident(v) => f.write_str(v),
        }
    }
}
