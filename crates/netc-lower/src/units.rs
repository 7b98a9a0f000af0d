//! The fixed, seeded choice of which units of a layer play which part: the NegLUs of a
//! `mixlu`, the activations of a `mix`, the min units of a `minmaxout`, the inhibitory units
//! of a `dale` population. Lowering builds its masks and sign constraints from these choices,
//! and `netc summary` prints them, so what is shown is what runs.

use netc_check::{Activation, MaskMode, MaskPer, Net, Op};
use netc_ir::rng::Key;
use netc_ir::RandomStream;

/// Which part each unit of one layer plays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitChoice {
    /// The layer's name.
    pub layer: String,
    /// The parts in declaration order; the first is the layer's default role (`relu`, `max`,
    /// `excitatory`, or a `mix`'s first activation).
    pub parts: Vec<String>,
    /// The shape of the units: `[C]` for one choice per channel (or per element of a flat
    /// tensor), the example's shape for one per position.
    pub shape: Vec<usize>,
    /// Each unit's part, an index into `parts`, row-major over `shape`.
    pub part_of: Vec<usize>,
}

impl UnitChoice {
    /// The units (row-major indices) that play `part`, in increasing order.
    pub fn units_of(&self, part: usize) -> Vec<usize> {
        (0..self.part_of.len()).filter(|&u| self.part_of[u] == part).collect()
    }
}

/// The fixed choice of the layer at `index`, or `None` for layers without one (resampled masks
/// and layers that do not mix units).
///
/// Each part gets exactly its largest-remainder share of the units
/// ([`rng::part_counts`](netc_ir::rng::part_counts)): `round(negfrac·units)` NegLUs,
/// `round(minfrac·units)` min units, `round(inhibitory·units)` inhibitory units. The units of
/// each part are a random subset drawn from `(seed, "mask:LAYER")`.
pub fn fixed_units(net: &Net, index: usize, seed: u64) -> Option<UnitChoice> {
    let layer = net.layers.get(index)?;
    let in_shape = net.in_shape(layer);
    let channels = || in_shape.first().map(|&c| vec![c]).unwrap_or_default();
    let key = Key::new(seed, &RandomStream::Mask(layer.name.clone()), 0);
    let (parts, shape, part_of) = match &layer.op {
        Op::MixLU { mask, .. } | Op::Mix { mask, .. } if mask.mode == MaskMode::Fixed => {
            let declared = mixed_parts(&layer.op);
            let shape = if mask.per == MaskPer::Position { in_shape.clone() } else { channels() };
            let part_of = draw_mixed(&key, &declared, shape.iter().product());
            (declared.iter().map(|(a, _)| a.to_string()).collect(), shape, part_of)
        }
        Op::MinMaxout { units, minfrac, .. } => {
            (vec!["max".into(), "min".into()], vec![*units], key.assign_parts(&[1.0 - minfrac, *minfrac], *units))
        }
        Op::Dale { inhibitory } => {
            let shape = channels();
            let part_of = key.assign_parts(&[1.0 - inhibitory, *inhibitory], shape.iter().product());
            (vec!["excitatory".into(), "inhibitory".into()], shape, part_of)
        }
        _ => return None,
    };
    Some(UnitChoice { layer: layer.name.clone(), parts, shape, part_of })
}

/// The fixed choices of every layer of `net` that has one, in layer order.
pub fn all_fixed_units(net: &Net, seed: u64) -> Vec<UnitChoice> {
    (0..net.layers.len()).filter_map(|i| fixed_units(net, i, seed)).collect()
}

/// The activations of a mixed layer with their fractions, as declared (zero fractions included):
/// `relu` then `neglu` for `mixlu`.
pub(crate) fn mixed_parts(op: &Op) -> Vec<(Activation, f64)> {
    match op {
        Op::MixLU { negfrac, .. } => vec![(Activation::Relu, 1.0 - negfrac), (Activation::NegLU, *negfrac)],
        Op::Mix { parts, .. } => parts.clone(),
        _ => Vec::new(),
    }
}

/// Draws the parts of `units` units among the parts with a positive fraction, and names them by
/// their declared index.
fn draw_mixed(key: &Key, declared: &[(Activation, f64)], units: usize) -> Vec<usize> {
    let present: Vec<usize> = (0..declared.len()).filter(|&p| declared[p].1 > 0.0).collect();
    match present[..] {
        [] => vec![0; units],
        [only] => vec![only; units],
        _ => {
            let fracs: Vec<f64> = present.iter().map(|&p| declared[p].1).collect();
            key.assign_parts(&fracs, units).into_iter().map(|q| present[q]).collect()
        }
    }
}
