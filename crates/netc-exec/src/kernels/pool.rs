//! Pooling and its gradients, parallel over `(example, channel)` planes. Windows visit their
//! elements row by row, as the interpreter does, so maxima and sums agree with it.

use super::reduce::beats;
use crate::par::{Par, ELEMENTS_PER_TASK};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pool {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub ho: usize,
    pub wo: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    /// Padding above and to the left; below and to the right it only sets `ho` and `wo`.
    pub pad_top: usize,
    pub pad_left: usize,
}

impl Pool {
    /// The window rows (or columns) of output index `i`, clipped to the input: `lo..hi` of
    /// `0..len`, with `pad` rows (or columns) of padding before the input.
    #[inline(always)]
    fn span(&self, i: usize, k: usize, len: usize, pad: usize) -> (usize, usize) {
        let start = i * self.stride;
        let lo = start.saturating_sub(pad).min(len);
        let hi = (start + k).saturating_sub(pad).min(len);
        (lo, hi)
    }

    fn planes_per_task(&self) -> usize {
        (ELEMENTS_PER_TASK / (self.h * self.w).max(1)).max(1)
    }

    /// 2×2 windows with stride 2 inside the input: the common case, without clipping (padding
    /// below or to the right may add a window that reaches past the input).
    fn is_2x2(&self) -> bool {
        let inside = 2 * self.ho <= self.h && 2 * self.wo <= self.w;
        self.kh == 2 && self.kw == 2 && self.stride == 2 && self.pad_top == 0 && self.pad_left == 0 && inside
    }

    /// Calls `f(plane_x, plane_y_index, window_rows, window_cols)` for every window of the
    /// planes of one task.
    fn windows(&self, mut f: impl FnMut(usize, (usize, usize), (usize, usize))) {
        for i in 0..self.ho {
            let rows = self.span(i, self.kh, self.h, self.pad_top);
            for j in 0..self.wo {
                f(i * self.wo + j, rows, self.span(j, self.kw, self.w, self.pad_left));
            }
        }
    }

    pub fn max(&self, par: Par, x: &[f32], y: &mut [f32]) {
        let (hw, out) = (self.h * self.w, self.ho * self.wo);
        let per = self.planes_per_task();
        par.chunks_mut(y, per * out, |t, y, _| {
            for (p, y) in y.chunks_mut(out).enumerate() {
                let x = &x[(t * per + p) * hw..][..hw];
                if self.is_2x2() {
                    self.max_2x2(x, y);
                    continue;
                }
                self.windows(|o, (r0, r1), (c0, c1)| {
                    let mut best = x[r0 * self.w + c0];
                    for r in r0..r1 {
                        for &c in &x[r * self.w + c0..r * self.w + c1] {
                            if beats(c, best) {
                                best = c;
                            }
                        }
                    }
                    y[o] = best;
                });
            }
        });
    }

    /// One plane of 2×2, stride-2 max pooling: the larger of each vertical pair, then of each
    /// horizontal pair of those. The value does not depend on the order (NaN wins either way).
    fn max_2x2(&self, x: &[f32], y: &mut [f32]) {
        let (w, wo) = (self.w, self.wo);
        for (i, y) in y.chunks_exact_mut(wo).enumerate() {
            let top = &x[2 * i * w..][..2 * wo];
            let bottom = &x[(2 * i + 1) * w..][..2 * wo];
            for ((y, t), b) in y.iter_mut().zip(top.chunks_exact(2)).zip(bottom.chunks_exact(2)) {
                *y = nan_max(nan_max(t[0], b[0]), nan_max(t[1], b[1]));
            }
        }
    }

