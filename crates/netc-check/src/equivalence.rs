//! Layers that are a simpler layer in disguise. With a fixed assignment and the exact gradient,
//! a NegLU is a ReLU with its signs flipped: min(0, z) = −relu(−z). Negate the incoming weights
//! and bias and the outgoing weights of each such unit and the net computes the same logits;
//! a symmetric initialisation, SGD with momentum and L2 weight decay are unchanged by that flip,
//! so training follows the same path (tests/equivalence.rs proves it bit for bit). An experiment
//! on such a layer measures the simpler net, so the checker says so.

use crate::model::*;
use netc_syntax::{Code, Diagnostic, Label};
use std::collections::HashMap;

/// A warning for every written layer equivalent to a simpler one by a sign flip of the weights
/// around it: one per line of the file, naming its first layer, however often blocks inline it.
pub(crate) fn equivalences(net: &Net) -> Vec<Diagnostic> {
    let mut readers: HashMap<Node, Vec<usize>> = HashMap::new();
    for (index, layer) in net.layers.iter().enumerate() {
        for &input in &layer.inputs {
            let list = readers.entry(input).or_default();
            if list.last() != Some(&index) {
                list.push(index);
            }
        }
    }
    let read_by = |node: Node| readers.get(&node).map_or(&[][..], Vec::as_slice);
    let mut warnings = Vec::new();
    // Per written layer, its warning's index and how many more layers it stands for.
    let mut lines: HashMap<std::ops::Range<usize>, (usize, usize)> = HashMap::new();
    for (index, layer) in net.layers.iter().enumerate() {
        let Some(disguise) = disguise(net, layer) else { continue };
        // The flip needs a linear layer of its own in front, whose units it can negate...
        let Some(Node::Layer(producer)) = layer.inputs.first().copied() else { continue };
        let feeds_only_this = read_by(Node::Layer(producer)) == [index] && net.loss.input != Node::Layer(producer);
        if !net.layers[producer].op.has_weights() || !feeds_only_this {
            continue;
        }
        // ...and only linear layers after it, reached through ops that commute with negation.
        let Some(consumer) = linear_readers(net, index, &read_by) else { continue };
        match lines.entry(layer.span.range()) {
            std::collections::hash_map::Entry::Occupied(mut line) => line.get_mut().1 += 1,
            std::collections::hash_map::Entry::Vacant(line) => {
                line.insert((warnings.len(), 0));
                warnings.push(warning(layer, &net.layers[producer], &net.layers[consumer], disguise));
            }
        }
    }
    for (index, more) in lines.into_values().filter(|&(_, more)| more > 0) {
        let s = if more == 1 { "" } else { "s" };
        warnings[index]
            .notes
            .push(format!("note: and {more} more layer{s} from this line, through the uses of its block"));
    }
    warnings
}

/// What a layer is in disguise, when its units are fixed and differentiated exactly.
#[derive(Clone, Copy)]
struct Disguise {
    simpler: &'static str,
    why: &'static str,
    /// Whether another mask would make the layer more than the simpler one.
    resample_helps: bool,
}

fn disguise(net: &Net, layer: &Layer) -> Option<Disguise> {
    let flat = net.in_shape(layer).len() == 1;
    let fixed_per_unit = |mask: &Mask| {
        mask.mode == MaskMode::Fixed && mask.grad == MaskGrad::Exact && (mask.per == MaskPer::Channel || flat)
    };
    let relu = Disguise { simpler: "a ReLU layer", why: "min(0, z) = −relu(−z)", resample_helps: true };
    let all_neglu = Disguise { resample_helps: false, ..relu };
    match &layer.op {
        // Every unit a NegLU: no mask changes anything.
        Op::MixLU { negfrac, mask } if *negfrac >= 1.0 && mask.grad == MaskGrad::Exact => Some(all_neglu),
        Op::MixLU { negfrac, mask } if *negfrac > 0.0 && fixed_per_unit(mask) => Some(relu),
        Op::Mix { parts, mask } if fixed_per_unit(mask) => {
            let relu_or_neglu = parts.iter().all(|(a, _)| matches!(a, Activation::Relu | Activation::NegLU));
            let any_neglu = parts.iter().any(|(a, f)| matches!(a, Activation::NegLU) && *f > 0.0);
            (relu_or_neglu && any_neglu).then_some(relu)
        }
        Op::Activation(Activation::NegLU) => Some(all_neglu),
        Op::Activation(Activation::SoftNegLU) => {
            Some(Disguise {
                simpler: "a softplus layer", why: "−ln(1 + e^−z) = −softplus(−z)", resample_helps: false
            })
        }
        Op::MinMaxout { minfrac, .. } if *minfrac > 0.0 => Some(Disguise {
            simpler: "a maxout layer",
            why: "min(z₁, …, zₖ) = −max(−z₁, …, −zₖ)",
            resample_helps: false,
        }),
        _ => None,
    }
}

/// The first weight layer reading `index`, when every reader (through flatten, dropout and
/// average pooling, which commute with negating a unit) is a weight layer and the loss reads none.
fn linear_readers<'a>(net: &Net, index: usize, read_by: &impl Fn(Node) -> &'a [usize]) -> Option<usize> {
    let mut first = None;
    let mut carriers = vec![Node::Layer(index)];
    while let Some(node) = carriers.pop() {
        if net.loss.input == node || read_by(node).is_empty() {
            return None;
        }
        for &reader in read_by(node) {
            match &net.layers[reader].op {
                op if op.has_weights() => first = first.or(Some(reader)),
                Op::Flatten | Op::Dropout { .. } | Op::Pool { kind: PoolKind::Avg, .. } => {
                    carriers.push(Node::Layer(reader))
                }
                _ => return None,
            }
        }
    }
    first
}

fn warning(layer: &Layer, producer: &Layer, consumer: &Layer, disguise: Disguise) -> Diagnostic {
    let mut notes = vec![format!(
        "note: {}: negate the incoming weights and bias of each such unit (in `{}`) and its outgoing weights \
         (in `{}`), and the net computes the same logits; a symmetric initialisation, SGD with momentum and weight \
         decay are unchanged by the flip, so training follows the same path (docs/experiments.md)",
        disguise.why, producer.name, consumer.name
    )];
    if disguise.resample_helps {
        notes.push(
            "help: `mask=resample` draws a fresh assignment for every element at every step, as the thesis's \
             reference code does; `grad=relu` gives NegLUs the ReLU derivative as it did"
                .into(),
        );
    } else {
        notes.push(format!(
            "help: its results are those of {}: a run of it checks that equivalence, it cannot find a difference",
            disguise.simpler
        ));
    }
    Code::Equivalent
        .warning()
        .with_message(format!("`{}` is {} in disguise", layer.name, disguise.simpler))
        .with_labels(vec![
            Label::primary((), layer.span.range()).with_message(format!("equivalent to {}", disguise.simpler)),
            Label::secondary((), producer.span.range()).with_message("its units' incoming weights"),
            Label::secondary((), consumer.span.range()).with_message("their outgoing weights"),
        ])
        .with_notes(notes)
}
