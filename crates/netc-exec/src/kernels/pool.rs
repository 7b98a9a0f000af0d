//! Pooling and its gradients, parallel over `(example, channel)` planes. Windows visit their
//! elements row by row, as the interpreter does, so maxima and sums agree with it.

use super::reduce::beats;
use crate::par::{wide, Par, ELEMENTS_PER_TASK};
use std::hint::select_unpredictable;

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
    #[inline(always)]
    fn windows(&self, mut f: impl FnMut(usize, (usize, usize), (usize, usize))) {
        for i in 0..self.ho {
            let rows = self.span(i, self.kh, self.h, self.pad_top);
            for j in 0..self.wo {
                f(i * self.wo + j, rows, self.span(j, self.kw, self.w, self.pad_left));
            }
        }
    }

    /// Max pooling. With `argmax` (one slot per output, in training), each output's window
    /// position is recorded for [`Pool::max_backward`], which then need not search again.
    pub fn max(&self, par: Par, x: &[f32], y: &mut [f32], argmax: Option<&mut [u32]>) {
        let (hw, out) = (self.h * self.w, self.ho * self.wo);
        let per = self.planes_per_task();
        let Some(argmax) = argmax else {
            par.chunks_mut(y, per * out, |t, y, _| {
                let x = &x[t * per * hw..];
                wide!(par.isa(), fn(pool: &Pool = self, x: &[f32] = x, y: &mut [f32] = y) { pool.max_planes(x, y, None) });
            });
            return;
        };
        par.chunks_mut2(y, per * out, argmax, per * out, |t, y, at, _| {
            let x = &x[t * per * hw..];
            wide!(par.isa(), fn(pool: &Pool = self, x: &[f32] = x, y: &mut [f32] = y, at: &mut [u32] = at) {
                pool.max_planes(x, y, Some(at))
            });
        });
    }

    /// The maxima of consecutive planes from the start of `x`, and with `at` their positions.
    #[inline(always)]
    fn max_planes(&self, x: &[f32], y: &mut [f32], mut at: Option<&mut [u32]>) {
        let (hw, out) = (self.h * self.w, self.ho * self.wo);
        for (p, y) in y.chunks_mut(out).enumerate() {
            let x = &x[p * hw..][..hw];
            let at = at.as_deref_mut().map(|at| &mut at[p * out..][..out]);
            match (self.is_2x2(), at) {
                (true, Some(at)) => self.max_2x2_recorded(x, y, at),
                (true, None) => self.max_2x2(x, y),
                (false, at) if is_finite(x) => self.max_plane_rows(x, y, at),
                (false, mut at) => self.windows(|o, rows, cols| {
                    let k = self.first_largest(x, rows, cols);
                    y[o] = x[k];
                    if let Some(at) = at.as_deref_mut() {
                        // A plane index fits: planes are far smaller than 2³² elements.
                        at[o] = k as u32;
                    }
                }),
            }
        }
    }

    /// The windows of one plane without NaN, any geometry: per output row, the windows that
    /// lie whole inside the row are updated one window element at a time (in the interpreter's
    /// row-by-row order, strict comparisons, so the first largest wins) along the whole output
    /// row; the clipped windows at its ends take [`Pool::first_largest`]. With `at`, records
    /// each maximum's plane index.
    #[inline(always)]
    fn max_plane_rows(&self, x: &[f32], y: &mut [f32], mut at: Option<&mut [u32]>) {
        let (w, s, wo) = (self.w, self.stride, self.wo);
        // Output columns j whose window, from column j·s − pad, lies inside the row.
        let j_lo = self.pad_left.div_ceil(s).min(wo);
        let j_hi = (w + self.pad_left).checked_sub(self.kw).map_or(0, |last| (last / s + 1).min(wo)).max(j_lo);
        for i in 0..self.ho {
            let (r0, r1) = self.span(i, self.kh, self.h, self.pad_top);
            let y = &mut y[i * wo..][..wo];
            let mut at = at.as_deref_mut().map(|at| &mut at[i * wo..][..wo]);
            let whole = if r0 < r1 { j_lo..j_hi } else { 0..0 };
            for j in (0..wo).filter(|j| !whole.contains(j)) {
                let k = self.first_largest(x, (r0, r1), self.span(j, self.kw, w, self.pad_left));
                y[j] = x[k];
                if let Some(at) = at.as_deref_mut() {
                    at[j] = k as u32;
                }
            }
            if whole.is_empty() {
                continue;
            }
            let first = whole.start * s - self.pad_left;
            let (y, count) = (&mut y[whole.clone()], whole.len());
            // Window element (r, b) of the whole windows: `x[start + j·s]` for j < count.
            let inputs = |r: usize, b: usize| {
                let start = r * w + first + b;
                (start, &x[start..start + (count - 1) * s + 1])
            };
            let (start, row) = inputs(r0, 0);
            for (j, y) in y.iter_mut().enumerate() {
                *y = row[j * s];
            }
            let rest = (r0..r1).flat_map(|r| (0..self.kw).map(move |b| (r, b))).skip(1);
            match at {
                Some(at) => {
                    let at = &mut at[whole];
                    for (j, at) in at.iter_mut().enumerate() {
                        *at = (start + j * s) as u32;
                    }
                    for (r, b) in rest {
                        let (start, row) = inputs(r, b);
                        for j in 0..count {
                            // Selects, not branches: on real data they go either way.
                            let v = row[j * s];
                            let better = v > y[j];
                            y[j] = select_unpredictable(better, v, y[j]);
                            at[j] = select_unpredictable(better, (start + j * s) as u32, at[j]);
                        }
                    }
                }
                None => {
                    for (r, b) in rest {
                        let (_, row) = inputs(r, b);
                        for j in 0..count {
                            let v = row[j * s];
                            y[j] = select_unpredictable(v > y[j], v, y[j]);
                        }
                    }
                }
            }
        }
    }

    /// The plane index of the first largest element (or first NaN) of a window, in the
    /// interpreter's row-by-row order.
    #[inline(always)]
    fn first_largest(&self, x: &[f32], (r0, r1): (usize, usize), (c0, c1): (usize, usize)) -> usize {
        let mut at = r0 * self.w + c0;
        for r in r0..r1 {
            for k in r * self.w + c0..r * self.w + c1 {
                if beats(x[k], x[at]) {
                    at = k;
                }
            }
        }
        at
    }

    /// One plane of 2×2, stride-2 max pooling that also records, per window, which of its four
    /// elements (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) is the first largest.
    /// Planes without NaN (checked first) take comparisons and selects that vectorise.
    #[inline(always)]
    fn max_2x2_recorded(&self, x: &[f32], y: &mut [f32], at: &mut [u32]) {
        let (w, wo) = (self.w, self.wo);
        let finite = !x.iter().fold(false, |nan, v| nan | v.is_nan());
        for (i, (y, at)) in y.chunks_exact_mut(wo).zip(at.chunks_exact_mut(wo)).enumerate() {
            let top = &x[2 * i * w..][..2 * wo];
            let bottom = &x[(2 * i + 1) * w..][..2 * wo];
            let windows = y.iter_mut().zip(at.iter_mut()).zip(top.chunks_exact(2)).zip(bottom.chunks_exact(2));
            if finite {
                for (((y, at), t), b) in windows {
                    // The first largest of each row's pair, then of the two rows (the top
                    // row wins ties), as `first_of_four` picks it.
                    let (right_top, right_bottom) = (t[1] > t[0], b[1] > b[0]);
                    let top = if right_top { t[1] } else { t[0] };
                    let bottom = if right_bottom { b[1] } else { b[0] };
                    let bottom_wins = bottom > top;
                    *y = if bottom_wins { bottom } else { top };
                    *at = if bottom_wins { 2 + u32::from(right_bottom) } else { u32::from(right_top) };
                }
            } else {
                for (((y, at), t), b) in windows {
                    let window = [t[0], t[1], b[0], b[1]];
                    let k = first_beating(window);
                    *y = window[k];
                    *at = k as u32;
                }
            }
        }
    }

    /// One plane of 2×2, stride-2 max pooling: the larger of each vertical pair, then of each
    /// horizontal pair of those. The value does not depend on the order (NaN wins either way).
    #[inline(always)]
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
    /// bottom-right) is the first element equal to the maximum, or the first NaN; it is read
    /// from `recorded` (by the forward pass) or found again.
    #[inline(always)]
    fn max_backward_2x2(&self, x: &[f32], dy: &[f32], dx: &mut [f32], recorded: Option<&[u32]>) {
        let (w, wo) = (self.w, self.wo);
        // Inputs outside every window (a last odd row or column) get no gradient.
        dx[2 * self.ho * w..].fill(0.0);
        if w > 2 * wo {
            for row in dx[..2 * self.ho * w].chunks_exact_mut(w) {
                row[2 * wo..].fill(0.0);
            }
        }
        let finite = recorded.is_some() || !x.iter().fold(false, |nan, v| nan | v.is_nan());
        for i in 0..self.ho {
            let top = &x[2 * i * w..][..2 * wo];
            let bottom = &x[(2 * i + 1) * w..][..2 * wo];
            let g = &dy[i * wo..][..wo];
            let (rows, _) = dx[2 * i * w..].split_at_mut(2 * w);
            let (dtop, dbottom) = rows.split_at_mut(w);
            let (dtop, dbottom) = (&mut dtop[..2 * wo], &mut dbottom[..2 * wo]);
            let window = |j: usize| [top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]];
            // The gradient where `at` points, +0 elsewhere, by masking its bits with a table
            // row (LLVM turns comparisons with `at` back into branches).
            let mut put = |j: usize, at: usize| {
                let (g, mask) = (g[j].to_bits(), ONE_HOT[at & 3]);
                dtop[2 * j] = f32::from_bits(g & mask[0]);
                dtop[2 * j + 1] = f32::from_bits(g & mask[1]);
                dbottom[2 * j] = f32::from_bits(g & mask[2]);
                dbottom[2 * j + 1] = f32::from_bits(g & mask[3]);
            };
            match recorded {
                Some(at) => at[i * wo..][..wo].iter().enumerate().for_each(|(j, &at)| put(j, at as usize)),
                None if finite => (0..wo).for_each(|j| put(j, first_of_four(window(j)))),
                None => (0..wo).for_each(|j| put(j, first_beating(window(j)))),
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

    /// Each window's gradient goes to its first largest input, as `recorded` by the forward
    /// pass (see [`Pool::max`]) or found again in `x`.
    pub fn max_backward(&self, par: Par, x: &[f32], dy: &[f32], dx: &mut [f32], recorded: Option<&[u32]>) {
        let (hw, out) = (self.h * self.w, self.ho * self.wo);
        let per = self.planes_per_task();
        par.chunks_mut(dx, per * hw, |t, dx, _| {
            let (x, dy) = (&x[t * per * hw..], &dy[t * per * out..]);
            let recorded = recorded.map(|at| &at[t * per * out..]);
            wide!(par.isa(), fn(pool: &Pool = self, x: &[f32] = x, dy: &[f32] = dy, dx: &mut [f32] = dx, recorded: Option<&[u32]> = recorded) {
                pool.max_backward_planes(x, dy, dx, recorded)
            });
        });
    }

    /// The gradients of consecutive planes from the start of `x`, `dy` and `recorded`.
    #[inline(always)]
    fn max_backward_planes(&self, x: &[f32], dy: &[f32], dx: &mut [f32], recorded: Option<&[u32]>) {
        let (hw, out) = (self.h * self.w, self.ho * self.wo);
        for (p, dx) in dx.chunks_mut(hw).enumerate() {
            let x = &x[p * hw..][..hw];
            let dy = &dy[p * out..][..out];
            let recorded = recorded.map(|at| &at[p * out..][..out]);
            if self.is_2x2() {
                self.max_backward_2x2(x, dy, dx, recorded);
                continue;
            }
            dx.fill(0.0);
            self.windows(|o, rows, cols| {
                let at = recorded.map_or_else(|| self.first_largest(x, rows, cols), |at| at[o] as usize);
                dx[at] += dy[o];
            });
        }
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

/// The first largest of four finite values: the first largest of each pair, then of the two
/// pairs (the first pair wins ties), as flag arithmetic that compiles without branches.
#[inline(always)]
fn first_of_four([a, b, c, d]: [f32; 4]) -> usize {
    let right_top = usize::from(b > a);
    let right_bottom = usize::from(d > c);
    let bottom_wins = usize::from(c.max(d) > a.max(b));
    2 * bottom_wins + right_top * (1 - bottom_wins) + right_bottom * bottom_wins
}

/// Whether a plane holds no NaN (the fast paths' comparisons assume it).
#[inline(always)]
fn is_finite(x: &[f32]) -> bool {
    !x.iter().fold(false, |nan, v| nan | v.is_nan())
}

/// The first of four values that no later one beats (NaN included), in order.
fn first_beating(window: [f32; 4]) -> usize {
    (1..4).fold(0, |at, k| if beats(window[k], window[at]) { k } else { at })
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

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn the_2x2_fast_path_agrees_with_the_general_windows() {
        let general = Pool { planes: 2, h: 5, w: 4, ho: 2, wo: 2, kh: 2, kw: 2, stride: 2, pad_top: 0, pad_left: 0 };
        let x: Vec<f32> = (0..40).map(|i| ((i * 7) % 11) as f32).collect();
        let mut fast = vec![0.0; 8];
        general.max(Par::new(1), &x, &mut fast, None);
        let (mut recorded, mut at) = (vec![0.0; 8], vec![9; 8]);
        general.max(Par::new(1), &x, &mut recorded, Some(&mut at));
        assert_eq!(recorded, fast);
        assert!(at.iter().all(|&k| k < 4), "{at:?}");
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
        fast.max_backward(Par::new(1), &x, &dy, &mut got, None);
        let (mut y, mut at) = (vec![0.0; 8], vec![0; 8]);
        fast.max(Par::new(1), &x, &mut y, Some(&mut at));
        let mut from_record = vec![f32::NAN; 50];
        fast.max_backward(Par::new(1), &x, &dy, &mut from_record, Some(&at));
        assert_eq!(bits(&from_record), bits(&got));
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
    fn recorded_maxima_give_the_same_values_and_gradients_for_overlapping_padded_windows() {
        let pool = Pool { planes: 3, h: 7, w: 6, ho: 4, wo: 3, kh: 3, kw: 3, stride: 2, pad_top: 1, pad_left: 0 };
        let mut x: Vec<f32> = (0..126).map(|i| ((i * 5) % 7) as f32 - 3.0).collect();
        x[50] = f32::NAN;
        let dy: Vec<f32> = (0..36).map(|i| i as f32 * 0.5 - 4.0).collect();
        for threads in [1, 2] {
            let par = Par::new(threads);
            let (mut plain, mut y, mut at) = (vec![0.0; 36], vec![0.0; 36], vec![0; 36]);
            pool.max(par, &x, &mut plain, None);
            pool.max(par, &x, &mut y, Some(&mut at));
            assert_eq!(bits(&y), bits(&plain));
            let (mut searched, mut recorded) = (vec![f32::NAN; 126], vec![f32::NAN; 126]);
            pool.max_backward(par, &x, &dy, &mut searched, None);
            pool.max_backward(par, &x, &dy, &mut recorded, Some(&at));
            assert_eq!(bits(&recorded), bits(&searched));
        }
    }

    #[test]
    fn whole_windows_along_rows_find_the_first_largest_like_the_window_scan() {
        // CIFAR's 3×3 stride-2 pooling padded below and right, padding above and left,
        // stride 1, a window as wide as the plane; ties everywhere (the first must win).
        let pools = [
            Pool { planes: 2, h: 8, w: 8, ho: 4, wo: 4, kh: 3, kw: 3, stride: 2, pad_top: 0, pad_left: 0 },
            Pool { planes: 2, h: 7, w: 9, ho: 4, wo: 5, kh: 3, kw: 3, stride: 2, pad_top: 1, pad_left: 1 },
            Pool { planes: 1, h: 5, w: 6, ho: 3, wo: 4, kh: 3, kw: 3, stride: 1, pad_top: 0, pad_left: 0 },
            Pool { planes: 1, h: 4, w: 5, ho: 2, wo: 1, kh: 3, kw: 5, stride: 1, pad_top: 0, pad_left: 0 },
        ];
        for pool in pools {
            let (hw, out) = (pool.h * pool.w, pool.ho * pool.wo);
            let x: Vec<f32> = (0..pool.planes * hw).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
            let (mut want, mut want_at) = (vec![0.0; pool.planes * out], vec![0u32; pool.planes * out]);
            for p in 0..pool.planes {
                let plane = &x[p * hw..][..hw];
                pool.windows(|o, rows, cols| {
                    let k = pool.first_largest(plane, rows, cols);
                    (want[p * out + o], want_at[p * out + o]) = (plane[k], k as u32);
                });
            }
            for threads in [1, 2] {
                let (mut y, mut at) = (vec![f32::NAN; want.len()], vec![u32::MAX; want.len()]);
                pool.max(Par::new(threads), &x, &mut y, Some(&mut at));
                assert_eq!((bits(&y), &at), (bits(&want), &want_at), "{pool:?}");
                let mut plain = vec![f32::NAN; want.len()];
                pool.max(Par::new(threads), &x, &mut plain, None);
                assert_eq!(bits(&plain), bits(&want), "{pool:?}");
            }
        }
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