    /// One plane of the 2×2, stride-2 max pooling gradient: windows do not overlap, so each
    /// input gets its window's gradient if it is the window's first largest, else 0. The
    /// first largest (in the interpreter's order: top-left, top-right, bottom-left,
    /// bottom-right) is the first element equal to the maximum, or the first NaN. Planes
    /// without NaN (checked first) take a loop of comparisons and selects that vectorises.
    fn max_backward_2x2(&self, x: &[f32], dy: &[f32], dx: &mut [f32]) {
        let (w, wo) = (self.w, self.wo);
        // Inputs outside every window (a last odd row or column) get no gradient.
        dx[2 * self.ho * w..].fill(0.0);
        if w > 2 * wo {
            for row in dx[..2 * self.ho * w].chunks_exact_mut(w) {
                row[2 * wo..].fill(0.0);
            }
        }
        let finite = !x.iter().fold(false, |nan, v| nan | v.is_nan());
        for i in 0..self.ho {
            let top = &x[2 * i * w..][..2 * wo];
            let bottom = &x[(2 * i + 1) * w..][..2 * wo];
            let g = &dy[i * wo..][..wo];
            let (rows, _) = dx[2 * i * w..].split_at_mut(2 * w);
            let (dtop, dbottom) = rows.split_at_mut(w);
            let (dtop, dbottom) = (&mut dtop[..2 * wo], &mut dbottom[..2 * wo]);
            if finite {
                for j in 0..wo {
                    let (a, b, c, d) = (top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]);
                    // The first largest of each row's pair, then of the two rows (the top row
                    // wins ties): flag arithmetic, which compiles without branches.
                    let right_top = usize::from(b > a);
                    let right_bottom = usize::from(d > c);
                    let bottom_wins = usize::from(c.max(d) > a.max(b));
                    let at = 2 * bottom_wins + right_top * (1 - bottom_wins) + right_bottom * bottom_wins;
                    // The gradient where `at` points, +0 elsewhere, by masking its bits with a
                    // table row (LLVM turns comparisons with `at` back into branches).
                    let g = g[j].to_bits();
                    let mask = ONE_HOT[at & 3];
                    dtop[2 * j] = f32::from_bits(g & mask[0]);
                    dtop[2 * j + 1] = f32::from_bits(g & mask[1]);
                    dbottom[2 * j] = f32::from_bits(g & mask[2]);
                    dbottom[2 * j + 1] = f32::from_bits(g & mask[3]);
                }
                continue;
            }
            for j in 0..wo {
                let window = [top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]];
                let mut at = 0;
                for k in 1..4 {
                    if beats(window[k], window[at]) {
                        at = k;
                    }
                }
                let mut grads = [0.0; 4];
                grads[at] = g[j];
                dtop[2 * j..2 * j + 2].copy_from_slice(&grads[..2]);
                dbottom[2 * j..2 * j + 2].copy_from_slice(&grads[2..]);
            }
        }
    }

    /// Average pooling counts padding as zeros: the sum is divided by the full window.
    pub fn avg(&self, par: Par, x: &[f32], y: &mut [f32]) {
        let (hw, out) = (self.h * self.w, self.ho * self.wo);
        let scale = (1.0 / (self.kh * self.kw) as f64) as f32;
        let per = self.planes_per_task();
        par.chunks_mut(y, per * out, |t, y, _| {
            for (p, y) in y.chunks_mut(out).enumerate() {
                let x = &x[(t * per + p) * hw..][..hw];
                self.windows(|o, (r0, r1), (c0, c1)| {
                    let mut sum = 0.0f32;
                    for r in r0..r1 {
                        for &v in &x[r * self.w + c0..r * self.w + c1] {
                            sum += v;
                        }
                    }
                    y[o] = sum * scale;
                });
            }
        });
    }

    /// Each window's gradient goes to its first largest input.
    pub fn max_backward(&self, par: Par, x: &[f32], dy: &[f32], dx: &mut [f32]) {
        let (hw, out) = (self.h * self.w, self.ho * self.wo);
        let per = self.planes_per_task();
        par.chunks_mut(dx, per * hw, |t, dx, _| {
            for (p, dx) in dx.chunks_mut(hw).enumerate() {
                let plane = t * per + p;
                let x = &x[plane * hw..][..hw];
                let dy = &dy[plane * out..][..out];
                if self.is_2x2() {
                    self.max_backward_2x2(x, dy, dx);
                    continue;
                }
                dx.fill(0.0);
                self.windows(|o, (r0, r1), (c0, c1)| {
                    let mut at = r0 * self.w + c0;
                    for r in r0..r1 {
                        for k in r * self.w + c0..r * self.w + c1 {
                            if beats(x[k], x[at]) {
                                at = k;
                            }
                        }
                    }
                    dx[at] += dy[o];
                });
            }
        });
    }

    /// Each window's gradient, divided by the window size, goes to every input in it.
    pub fn avg_backward(&self, par: Par, dy: &[f32], dx: &mut [f32]) {
        let (hw, out) = (self.h * self.w, self.ho * self.wo);
        let scale = (1.0 / (self.kh * self.kw) as f64) as f32;
        let per = self.planes_per_task();
        par.chunks_mut(dx, per * hw, |t, dx, _| {
            dx.fill(0.0);
            for (p, dx) in dx.chunks_mut(hw).enumerate() {
                let dy = &dy[(t * per + p) * out..][..out];
                self.windows(|o, (r0, r1), (c0, c1)| {
                    let g = dy[o] * scale;
                    for r in r0..r1 {
                        for v in &mut dx[r * self.w + c0..r * self.w + c1] {
                            *v += g;
                        }
                    }
                });
            }
        });
    }
}

