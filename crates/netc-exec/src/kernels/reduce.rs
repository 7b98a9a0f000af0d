//! Reductions. Every output element is summed in one fixed order (row-major over the reduced
//! indices, with fixed-width lanes inside contiguous runs), whatever the thread count.

use crate::par::{wide, Par, ELEMENTS_PER_TASK};

/// A sum over some axes, with adjacent axes of the same kind merged: the input is
/// `groups[0] × groups[1] × ...` and alternate groups are reduced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Sum {
    /// (extent, reduced) from the outermost group in.
    groups: Vec<(usize, bool)>,
}

impl Sum {
    pub fn new(in_dims: &[usize], axes: &[usize]) -> Sum {
        let mut groups: Vec<(usize, bool)> = Vec::new();
        for (a, &d) in in_dims.iter().enumerate() {
            let reduced = axes.contains(&a);
            if d == 1 {
                continue;
            }
            match groups.last_mut() {
                Some((extent, r)) if *r == reduced => *extent *= d,
                _ => groups.push((d, reduced)),
            }
        }
        Sum { groups }
    }

    pub fn run(&self, par: Par, x: &[f32], out: &mut [f32]) {
        if x.is_empty() {
            out.fill(0.0);
            return;
        }
        match self.groups.last() {
            None => {
                // Nothing is reduced but unit axes: a copy.
                out.copy_from_slice(x);
            }
            Some(&(inner, false)) => self.rows_into_columns(par, inner, x, out),
            Some(&(run, true)) => self.runs_into_elements(par, run, x, out),
        }
    }

    /// The innermost group is kept: input rows of `inner` elements add into output rows. Tasks
    /// own column ranges, so each element is summed by one task over rows in order.
    fn rows_into_columns(&self, par: Par, inner: usize, x: &[f32], out: &mut [f32]) {
        out.fill(0.0);
        let rows = x.len() / inner;
        let outer = &self.groups[..self.groups.len() - 1];
        let columns = ELEMENTS_PER_TASK.min(inner).max(1);
        // Parallel over column ranges of each output row.
        let out_rows = out.len() / inner;
        for out_row in 0..out_rows {
            let dst = &mut out[out_row * inner..(out_row + 1) * inner];
            par.chunks_mut(dst, columns, |c, dst, _| {
                let first = c * columns;
                for r in 0..rows {
                    if output_index(outer, r) != out_row {
                        continue;
                    }
                    let src = &x[r * inner + first..][..dst.len()];
                    dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
                }
            });
        }
    }

    /// The innermost group is reduced: each output element sums contiguous runs.
    fn runs_into_elements(&self, par: Par, run: usize, x: &[f32], out: &mut [f32]) {
        let outer = &self.groups[..self.groups.len() - 1];
        // `[reduced?, kept, reduced]` (a bias gradient): tasks own channels and add their runs
        // in the same order as the general loop below.
        if let [.., (channels, false)] = outer {
            let (channels, blocks) = (*channels, outer.len());
            if blocks <= 2 && out.len() == channels {
                let repeats = if blocks == 2 { outer[0].0 } else { 1 };
                let per = (ELEMENTS_PER_TASK / (run * repeats).max(1)).max(1);
                par.chunks_mut(out, per, |t, out, _| {
                    wide!(par.isa(), fn(x: &[f32] = x, out: &mut [f32] = out, first: usize = t * per, channels: usize = channels, run: usize = run, repeats: usize = repeats) {
                        for (i, o) in out.iter_mut().enumerate() {
                            let c = first + i;
                            *o = 0.0;
                            for n in 0..repeats {
                                *o += lane_sum(&x[(n * channels + c) * run..][..run]);
                            }
                        }
                    });
                });
                return;
            }
        }
        out.fill(0.0);
        for (r, src) in x.chunks(run).enumerate() {
            out[output_index(outer, r)] += lane_sum(src);
        }
    }
}

/// The output index of input row `r` of a grouped shape `groups` (kept groups only count).
fn output_index(groups: &[(usize, bool)], r: usize) -> usize {
    let mut rest = r;
    let mut index = 0;
    let mut scale = 1;
    for &(extent, reduced) in groups.iter().rev() {
        if !reduced {
            index += (rest % extent) * scale;
            scale *= extent;
        }
        rest /= extent;
    }
    index
}

