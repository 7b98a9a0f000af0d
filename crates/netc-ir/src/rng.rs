//! Counter-based randomness: every random number is a hash of its key (seed, stream, step) and
//! the element's index, so results never depend on execution order or thread count, and any
//! executor (interpreter, JIT, trainer) reproduces the same masks and initial weights.
//!
//! A [`RandomStream`] names what the numbers are for, e.g. the dropout mask of layer `drop1`;
//! the step is the training-step counter for per-step randomness and 0 for one-off draws.

use std::fmt;

/// SplitMix64's finaliser: a bijective mix of 64 bits with good avalanche.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 64-bit name for a stream (FNV-1a), independent of platform and Rust version.
pub fn stream(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// What a family of random numbers is for. Every stream has its own 64-bit id, the hash of its
/// text form (`mask:mixlu1`), so the numbers drawn for one purpose never depend on another's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RandomStream {
    /// The initial values of a parameter, by its name (`init:conv1.weight`).
    Init(String),
    /// The units a layer's mask chooses, fixed or per step (`mask:mixlu1`).
    Mask(String),
    /// The units a resampled mask chooses in each evaluation batch, with `eval=sample`
    /// (`eval_mask:mixlu1`); the step is the batch's evaluation key.
    EvalMask(String),
    /// A dropout layer's mask at each step (`dropout:drop1`).
    Dropout(String),
    /// The `noise` of a layer's user-defined unit at each step (`noise:noisy_relu1`).
    Noise(String),
    /// The order of the training set in each epoch.
    Shuffle,
    /// The subset of the training set evaluated in evaluation mode after each epoch.
    CleanSubset,
    /// The flips and crops of the training examples at each step.
    Augment,
    /// The training examples held out for validation.
    Validation,
}

impl RandomStream {
    /// The stream's 64-bit id.
    pub fn id(&self) -> u64 {
        stream(&self.to_string())
    }

    /// The stream of a text form (`dropout:drop1`), or `None` when it names none.
    pub fn parse(text: &str) -> Option<RandomStream> {
        match text {
            "shuffle" => return Some(RandomStream::Shuffle),
            "clean_subset" => return Some(RandomStream::CleanSubset),
            "augment" => return Some(RandomStream::Augment),
            "validation" => return Some(RandomStream::Validation),
            _ => {}
        }
        let (kind, name) = text.split_once(':')?;
        if name.is_empty() {
            return None;
        }
        let name = name.to_string();
        Some(match kind {
            "init" => RandomStream::Init(name),
            "mask" => RandomStream::Mask(name),
            "eval_mask" => RandomStream::EvalMask(name),
            "dropout" => RandomStream::Dropout(name),
            "noise" => RandomStream::Noise(name),
            _ => return None,
        })
    }
}

impl fmt::Display for RandomStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RandomStream::Init(name) => write!(f, "init:{name}"),
            RandomStream::Mask(name) => write!(f, "mask:{name}"),
            RandomStream::EvalMask(name) => write!(f, "eval_mask:{name}"),
            RandomStream::Dropout(name) => write!(f, "dropout:{name}"),
            RandomStream::Noise(name) => write!(f, "noise:{name}"),
            RandomStream::Shuffle => f.write_str("shuffle"),
            RandomStream::CleanSubset => f.write_str("clean_subset"),
            RandomStream::Augment => f.write_str("augment"),
            RandomStream::Validation => f.write_str("validation"),
        }
    }
}

/// The key of a family of random numbers; `index` picks one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub seed: u64,
    pub stream: u64,
    pub step: u64,
}

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

impl Key {
    pub fn new(seed: u64, stream: &RandomStream, step: u64) -> Key {
        Key { seed, stream: stream.id(), step }
    }

    /// 64 random bits for element `index`.
    pub fn bits(&self, index: u64) -> u64 {
        // Each word passes through the mixer before the next is folded in, so keys that differ
        // in any word give unrelated sequences.
        let mut h = mix64(self.seed.wrapping_add(GAMMA));
        h = mix64(h ^ self.stream.wrapping_add(GAMMA.wrapping_mul(2)));
        h = mix64(h ^ self.step.wrapping_add(GAMMA.wrapping_mul(3)));
        mix64(h ^ index.wrapping_add(GAMMA.wrapping_mul(4)))
    }