/// Row `k` keeps the bits of element `k` only.
const ONE_HOT: [[u32; 4]; 4] = [[!0, 0, 0, 0], [0, !0, 0, 0], [0, 0, !0, 0], [0, 0, 0, !0]];

/// The larger of two values, or NaN if either is NaN.
#[inline(always)]
fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_2x2_fast_path_agrees_with_the_general_windows() {
        let general = Pool { planes: 2, h: 5, w: 4, ho: 2, wo: 2, kh: 2, kw: 2, stride: 2, pad_top: 0, pad_left: 0 };
        let x: Vec<f32> = (0..40).map(|i| ((i * 7) % 11) as f32).collect();
        let mut fast = vec![0.0; 8];
        general.max(Par::new(1), &x, &mut fast);
        // The same windows through the clipped path (a 2×2 window with stride 2 and pad 0 seen
        // as a window of a taller input).
        let mut want = vec![0.0; 8];
        for p in 0..2 {
            for i in 0..2 {
                for j in 0..2 {
                    let at = |r: usize, c: usize| x[p * 20 + r * 4 + c];
                    let vals = [at(2 * i, 2 * j), at(2 * i, 2 * j + 1), at(2 * i + 1, 2 * j), at(2 * i + 1, 2 * j + 1)];
                    want[p * 4 + i * 2 + j] = vals.iter().copied().fold(f32::MIN, f32::max);
                }
            }
        }
        assert_eq!(fast, want);
    }

    #[test]
    fn the_2x2_gradient_goes_to_the_first_largest_like_the_general_path() {
        let fast = Pool { planes: 2, h: 5, w: 5, ho: 2, wo: 2, kh: 2, kw: 2, stride: 2, pad_top: 0, pad_left: 0 };
        // Ties everywhere: the first of equal elements must win; one plane has NaNs.
        let mut x: Vec<f32> = (0..50).map(|i| ((i * 3) % 4) as f32).collect();
        x[31] = f32::NAN;
        x[37] = f32::NAN;
        let dy: Vec<f32> = (1..=8).map(|i| i as f32).collect();
        let mut got = vec![f32::NAN; 50];
        fast.max_backward(Par::new(1), &x, &dy, &mut got);
        let mut want = vec![0.0; 50];
        for p in 0..2 {
            for i in 0..2 {
                for j in 0..2 {
                    let cells = [(2 * i, 2 * j), (2 * i, 2 * j + 1), (2 * i + 1, 2 * j), (2 * i + 1, 2 * j + 1)];
                    let idx = |(r, c): (usize, usize)| p * 25 + r * 5 + c;
                    let first =
                        cells.iter().copied().reduce(|a, b| if beats(x[idx(b)], x[idx(a)]) { b } else { a }).unwrap();
                    want[idx(first)] = dy[p * 4 + i * 2 + j];
                }
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn padded_average_pooling_divides_by_the_full_window() {
        let pool = Pool { planes: 1, h: 2, w: 2, ho: 3, wo: 3, kh: 2, kw: 2, stride: 1, pad_top: 1, pad_left: 1 };
        let mut y = vec![0.0; 9];
        pool.avg(Par::new(1), &[4.0, 8.0, 12.0, 16.0], &mut y);
        assert_eq!(y, [1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0]);
        let mut dx = vec![0.0; 4];
        pool.avg_backward(Par::new(1), &[4.0; 9], &mut dx);
        assert_eq!(dx, [4.0, 4.0, 4.0, 4.0]);
    }
}
