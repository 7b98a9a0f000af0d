//! The layer vocabulary: each operation's signature, how its typed arguments become an [`Op`],
//! and its shape rule.

use crate::args::{opt, opt_pos, req, Args, Param, Ty};
use crate::model::*;

/// What a statement written with a layer's name does in a net.
#[derive(Clone, Copy)]
pub enum Role {
    /// `conv(20, k=5)`: typed arguments, from which the op it lowers from is built. Only rules
    /// over several arguments can fail here; each argument's own type and range were checked
    /// when matching.
    Layer(fn(&Args) -> Result<Op, OpError>),
    /// `add(a, b)`: the arguments are the names of the layers it joins.
    Join(fn() -> Op),
    /// `loss softmax_xent(classes=10)`: the last statement, not a layer.
    Loss,
}

/// One entry of the layer vocabulary. Each op's shape rule and parameters are methods of the
/// [`Op`] it builds ([`out_shape`], [`Layer::parameters`]), matched exhaustively, so a new op
/// cannot go without them.
pub struct LayerDef {
    pub name: &'static str,
    pub signature: &'static [Param],
    pub role: Role,
}

const fn layer(name: &'static str, signature: &'static [Param], build: fn(&Args) -> Result<Op, OpError>) -> LayerDef {
    LayerDef { name, signature, role: Role::Layer(build) }
}

const fn activation(name: &'static str, build: fn(&Args) -> Result<Op, OpError>) -> LayerDef {
    layer(name, &[], build)
}

const POOL: [Param; 3] = [req("k", Ty::Kernel), opt_pos("stride", Ty::Positive), opt("pad", Ty::Pad)];
const CONV: [Param; 8] = [
    req("out", Ty::Positive),
    req("k", Ty::Kernel),
    opt("stride", Ty::Positive),
    opt("pad", Ty::Count),
    opt("bias", Ty::Bool),
    LR_MULT,
    WD_MULT,
    INIT,
];
const DENSE: [Param; 5] = [req("out", Ty::Positive), opt("bias", Ty::Bool), LR_MULT, WD_MULT, INIT];
const MIXLU: [Param; 5] = [req("negfrac", Ty::Fraction), MASK, PER, GRAD, EVAL];
const MIX: [Param; 11] = [
    opt(MIX_PARTS[0].0, Ty::Fraction),
    opt(MIX_PARTS[1].0, Ty::Fraction),
    opt(MIX_PARTS[2].0, Ty::Fraction),
    opt(MIX_PARTS[3].0, Ty::Fraction),
    opt(MIX_PARTS[4].0, Ty::Fraction),
    opt(MIX_PARTS[5].0, Ty::Fraction),
    opt("alpha", Ty::NonNegative),
    MASK,
    PER,
    GRAD,
    EVAL,
];
const MASK: Param = opt("mask", Ty::Word(&["fixed", "resample"]));
const PER: Param = opt("per", Ty::Word(&["channel", "position"]));
const GRAD: Param = opt("grad", Ty::Word(&["exact", "relu"]));
const EVAL: Param = opt("eval", Ty::Word(&["expect", "sample"]));
const LR_MULT: Param = opt("lr_mult", Ty::Mult);
const WD_MULT: Param = opt("wd_mult", Ty::Mult);
/// A layer's own weight initialisation, instead of the train block's `init`.
const INIT: Param = opt("init", Ty::Init);