    /// Uniform in [0, 1), with 53 random bits.
    pub fn uniform(&self, index: u64) -> f64 {
        (self.bits(index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, bound), by multiply-shift (bias below 2⁻⁶⁴·bound).
    pub fn below(&self, index: u64, bound: u64) -> u64 {
        ((u128::from(self.bits(index)) * u128::from(bound)) >> 64) as u64
    }

    /// Standard normal for element `index` (Box–Muller over elements 2·index and 2·index+1).
    pub fn normal(&self, index: u64) -> f64 {
        // 1 − u lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform(index.wrapping_mul(2));
        let u2 = self.uniform(index.wrapping_mul(2).wrapping_add(1));
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// A uniformly random permutation of `0..n` (Fisher–Yates driven by the key).
    pub fn permutation(&self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64, i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }

    /// Splits `n` elements into parts of exactly `part_counts(fracs, n)` elements, chosen at
    /// random: element `e` belongs to part `result[e]`.
    pub fn assign_parts(&self, fracs: &[f64], n: usize) -> Vec<usize> {
        let counts = part_counts(fracs, n);
        let mut parts = vec![0; n];
        let mut perm = self.permutation(n).into_iter();
        for (part, &count) in counts.iter().enumerate() {
            for e in perm.by_ref().take(count) {
                parts[e] = part;
            }
        }
        parts
    }
}

/// How many of `n` units each part gets, by largest-remainder rounding: the counts sum to `n`
/// and each is `fracs[i]·n` rounded down or up. Fractions are normalised to sum to 1 first.
/// Ties between equal remainders go to the later part, so with two parts the second gets exactly
/// `round(f·n)` (halves rounded up).
pub fn part_counts(fracs: &[f64], n: usize) -> Vec<usize> {
    let total: f64 = fracs.iter().filter(|f| f.is_finite() && **f > 0.0).sum();
    if fracs.is_empty() || total <= 0.0 {
        let mut counts = vec![0; fracs.len()];
        if let Some(last) = counts.last_mut() {
            *last = n;
        }
        return counts;
    }
    let exact: Vec<f64> =
        fracs.iter().map(|&f| if f.is_finite() && f > 0.0 { f / total * n as f64 } else { 0.0 }).collect();
    let mut counts: Vec<usize> = exact.iter().map(|&e| (e.floor() as usize).min(n)).collect();
    let mut assigned: usize = counts.iter().sum();
    // Rounding noise can overshoot by a unit; take it back from the smallest remainders.
    while assigned > n {
        let i = (0..counts.len())
            .filter(|&i| counts[i] > 0)
            .min_by(|&a, &b| (exact[a] - counts[a] as f64).total_cmp(&(exact[b] - counts[b] as f64)))
            .unwrap_or(0);
        counts[i] -= 1;
        assigned -= 1;
    }
    let mut order: Vec<usize> = (0..counts.len()).collect();
    // Stable sort by descending remainder, later parts first among equals.
    order.reverse();
    order.sort_by(|&a, &b| (exact[b] - counts[b] as f64).total_cmp(&(exact[a] - counts[a] as f64)));
    for &i in order.iter().cycle().take(n - assigned) {
        counts[i] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differing_in_one_word_give_different_numbers() {
        let base = Key::new(1, &RandomStream::Mask("mix1".into()), 0);
        let others = [
            Key::new(2, &RandomStream::Mask("mix1".into()), 0),
            Key::new(1, &RandomStream::Mask("mix2".into()), 0),
            Key::new(1, &RandomStream::Mask("mix1".into()), 1),
        ];
        for other in others {
            assert_ne!(base.bits(0), other.bits(0));
        }
        assert_ne!(base.bits(0), base.bits(1));
        assert_eq!(base.bits(7), Key::new(1, &RandomStream::Mask("mix1".into()), 0).bits(7));
    }

    #[test]
    fn uniform_numbers_have_the_right_mean_and_range() {
        let key = Key { seed: 3, stream: stream("test"), step: 0 };
        let xs: Vec<f64> = (0..20_000).map(|i| key.uniform(i)).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn normals_have_zero_mean_and_unit_variance() {
        let key = Key::new(5, &RandomStream::Init("conv1.weight".into()), 0);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|i| key.normal(i)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "variance {var}");
    }

    #[test]
    fn permutations_are_permutations() {
        for n in [0, 1, 2, 7, 100] {
            let mut p = Key { seed: 9, stream: stream("perm"), step: 4 }.permutation(n);
            p.sort_unstable();
            assert_eq!(p, (0..n).collect::<Vec<_>>());
        }
    }

    #[test]
    fn part_counts_sum_to_n_and_round_each_part() {
        assert_eq!(part_counts(&[0.96, 0.04], 500), vec![480, 20]);
        assert_eq!(part_counts(&[0.5, 0.5], 3), vec![1, 2]);
        assert_eq!(part_counts(&[1.0 / 3.0; 3], 10), vec![3, 3, 4]);
        assert_eq!(part_counts(&[0.7, 0.2, 0.1], 7), vec![5, 1, 1]);
        assert_eq!(part_counts(&[1.0, 0.0], 20), vec![20, 0]);
        assert_eq!(part_counts(&[0.0, 1.0], 0), vec![0, 0]);
        for n in 0..50 {
            for f in [0.0, 0.01, 0.04, 0.1, 0.25, 0.5, 0.75, 0.99, 1.0] {
                let counts = part_counts(&[1.0 - f, f], n);
                assert_eq!(counts.iter().sum::<usize>(), n);
                assert_eq!(counts[1], (f * n as f64).round() as usize, "f={f} n={n}");
            }
        }
    }

    #[test]
    fn assigned_parts_have_the_exact_counts() {
        let parts = Key::new(0, &RandomStream::Mask("mixlu1".into()), 0).assign_parts(&[0.9, 0.1], 50);
        assert_eq!(parts.iter().filter(|&&p| p == 1).count(), 5);
        assert_eq!(parts.len(), 50);
    }
}
