//! The layer vocabulary: each operation's signature, how its typed arguments become an [`Op`],
//! and its shape rule.

use crate::args::{opt, opt_pos, req, Args, Param, Ty};
use crate::model::*;

const MASK_ARGS: [Param; 3] = [
    opt("mask", Ty::Word(&["fixed", "resample"])),
    opt("per", Ty::Word(&["channel", "position"])),
    opt("grad", Ty::Word(&["exact", "relu"])),
];
const MULTS: [Param; 2] = [opt("lr_mult", Ty::NonNegative), opt("wd_mult", Ty::NonNegative)];

/// The activations `mix` can combine, by their argument name.
const MIX_PARTS: [&str; 6] = ["relu", "neglu", "softneglu", "sigmoid", "tanh", "leaky_relu"];

/// Every layer operation a net body may use, with `add` and `concat` (whose arguments are
/// layer names, handled by the net checker).
pub const LAYER_OPS: &[&str] = &[
    "conv",
    "maxpool",
    "avgpool",
    "dense",
    "flatten",
    "dropout",
    "relu",
    "neglu",
    "softneglu",
    "sigmoid",
    "tanh",
    "leaky_relu",
    "mixlu",
    "mix",
    "minmaxout",
    "convact",
    "dale",
    "add",
    "concat",
];
pub const LOSS_OPS: &[&str] = &["softmax_xent"];

/// The signature of a layer operation, `None` for unknown names.
pub fn signature(op: &str) -> Option<Vec<Param>> {
    let pool = || vec![req("k", Ty::Kernel), opt_pos("stride", Ty::Positive), opt("pad", Ty::Count)];
    let with = |mut base: Vec<Param>, extra: &[Param]| {
        base.extend_from_slice(extra);
        base
    };
    Some(match op {
        "conv" => with(
            vec![
                req("out", Ty::Positive),
                req("k", Ty::Kernel),
                opt("stride", Ty::Positive),
                opt("pad", Ty::Count),
                opt("bias", Ty::Bool),
            ],
            &MULTS,
        ),
        "maxpool" | "avgpool" => pool(),
        "dense" => with(vec![req("out", Ty::Positive), opt("bias", Ty::Bool)], &MULTS),
        "flatten" | "relu" | "neglu" | "softneglu" | "sigmoid" | "tanh" => vec![],
        "dropout" => vec![opt_pos("p", Ty::Probability)],
        "leaky_relu" => vec![opt_pos("alpha", Ty::NonNegative)],
        "mixlu" => with(vec![req("negfrac", Ty::Fraction)], &MASK_ARGS),
        "mix" => {
            let mut s: Vec<Param> = MIX_PARTS.iter().map(|&name| opt(name, Ty::Fraction)).collect();
            s.push(opt("alpha", Ty::NonNegative));
            with(s, &MASK_ARGS)
        }
        "minmaxout" => vec![req("pieces", Ty::Positive), opt("units", Ty::Positive), opt("minfrac", Ty::Fraction)],
        "convact" => with(vec![opt_pos("k", Ty::Positive)], &MULTS),
        "dale" => vec![req("inhibitory", Ty::Fraction)],
        "softmax_xent" => vec![req("classes", Ty::Positive)],
        _ => return None,
    })
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

pub fn shape_text(shape: &[usize]) -> String {
    format!("[{}]", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", "))
}