/// An activation `mix` can combine: its argument name, and the activation it names given `mix`'s
/// `alpha`.
type MixPart = (&'static str, fn(f64) -> Activation);

const MIX_PARTS: [MixPart; 6] = [
    ("relu", |_| Activation::Relu),
    ("neglu", |_| Activation::NegLU),
    ("softneglu", |_| Activation::SoftNegLU),
    ("sigmoid", |_| Activation::Sigmoid),
    ("tanh", |_| Activation::Tanh),
    ("leaky_relu", |alpha| Activation::LeakyRelu { alpha }),
];

/// Every operation a net may name, in the order diagnostics list them: the one place that maps
/// a layer's name to its arguments and to the op it lowers from.
pub static LAYERS: &[LayerDef] = &[
    layer("conv", &CONV, |args| {
        Ok(Op::Conv {
            out: args.usize_or("out", 1),
            kernel: args.kernel("k").unwrap_or([1, 1]),
            stride: args.usize_or("stride", 1),
            pad: args.usize_or("pad", 0),
            bias: args.bool_or("bias", true),
        })
    }),
    layer("maxpool", &POOL, |args| Ok(pool(PoolKind::Max, args))),
    layer("avgpool", &POOL, |args| Ok(pool(PoolKind::Avg, args))),
    layer("dense", &DENSE, |args| Ok(Op::Dense { out: args.usize_or("out", 1), bias: args.bool_or("bias", true) })),
    activation("flatten", |_| Ok(Op::Flatten)),
    layer("dropout", &[opt_pos("p", Ty::Probability)], |args| Ok(Op::Dropout { p: args.f64_or("p", 0.5) })),
    activation("relu", |_| Ok(Op::Activation(Activation::Relu))),
    activation("neglu", |_| Ok(Op::Activation(Activation::NegLU))),
    activation("softneglu", |_| Ok(Op::Activation(Activation::SoftNegLU))),
    activation("sigmoid", |_| Ok(Op::Activation(Activation::Sigmoid))),
    activation("tanh", |_| Ok(Op::Activation(Activation::Tanh))),
    layer("leaky_relu", &[opt_pos("alpha", Ty::NonNegative)], |args| {
        Ok(Op::Activation(Activation::LeakyRelu { alpha: args.f64_or("alpha", 0.01) }))
    }),
    // A fixed MixLU between linear layers is a ReLU layer with flipped signs (W0002), so the
    // thesis's layer resamples by default, as its reference code did.
    layer("mixlu", &MIXLU, |args| {
        Ok(Op::MixLU { negfrac: args.f64_or("negfrac", 0.0), mask: mask(args, MaskMode::Resample)? })
    }),
    layer("mix", &MIX, |args| Ok(Op::Mix { parts: mix_parts(args)?, mask: mask(args, MaskMode::Fixed)? })),
    layer(
        "minmaxout",
        &[req("pieces", Ty::Positive), opt("units", Ty::Positive), opt("minfrac", Ty::Fraction)],
        |args| {
            Ok(Op::MinMaxout {
                // Inferred from the input's channels when not given; see `out_shape`.
                units: args.usize_or("units", 0),
                pieces: args.usize_or("pieces", 1),
                minfrac: args.f64_or("minfrac", 0.0),
            })
        },
    ),
    layer("convact", &[opt_pos("k", Ty::Positive), LR_MULT, WD_MULT], convact),
    layer("dale", &[req("inhibitory", Ty::Fraction)], |args| {
        Ok(Op::Dale { inhibitory: args.f64_or("inhibitory", 0.0) })
    }),
    LayerDef { name: "add", signature: &[], role: Role::Join(|| Op::Add) },
    LayerDef { name: "concat", signature: &[], role: Role::Join(|| Op::Concat) },
    LayerDef { name: "softmax_xent", signature: &[req("classes", Ty::Positive)], role: Role::Loss },
];

/// The entry of the operation called `name`.
pub fn lookup(name: &str) -> Option<&'static LayerDef> {
    LAYERS.iter().find(|def| def.name == name)
}

/// The names of the operations that may stand where `loss` does (`true`) or where a layer does.
pub fn names(loss: bool) -> Vec<&'static str> {
    LAYERS.iter().filter(|def| matches!(def.role, Role::Loss) == loss).map(|def| def.name).collect()
}

/// A problem found while building an op or inferring its shape: a message, where (an argument
/// name, or the whole layer), a label, and notes.
pub struct OpError {
    pub message: String,
    pub at: Option<&'static str>,
    pub label: String,
    pub notes: Vec<String>,
}

fn fail(message: String, at: Option<&'static str>, label: impl Into<String>, notes: Vec<String>) -> OpError {
    OpError { message, at, label: label.into(), notes }
}

/// A pooling pad as the user writes it: `1`, or `[0, 1, 0, 1]` when the sides differ.
pub fn pad_text(pad: [usize; 4]) -> String {
    if pad.iter().all(|&p| p == pad[0]) {
        pad[0].to_string()
    } else {
        shape_text(&pad)
    }
}

pub fn shape_text(shape: &[usize]) -> String {
    format!("[{}]", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", "))
}

fn pool(kind: PoolKind, args: &Args) -> Op {
    let kernel = args.kernel("k").unwrap_or([1, 1]);
    // Non-overlapping windows unless told otherwise, as in most frameworks.
    Op::Pool { kind, kernel, stride: args.usize_or("stride", kernel[0]), pad: args.pad("pad") }
}

/// The mask arguments; `mask` defaults to `default`.
fn mask(args: &Args, default: MaskMode) -> Result<Mask, OpError> {
    let default = if default == MaskMode::Resample { "resample" } else { "fixed" };
    let mask = Mask {
        mode: if args.word_or("mask", default) == "resample" { MaskMode::Resample } else { MaskMode::Fixed },
        per: if args.word_or("per", "channel") == "position" { MaskPer::Position } else { MaskPer::Channel },
        grad: if args.word_or("grad", "exact") == "relu" { MaskGrad::Relu } else { MaskGrad::Exact },
        eval: if args.word_or("eval", "expect") == "sample" { MaskEval::Sample } else { MaskEval::Expect },
    };
    if mask.eval == MaskEval::Sample && mask.mode == MaskMode::Fixed {
        return Err(fail(
            "`eval=sample` needs `mask=resample`".into(),
            Some("eval"),
            "a fixed mask has nothing to sample",
            vec!["help: write `mask=resample, eval=sample`, or drop `eval`".into()],
        ));
    }
    Ok(mask)
}

// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
fn convact(args: &Args) -> Result<Op, OpError> {
    let k = args.usize_or("k", 1);
    if k % 2 == 0 {
        return Err(fail(
            format!("`convact` needs an odd filter size, found k={k}"),
            Some("k"),
            "even",
            vec!["note: the filter is centred on each unit, so it needs a middle element".into()],
        ));
    }
    Ok(Op::ConvAct { k })
}

fn mix_parts(args: &Args) -> Result<Vec<(Activation, f64)>, OpError> {
    let alpha = args.f64_or("alpha", 0.01);
    let parts: Vec<(Activation, f64)> = MIX_PARTS
        .iter()
        .filter(|(name, _)| args.has(name))
        .map(|&(name, activation)| (activation(alpha), args.f64_or(name, 0.0)))
        .chain(args.mixed_units.iter().map(|(unit, frac)| (Activation::User(unit.clone()), *frac)))
        .collect();
    let total: f64 = parts.iter().map(|(_, f)| f).sum();
    if parts.is_empty() {
        return Err(fail(
            "`mix` names no activation".into(),
            None,
            "no fractions given",
            vec![format!(
                "help: give fractions that sum to 1, e.g. `mix(relu=0.9, neglu=0.1)`; the activations are {}",
                MIX_PARTS.map(|(name, _)| name).join(", ")
            )],
        ));
    }
    if (total - 1.0).abs() > 1e-6 {
        return Err(fail(
            format!("the fractions of `mix` sum to {total}, not 1"),
            None,
            format!("sums to {total}"),
            vec!["note: every unit gets exactly one activation, so the fractions must sum to 1".into()],
        ));
    }
    Ok(parts)
}

/// The most elements one per-example tensor (an output or a parameter) may have.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// The number of elements of `shape`, `None` when it is above [`MAX_ELEMENTS`].
pub fn elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).filter(|&n| n <= MAX_ELEMENTS)
}

/// Why a sliding window has no output size.
enum Misfit {
    /// The padded input would be wider than a tensor may be.
    Padding,
    /// The window is larger than the padded input.
    Window,
}

/// Output size of a sliding window: floor((in + before + after − k) / stride) + 1. The padded
/// input must fit a tensor's bounds, so that every index the executors compute over it fits too.
fn window(input: usize, k: usize, stride: usize, [before, after]: [usize; 2]) -> Result<usize, Misfit> {
    let padded = before.checked_add(after).and_then(|p| p.checked_add(input)).filter(|&n| n <= MAX_ELEMENTS);
    let room = padded.ok_or(Misfit::Padding)?.checked_sub(k).ok_or(Misfit::Window)?;
    Ok(room / stride + 1)
}