/// A sum with eight independent lanes (vectorisable), combined in a fixed order.
#[inline(always)]
pub(crate) fn lane_sum(xs: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    let mut total = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    for &v in chunks.remainder() {
        total += v;
    }
    total
}

/// `(outer, extent, inner)` around the reduced axis of `ReduceMax`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Max {
    pub outer: usize,
    pub extent: usize,
    pub inner: usize,
}

/// Whether `v` beats the current best: larger, or NaN (so NaN propagates); the first largest
/// wins ties, as in the interpreter.
#[inline(always)]
pub(crate) fn beats(v: f32, best: f32) -> bool {
    v > best || (v.is_nan() && !best.is_nan())
}

impl Max {
    pub fn new(in_dims: &[usize], axis: usize) -> Max {
        Max {
            outer: in_dims[..axis].iter().product(),
            extent: in_dims[axis],
            inner: in_dims[axis + 1..].iter().product(),
        }
    }

    /// The index along the axis of the first largest element of row (o, i).
    fn argmax(&self, x: &[f32], o: usize, i: usize) -> usize {
        let at = |k: usize| x[(o * self.extent + k) * self.inner + i];
        let mut best = 0;
        for k in 1..self.extent {
            if beats(at(k), at(best)) {
                best = k;
            }
        }
        best
    }

    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        for o in 0..self.outer {
            for i in 0..self.inner {
                let k = self.argmax(x, o, i);
                out[o * self.inner + i] = x[(o * self.extent + k) * self.inner + i];
            }
        }
    }

    /// Routes `g` to the first largest element of each row.
    pub fn backward(&self, x: &[f32], g: &[f32], dx: &mut [f32]) {
        dx.fill(0.0);
        for o in 0..self.outer {
            for i in 0..self.inner {
                let k = self.argmax(x, o, i);
                dx[(o * self.extent + k) * self.inner + i] = g[o * self.inner + i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(dims: &[usize], axes: &[usize], x: &[f32]) -> Vec<f32> {
        let kept: Vec<usize> = (0..dims.len()).filter(|a| !axes.contains(a)).collect();
        let out_len: usize = kept.iter().map(|&a| dims[a]).product();
        let mut out = vec![0.0; out_len];
        for (flat, &v) in x.iter().enumerate() {
            let mut rest = flat;
            let mut idx = vec![0; dims.len()];
            for a in (0..dims.len()).rev() {
                idx[a] = rest % dims[a];
                rest /= dims[a];
            }
            let mut dst = 0;
            for &a in &kept {
                dst = dst * dims[a] + idx[a];
            }
            out[dst] += v;
        }
        out
    }

    #[test]
    fn sums_over_any_axes_match_the_definition() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[3, 4, 5], &[0, 2]),
            (&[3, 4, 5], &[0]),
            (&[3, 4, 5], &[2]),
            (&[3, 4, 5], &[1]),
            (&[3, 4, 5], &[0, 1, 2]),
            (&[2, 1, 3, 1], &[0, 3]),
            (&[2, 3, 4, 5], &[1, 3]),
        ];
        for &(dims, axes) in cases {
            let x: Vec<f32> = (0..dims.iter().product::<usize>()).map(|i| (i % 7) as f32 - 3.0).collect();
            let want = naive(dims, axes, &x);
            let mut out = vec![f32::NAN; want.len()];
            Sum::new(dims, axes).run(Par::new(1), &x, &mut out);
            assert_eq!(out, want, "{dims:?} {axes:?}");
        }
    }

    #[test]
    fn max_routes_the_gradient_to_the_first_largest() {
        let m = Max::new(&[2, 3], 1);
        let x = [1.0, 5.0, 5.0, 2.0, f32::NAN, 0.0];
        let mut y = [0.0; 2];
        m.forward(&x, &mut y);
        assert_eq!(y[0], 5.0);
        assert!(y[1].is_nan());
        let mut dx = [9.0; 6];
        m.backward(&x, &[1.0, 2.0], &mut dx);
        assert_eq!(dx, [0.0, 1.0, 0.0, 0.0, 2.0, 0.0]);
    }
}
