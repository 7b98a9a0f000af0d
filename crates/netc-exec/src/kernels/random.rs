//! Per-step random masks, computed exactly as the interpreter does from `netc_ir::rng` keys:
//! each element's number depends only on (seed, stream, step, element).

use crate::par::{Par, ELEMENTS_PER_TASK};
use netc_ir::rng::Key;

/// 1 with probability `keep`, else 0, per element.
pub(crate) fn bernoulli(par: Par, key: Key, keep: f64, out: &mut [f32]) {
    par.chunks_mut(out, ELEMENTS_PER_TASK, |t, out, _| {
        let first = (t * ELEMENTS_PER_TASK) as u64;
        for (e, v) in (first..).zip(out.iter_mut()) {
            *v = if key.uniform(e) < keep { 1.0 } else { 0.0 };
        }
    })
}

/// A standard normal number per element.
pub(crate) fn normal(par: Par, key: Key, out: &mut [f32]) {
    par.chunks_mut(out, ELEMENTS_PER_TASK, |t, out, _| {
        let first = (t * ELEMENTS_PER_TASK) as u64;
        for (e, v) in (first..).zip(out.iter_mut()) {
            *v = key.normal(e) as f32;
        }
    })
}

/// Part indices with exactly `counts[p]` elements in part `p`: `Key::assign_parts` without
/// allocating. `perm` and `swaps` hold one index per element.
pub(crate) fn parts(par: Par, key: Key, counts: &[usize], perm: &mut [usize], swaps: &mut [usize], out: &mut [f32]) {
    let n = out.len();
    // The Fisher–Yates swap partners depend only on the position, so draw them in parallel.
    par.chunks_mut(swaps, ELEMENTS_PER_TASK, |t, swaps, _| {
        let first = t * ELEMENTS_PER_TASK;
        for (i, s) in (first..).zip(swaps.iter_mut()) {
            *s = key.below(i as u64, i as u64 + 1) as usize;
        }
    });
    for (i, p) in perm.iter_mut().enumerate() {
        *p = i;
    }
    for i in (1..n).rev() {
        perm.swap(i, swaps[i]);
    }
    let mut order = perm.iter();
    for (part, &count) in counts.iter().enumerate() {
        for &e in order.by_ref().take(count) {
            out[e] = part as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_match_the_reference_assignment() {
        let key = Key::new(3, &netc_ir::RandomStream::Mask("mix1".into()), 17);
        for n in [0, 1, 2, 9, 1000] {
            let fracs = [0.7, 0.2, 0.1];
            let want = key.assign_parts(&fracs, n);
            let counts = netc_ir::rng::part_counts(&fracs, n);
            let (mut perm, mut swaps, mut out) = (vec![0; n], vec![0; n], vec![-1.0; n]);
            parts(Par::new(1), key, &counts, &mut perm, &mut swaps, &mut out);
            let got: Vec<usize> = out.iter().map(|&p| p as usize).collect();
            assert_eq!(got, want);
        }
    }
}