/// The per-example output shape of `op` applied to `input`.
// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
pub fn out_shape(op: &mut Op, name: &str, input: &[usize]) -> Result<Shape, OpError> {
    let spatial = |what: &str| -> Result<[usize; 3], OpError> {
        match *input {
            [c, h, w] => Ok([c, h, w]),
            _ => Err(fail(
                format!(
                    "`{what}` needs a [channels, height, width] input, but `{name}` receives {}",
                    shape_text(input)
                ),
                None,
                format!("input is {}", shape_text(input)),
                vec![if input.len() == 1 {
                    "help: use `dense` on flat inputs".into()
                } else {
                    "note: the batch dimension is implicit".into()
                }],
            )),
        }
    };
    let slide = |what: &str, [c, h, w]: [usize; 3], [kh, kw]: [usize; 2], stride: usize, pad: [usize; 4]| match (
        window(h, kh, stride, [pad[0], pad[1]]),
        window(w, kw, stride, [pad[2], pad[3]]),
    ) {
        (Ok(ho), Ok(wo)) => Ok((c, ho, wo)),
        (Err(Misfit::Padding), _) | (_, Err(Misfit::Padding)) => Err(fail(
            format!("`{name}` pads its {h}×{w} input by {}, more than a tensor can hold", pad_text(pad)),
            Some("pad"),
            "too much padding",
            vec![format!(
                "note: the padded input, in + 2·pad, may be at most 2^31 wide; the input is {}",
                shape_text(input)
            )],
        )),
        _ => Err(fail(
            format!(
                "the {kh}×{kw} window of `{name}` is larger than its {h}×{w} input{}",
                if pad != [0; 4] { format!(" padded by {}", pad_text(pad)) } else { String::new() }
            ),
            Some("k"),
            format!("{what} window {kh}×{kw} does not fit {}", shape_text(input)),
            vec!["note: output size = floor((in + 2·pad − k) / stride) + 1 must be at least 1".into()],
        )),
    };
    match op {
        Op::Conv { out, kernel, stride, pad, .. } => {
            let (_, ho, wo) = slide("conv", spatial("conv")?, *kernel, *stride, [*pad; 4])?;
            Ok(vec![*out, ho, wo])
        }
        Op::Pool { kind, kernel, stride, pad } => {
            let what = if *kind == PoolKind::Max { "maxpool" } else { "avgpool" };
            if pad[0].max(pad[1]) >= kernel[0] || pad[2].max(pad[3]) >= kernel[1] {
                return Err(fail(
                    format!(
                        "`{name}` pads by {}, which is not smaller than its {}×{} window",
                        pad_text(*pad),
                        kernel[0],
                        kernel[1]
                    ),
                    Some("pad"),
                    "too much padding",
                    vec!["note: a window made only of padding has no input to pool".into()],
                ));
            }
            let (c, ho, wo) = slide(what, spatial(what)?, *kernel, *stride, *pad)?;
            Ok(vec![c, ho, wo])
        }
        Op::Dense { out, .. } => Ok(vec![*out]),
        Op::Flatten => Ok(vec![input.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).unwrap_or(usize::MAX)]),
        Op::MinMaxout { units, pieces, .. } => {
            let channels = input[0];
            if *units == 0 {
                if channels % *pieces != 0 {
                    return Err(fail(
                        format!("`{name}` groups {pieces} pieces per unit, but its input has {channels} channels"),
                        Some("pieces"),
                        format!("{channels} is not a multiple of {pieces}"),
                        vec![format!(
                            "note: the layer before must give units × pieces channels; input is {}",
                            shape_text(input)
                        )],
                    ));
                }
                *units = channels / *pieces;
            } else if units.checked_mul(*pieces) != Some(channels) {
                let needed = units.checked_mul(*pieces).map_or("more than 2^64".to_string(), |n| n.to_string());
                return Err(fail(
                    format!("`{name}` needs units × pieces = {needed} input channels, but receives {channels}"),
                    Some("units"),
                    format!("{units} units × {pieces} pieces"),
                    vec![format!("help: make the layer before give {needed} channels, or drop `units` to infer it")],
                ));
            }
            let mut shape = input.to_vec();
            shape[0] = *units;
            Ok(shape)
        }
        Op::ConvAct { k } if *k > 1 && input.len() != 3 => Err(fail(
            format!(
                "`convact(k={k})` filters over space and needs a [channels, height, width] input; `{name}` receives {}",
                shape_text(input)
            ),
            Some("k"),
            "spatial filter on a flat input",
            vec!["help: use k=1 for a per-unit learned activation on flat inputs".into()],
        )),
        Op::ConvAct { .. }
        | Op::Dropout { .. }
        | Op::Activation(_)
        | Op::MixLU { .. }
        | Op::Mix { .. }
        | Op::Dale { .. }
        | Op::Unit(_)
        | Op::Add
        | Op::Concat => Ok(input.to_vec()),
    }
}

/// The built-in layers (and the loss) with their argument names in signature order, for
/// editors' completion.
pub fn layer_signatures() -> impl Iterator<Item = (&'static str, Vec<&'static str>)> {
    LAYERS.iter().map(|l| (l.name, l.signature.iter().map(|p| p.name).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn the_layer_table_names_each_operation_and_argument_once() {
        let mut seen = HashSet::new();
        for def in LAYERS {
            assert!(seen.insert(def.name), "`{}` is in the table twice", def.name);
            let mut args = HashSet::new();
            for param in def.signature {
                assert!(args.insert(param.name), "`{}` has the argument `{}` twice", def.name, param.name);
            }
            assert!(std::ptr::eq(lookup(def.name).unwrap(), def));
        }
        assert_eq!(names(true), ["softmax_xent"]);
        assert!(names(false).contains(&"add") && !names(false).contains(&"softmax_xent"));
        assert!(lookup("Conv").is_none());
    }

    #[test]
    fn a_layer_builds_the_op_it_lowers_from() {
        let Some(Role::Layer(build)) = lookup("avgpool").map(|d| d.role) else { panic!("avgpool is a layer") };
        let op = build(&Args::default()).unwrap_or_else(|e| panic!("{}", e.message));
        assert_eq!(op, Op::Pool { kind: PoolKind::Avg, kernel: [1, 1], stride: 1, pad: [0; 4] });
        let Some(Role::Join(join)) = lookup("concat").map(|d| d.role) else { panic!("concat joins") };
        assert_eq!(join(), Op::Concat);
    }
}