/// Builds the op from its checked arguments. Only cross-argument rules can fail here; each
/// argument's own type and range were checked when matching.
// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
pub fn build(op: &str, args: &Args) -> Result<Op, OpError> {
    let kernel = || args.kernel("k").unwrap_or([1, 1]);
    let mask = || Mask {
        mode: if args.word_or("mask", "fixed") == "resample" { MaskMode::Resample } else { MaskMode::Fixed },
        per: if args.word_or("per", "channel") == "position" { MaskPer::Position } else { MaskPer::Channel },
        grad: if args.word_or("grad", "exact") == "relu" { MaskGrad::Relu } else { MaskGrad::Exact },
    };
    Ok(match op {
        "conv" => Op::Conv {
            out: args.usize_or("out", 1),
            kernel: kernel(),
            stride: args.usize_or("stride", 1),
            pad: args.usize_or("pad", 0),
            bias: args.bool_or("bias", true),
        },
        "maxpool" | "avgpool" => {
            let k = kernel();
            Op::Pool {
                kind: if op == "maxpool" { PoolKind::Max } else { PoolKind::Avg },
                kernel: k,
                // Non-overlapping windows unless told otherwise, as in most frameworks.
                stride: args.usize_or("stride", k[0]),
                pad: args.usize_or("pad", 0),
            }
        }
        "dense" => Op::Dense { out: args.usize_or("out", 1), bias: args.bool_or("bias", true) },
        "flatten" => Op::Flatten,
        "dropout" => Op::Dropout { p: args.f64_or("p", 0.5) },
        "relu" => Op::Activation(Activation::Relu),
        "neglu" => Op::Activation(Activation::NegLU),
        "softneglu" => Op::Activation(Activation::SoftNegLU),
        "sigmoid" => Op::Activation(Activation::Sigmoid),
        "tanh" => Op::Activation(Activation::Tanh),
        "leaky_relu" => Op::Activation(Activation::LeakyRelu { alpha: args.f64_or("alpha", 0.01) }),
        "mixlu" => Op::MixLU { negfrac: args.f64_or("negfrac", 0.0), mask: mask() },
        "mix" => Op::Mix { parts: mix_parts(args)?, mask: mask() },
        "minmaxout" => Op::MinMaxout {
            // Inferred from the input's channels when not given; see `out_shape`.
            units: args.usize_or("units", 0),
            pieces: args.usize_or("pieces", 1),
            minfrac: args.f64_or("minfrac", 0.0),
        },
        "convact" => {
            let k = args.usize_or("k", 1);
            if k % 2 == 0 {
                return Err(fail(
                    format!("`convact` needs an odd filter size, found k={k}"),
                    Some("k"),
                    "even",
                    vec!["note: the filter is centred on each unit, so it needs a middle element".into()],
                ));
            }
            Op::ConvAct { k }
        }
        "dale" => Op::Dale { inhibitory: args.f64_or("inhibitory", 0.0) },
        _ => unreachable_op(op)?,
    })
}

fn unreachable_op(op: &str) -> Result<Op, OpError> {
    Err(fail(format!("`{op}` is not a layer operation"), None, "here", vec![]))
}

fn mix_parts(args: &Args) -> Result<Vec<(Activation, f64)>, OpError> {
    let parts: Vec<(Activation, f64)> = MIX_PARTS
        .iter()
        .filter(|name| args.has(name))
        .map(|&name| {
            let act = match name {
                "relu" => Activation::Relu,
                "neglu" => Activation::NegLU,
                "softneglu" => Activation::SoftNegLU,
                "sigmoid" => Activation::Sigmoid,
                "tanh" => Activation::Tanh,
                _ => Activation::LeakyRelu { alpha: args.f64_or("alpha", 0.01) },
            };
            (act, args.f64_or(name, 0.0))
        })
        .collect();
    let total: f64 = parts.iter().map(|(_, f)| f).sum();
    if parts.is_empty() {
        return Err(fail(
            "`mix` names no activation".into(),
            None,
            "no fractions given",
            vec![format!(
                "help: give fractions that sum to 1, e.g. `mix(relu=0.9, neglu=0.1)`; the activations are {}",
                MIX_PARTS.join(", ")
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

/// Output size of a sliding window: floor((in + 2·pad − k) / stride) + 1, or `None` when the
/// window does not fit. Saturates instead of overflowing on absurd paddings, whose outputs are
/// then reported as too large.
fn window(input: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    input.saturating_add(pad.saturating_mul(2)).checked_sub(k).map(|room| room / stride + 1)
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
    let slide = |what: &str, [c, h, w]: [usize; 3], [kh, kw]: [usize; 2], stride: usize, pad: usize| match (
        window(h, kh, stride, pad),
        window(w, kw, stride, pad),
    ) {
        (Some(ho), Some(wo)) => Ok((c, ho, wo)),
        _ => Err(fail(
            format!(
                "the {kh}×{kw} window of `{name}` is larger than its {h}×{w} input{}",
                if pad > 0 { format!(" padded by {pad}") } else { String::new() }
            ),
            Some("k"),
            format!("{what} window {kh}×{kw} does not fit {}", shape_text(input)),
            vec!["note: output size = floor((in + 2·pad − k) / stride) + 1 must be at least 1".into()],
        )),
    };
    match op {
        Op::Conv { out, kernel, stride, pad, .. } => {
            let (_, ho, wo) = slide("conv", spatial("conv")?, *kernel, *stride, *pad)?;
            Ok(vec![*out, ho, wo])
        }
        Op::Pool { kind, kernel, stride, pad } => {
            let what = if *kind == PoolKind::Max { "maxpool" } else { "avgpool" };
            if *pad >= kernel[0].min(kernel[1]) {
                return Err(fail(
                    format!("`{name}` pads by {pad}, which is not smaller than its {}×{} window", kernel[0], kernel[1]),
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
        _ => Ok(input.to_vec()),
    }
}
