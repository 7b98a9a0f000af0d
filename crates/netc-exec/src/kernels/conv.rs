//! Convolutions as GEMMs over im2col matrices; depthwise ones (ConvAct's) and forward ones
//! with few input channels directly, see [`depthwise`] and [`few_channels`].
//!
//! The im2col matrix of an example has one row per (input channel, kernel row, kernel column)
//! and one column per output position; for a chunk of examples their matrices sit side by
//! side, `[C·kh·kw × chunk·P]`. Then, per group:
//! * forward: `y = W · col` (`[O × chunk·P]`, copied into NCHW with the bias and activation);
//! * data gradient: `dcol = Wᵀ · dy`, scattered back into `dx` (col2im);
//! * filter gradient: `dW = Σ_chunks dy · colᵀ`, one partial per chunk, summed in chunk order.
//!
//! The forward pass and the filter gradient write a chunk's `col` straight into the GEMM's
//! panel layout (16 columns per panel), in cache, so it is not copied again before the
//! multiplication; the filter gradient takes dot products along the positions of `dy` and of
//! `col`'s panels without any packing. (Leaving the whole batch's `col` from the forward pass
//! to the filter gradient saves its rebuilding but writes and reads it through memory, which
//! measured slower: LeNet's step 18.9 → 16.8 ms, CIFAR LeNet5's 132 → 116 ms on one core.)
//! With stride 1 and padding, `col` is built from a zero-padded copy of the chunk.
//! Chunks (the tasks) depend only on the shapes, so results do not depend on the thread count.
//! When an example's im2col matrix is its input itself (a 1×1 convolution with stride 1, or a
//! filter covering the whole unpadded input) the GEMMs read the input directly.

use super::elementwise::{bias_act_rows, copy_bias_act};
use super::reduce::lane_sum;
use crate::gemm::{gemm, gemm_nt, gemm_panels, pack_len, MatMut, MatRef, PanelMat};
use crate::par::{split, wide, Par, Scratch, ELEMENTS_PER_TASK};
use netc_ir::{Conv, UnaryFn};

/// The sizes of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub ho: usize,
    pub wo: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
}

/// What the three convolution ops need besides the geometry: how examples are chunked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub geom: Geom,
    /// Examples per task (the last task may have fewer).
    pub chunk: usize,
    pub tasks: usize,
    /// Filter gradient only: output-channel rows per task when one chunk covers the batch.
    pub rows: usize,
    /// Filter gradient only: whether it also sums the bias gradient.
    pub bias: bool,
    /// Per-worker scratch: the im2col block, the `[O × chunk·P]` staging block (when the
    /// output or gradient of a chunk cannot be addressed in place), and GEMM packing memory.
    col: usize,
    staging: usize,
    pack: usize,
}

/// Columns per panel of the GEMM's right operand.
const PANEL: usize = 16;

/// Columns (`chunk·P`) a forward or data-gradient task aims for: wide enough for an efficient
/// GEMM, narrow enough that the im2col block stays in the L2 cache.
const TASK_COLUMNS: usize = 256;
/// The filter gradient contracts over the columns, so it takes longer chunks.
const FILTER_COLUMNS: usize = 512;

/// A matrix inside some buffer: (offset, row stride, column stride).
#[derive(Clone, Copy, Debug)]
struct View {
    off: usize,
    rs: usize,
    cs: usize,
}

impl Geom {
    pub fn new(x: &[usize], w: &[usize], y: &[usize], conv: Conv) -> Geom {
        Geom {
            n: x[0],
            c: x[1],
            h: x[2],
            w: x[3],
            o: w[0],
            kh: w[2],
            kw: w[3],
            ho: y[2],
            wo: y[3],
            stride: conv.stride,
            pad: conv.pad,
            groups: conv.groups.max(1),
        }
    }

    fn p(&self) -> usize {
        self.ho * self.wo
    }
    /// Each output channel reads its own input channel alone (ConvAct's filters) through at
    /// most [`depthwise::MAX_TAPS`] taps: a group's GEMM would have one row, so [`depthwise`]
    /// loops over the windows directly.
    pub fn depthwise(&self) -> bool {
        self.groups > 1 && self.groups == self.c && self.o == self.c && self.kh * self.kw <= depthwise::MAX_TAPS
    }
    /// The kernel rows (or columns) `lo..hi` whose input row (or column) for output index `i`
    /// lies inside `0..len`, with `pad` rows of zeros before it.
    fn taps(&self, i: usize, k: usize, len: usize) -> (usize, usize) {
        let start = i * self.stride;
        (self.pad.saturating_sub(start).min(k), (len + self.pad).saturating_sub(start).min(k))
    }
    fn opg(&self) -> usize {
        self.o / self.groups
    }
    /// Rows of a group's im2col block: `(C/groups)·kh·kw`.
    fn kg(&self) -> usize {
        self.c / self.groups * self.kh * self.kw
    }
    /// Rows of the whole im2col matrix.
    fn ck(&self) -> usize {
        self.c * self.kh * self.kw
    }
    fn x_len(&self) -> usize {
        self.c * self.h * self.w
    }
    fn y_len(&self) -> usize {
        self.o * self.p()
    }

    /// Whether an example's im2col matrix is its input: a filter covering the whole unpadded
    /// input (one position), or a 1×1 filter with stride 1 and no padding.
    fn col_is_input(&self) -> bool {
        let pointwise = self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0;
        self.whole_input() || pointwise
    }

    /// A filter covering the whole unpadded input: one position, whose im2col column is the
    /// example itself.
    fn whole_input(&self) -> bool {
        self.p() == 1 && self.pad == 0 && self.kh == self.h && self.kw == self.w
    }

    /// Examples per task, (tasks, chunk), aiming at `columns` columns per task.
    fn chunks(&self, columns: usize) -> (usize, usize) {
        let p = self.p();
        if self.col_is_input() {
            // No im2col matrix: one example (or, for one position, a GEMM's width).
            return split(self.n, if p == 1 { 64 } else { 1 });
        }
        split(self.n, (columns / p).max(1))
    }

    /// A forward convolution with few input channels (a first layer: K = C·kh·kw small) and
    /// stride 1 runs directly on the padded input ([`few_channels`]): its im2col matrix would
    /// be K times the input, written and read through memory for a short contraction.
    fn few_channels(&self) -> bool {
        let k = self.ck();
        self.groups == 1
            && self.stride == 1
            && self.c <= few_channels::MAX_CHANNELS
            && k <= few_channels::MAX_TAPS
            && self.wo >= few_channels::LANES / 2
            && !self.col_is_input()
    }

    /// The chunk plan of the forward pass.
    pub fn forward_plan(self) -> Plan {
        if self.depthwise() {
            return self.depthwise_plan(false);
        }
        if self.few_channels() {
            let col = few_channels::padded_len(&self);
            return Plan { geom: self, chunk: 1, tasks: self.n, rows: self.o, bias: false, col, staging: 0, pack: 0 };
        }
        let (tasks, chunk) = self.chunks(TASK_COLUMNS);
        let cols = chunk * self.p();
        let col = if self.col_is_input() { 0 } else { self.col_len(cols) + self.padded_input_len(chunk) };
        let staging = if self.direct_y(chunk) { 0 } else { self.o * cols };
        let pack = pack_len(self.opg(), cols, self.kg());
        Plan { geom: self, chunk, tasks, rows: self.o, bias: false, col, staging, pack }
    }

    /// Direct, per plane; per worker, a zero-padded plane (see [`depthwise::scratch_len`]).
    fn depthwise_plan(self, bias: bool) -> Plan {
        let col = depthwise::scratch_len(&self);
        // One chunk of the whole batch: the tasks are planes or channels, and the filter
        // gradient needs no partials.
        Plan { geom: self, chunk: self.n, tasks: 1, rows: self.o, bias, col, staging: 0, pack: 0 }
    }

    pub fn data_plan(self) -> Plan {
        if self.depthwise() {
            return self.depthwise_plan(false);
        }
        let (tasks, chunk) = self.chunks(TASK_COLUMNS);
        let cols = chunk * self.p();
        let col = if self.col_is_input() { 0 } else { self.ck() * cols };
        let staging = if self.direct_y(chunk) { 0 } else { self.o * cols };
        let pack = pack_len(self.kg(), cols, self.opg());
        Plan { geom: self, chunk, tasks, rows: self.o, bias: false, col, staging, pack }
    }

    /// The chunk plan of the filter gradient; with `bias`, of the bias gradient too.
    pub fn filter_plan(self, bias: bool) -> Plan {
        if self.depthwise() {
            return self.depthwise_plan(bias);
        }
        let (tasks, chunk) = if self.whole_input() { split(self.n, 256) } else { self.chunks(FILTER_COLUMNS) };
        let cols = chunk * self.p();
        // With one chunk and no im2col to share, split the output channels instead.
        let rows = if tasks == 1 && self.whole_input() { split(self.o, (self.o / 8).max(16)).1 } else { self.o };
        let col = if self.whole_input() { 0 } else { self.col_len(cols) + self.padded_input_len(chunk) };
        let staging = if self.filter_direct_dy(chunk) { 0 } else { self.o * cols };
        let pack = if self.whole_input() { pack_len(rows.min(self.opg()), self.kg(), cols) } else { 0 };
        Plan { geom: self, chunk, tasks, rows: rows.max(1), bias, col, staging, pack }
    }

    /// Whether the filter gradient reads a chunk's `dy` in place: its GEMM takes any strides,
    /// but the dot-product kernel needs contiguous rows.
    fn filter_direct_dy(&self, chunk: usize) -> bool {
        if self.whole_input() {
            self.direct_y(chunk)
        } else {
            chunk == 1
        }
    }

    /// Whether the `[O × chunk·P]` output (or gradient) of a chunk is a strided view of NCHW.
    fn direct_y(&self, chunk: usize) -> bool {
        chunk == 1 || self.p() == 1
    }

    /// The `[O × cn·P]` matrix of examples `b0..b0+cn` of an NCHW `[N, O, P]` tensor.
    fn y_view(&self, b0: usize) -> View {
        if self.p() == 1 {
            View { off: b0 * self.o, rs: 1, cs: self.o }
        } else {
            View { off: b0 * self.y_len(), rs: self.p(), cs: 1 }
        }
    }

    /// The `[C·kh·kw × cn·P]` im2col matrix of examples `b0..` when it is the input itself.
    fn x_view(&self, b0: usize) -> View {
        if self.p() == 1 {
            View { off: b0 * self.x_len(), rs: 1, cs: self.x_len() }
        } else {
            View { off: b0 * self.x_len(), rs: self.p(), cs: 1 }
        }
    }

    /// Output columns `lo..hi` whose input column `ow·stride + b − pad` lies inside `0..w`.
    fn valid_cols(&self, b: usize) -> (usize, usize) {
        let (s, pad, w) = (self.stride, self.pad, self.w);
        let lo = if pad > b { (pad - b).div_ceil(s) } else { 0 };
        let hi = if w + pad > b { ((w + pad - b - 1) / s + 1).min(self.wo) } else { 0 };
        (lo.min(hi), hi)
    }

    /// The input row of output row `oh` and kernel row `a`, if inside the input.
    fn input_row(&self, oh: usize, a: usize) -> Option<usize> {
        (oh * self.stride + a).checked_sub(self.pad).filter(|&r| r < self.h)
    }

    /// Elements of the im2col matrix of `cols` positions, in whole panels.
    fn col_len(&self, cols: usize) -> usize {
        cols.next_multiple_of(PANEL) * self.ck()
    }

    /// Whether the im2col matrix is built from a zero-padded copy of the chunk's input: with
    /// stride 1, every window then lies inside the copy, and the matrix is written by row
    /// copies instead of clipped runs (the same values).
    fn pads_input(&self) -> bool {
        self.pad > 0 && self.stride == 1
    }

    /// Elements of the padded copy of `cn` examples, if [`Geom::pads_input`].
    fn padded_input_len(&self, cn: usize) -> usize {
        if self.pads_input() {
            cn * self.c * (self.h + 2 * self.pad) * (self.w + 2 * self.pad)
        } else {
            0
        }
    }

    /// [`Geom::im2col_panels`] of examples `b0..b0+cn`, through the padded copy in `padded`
    /// when [`Geom::pads_input`].
    #[inline(always)]
    fn im2col_chunk(&self, x: &[f32], b0: usize, cn: usize, col: &mut [f32], padded: &mut [f32]) {
        if !self.pads_input() {
            return self.im2col_panels(x, b0, cn, col);
        }
        let (hp, wp) = (self.h + 2 * self.pad, self.w + 2 * self.pad);
        let padded = &mut padded[..self.padded_input_len(cn)];
        self.copy_padded(&x[b0 * self.x_len()..][..cn * self.x_len()], wp, padded);
        Geom { h: hp, w: wp, pad: 0, ..*self }.im2col_panels(padded, 0, cn, col);
    }

    /// Copies the planes of `x` into `padded` with `pad` zero rows above and below and `pad`
    /// zero columns to the left, in rows of `width` (at least `w + 2·pad`; zeros to the right),
    /// and zeroes the rest of `padded`.
    fn copy_padded(&self, x: &[f32], width: usize, padded: &mut [f32]) {
        let (pad, hp) = (self.pad, self.h + 2 * self.pad);
        padded.fill(0.0);
        for (plane, src) in x.chunks_exact(self.h * self.w).enumerate() {
            for (r, row) in src.chunks_exact(self.w).enumerate() {
                padded[(plane * hp + r + pad) * width + pad..][..self.w].copy_from_slice(row);
            }
        }
    }

    /// Writes the im2col matrix of examples `b0..b0+cn` in panels: element (row r, position
    /// q) at `col[(q / 16)·ck·16 + 16·r + q % 16]`, positions past the chunk zero. Panel by
    /// panel, so the writes are sequential and the reads (a few input rows) stay in L1.
    #[inline(always)]
    fn im2col_panels(&self, x: &[f32], b0: usize, cn: usize, col: &mut [f32]) {
        let (p, wo, s, ck) = (self.p(), self.wo, self.stride, self.ck());
        let cols = cn * p;
        for (panel, dst) in col[..cols.next_multiple_of(PANEL) * ck].chunks_exact_mut(ck * PANEL).enumerate() {
            // The panel's positions as runs along output rows: (example, output row, first
            // output column, first lane, length).
            let mut runs = [(0, 0, 0, 0, 0); PANEL];
            let mut count = 0;
            let mut q = panel * PANEL;
            let end = (q + PANEL).min(cols);
            while q < end {
                let (i, within) = (q / p, q % p);
                let (oh, ow) = (within / wo, within % wo);
                let len = (wo - ow).min(end - q);
                runs[count] = (i, oh, ow, q % PANEL, len);
                count += 1;
                q += len;
            }
            let filled = end - panel * PANEL;
            if s == 1 && self.pad == 0 {
                // Every window lies inside the input: each run is a copy of an input row
                // segment, shifted by the kernel column.
                for ci in 0..self.c {
                    for a in 0..self.kh {
                        let r0 = (ci * self.kh + a) * self.kw;
                        let rows = &mut dst[r0 * PANEL..][..self.kw * PANEL];
                        for &(i, oh, ow0, lane, len) in &runs[..count] {
                            let start = (b0 + i) * self.x_len() + (ci * self.h + oh + a) * self.w + ow0;
                            let src = &x[start..start + len + self.kw - 1];
                            for (b, row) in rows.chunks_exact_mut(PANEL).enumerate() {
                                copy_short(&mut row[lane..lane + len], &src[b..b + len]);
                            }
                        }
                        if filled < PANEL {
                            for row in rows.chunks_exact_mut(PANEL) {
                                row[filled..].fill(0.0);
                            }
                        }
                    }
                }
                continue;
            }
            for ci in 0..self.c {
                for a in 0..self.kh {
                    for b in 0..self.kw {
                        let row = &mut dst[((ci * self.kh + a) * self.kw + b) * PANEL..][..PANEL];
                        row[filled..].fill(0.0);
                        for &(i, oh, ow0, lane, len) in &runs[..count] {
                            let out = &mut row[lane..lane + len];
                            let Some(ih) = self.input_row(oh, a) else {
                                out.fill(0.0);
                                continue;
                            };
                            let plane = (b0 + i) * self.x_len() + ci * self.h * self.w;
                            let src = &x[plane + ih * self.w..][..self.w];
                            // Output columns ow0.. whose input column lies inside the row.
                            let (lo, hi) = self.valid_cols(b);
                            let (lo, hi) = (lo.clamp(ow0, ow0 + len) - ow0, hi.clamp(ow0, ow0 + len) - ow0);
                            out[..lo].fill(0.0);
                            out[hi.max(lo)..].fill(0.0);
                            if lo < hi {
                                let first = (ow0 + lo) * s + b - self.pad;
                                if s == 1 {
                                    copy_short(&mut out[lo..hi], &src[first..first + (hi - lo)]);
                                } else {
                                    for (d, &v) in out[lo..hi].iter_mut().zip(src[first..].iter().step_by(s)) {
                                        *d = v;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Adds columns `col0..col0+P` of `col` (row stride `ld`) back into example `dx`: the
    /// adjoint of im2col (in the plain `[C·kh·kw × cols]` layout the data gradient uses).
    #[inline(always)]
    fn col2im(&self, col: &[f32], ld: usize, col0: usize, dx: &mut [f32]) {
        let (p, wo, s) = (self.p(), self.wo, self.stride);
        for ci in 0..self.c {
            let plane = &mut dx[ci * self.h * self.w..][..self.h * self.w];
            for a in 0..self.kh {
                for b in 0..self.kw {
                    let row = (ci * self.kh + a) * self.kw + b;
                    let src = &col[row * ld + col0..][..p];
                    let (lo, hi) = self.valid_cols(b);
                    for (oh, src) in src.chunks_exact(wo).enumerate() {
                        let Some(ih) = self.input_row(oh, a).filter(|_| lo < hi) else { continue };
                        let dst = &mut plane[ih * self.w..][..self.w];
                        let first = lo * s + b - self.pad;
                        if s == 1 {
                            add_short(&mut dst[first..first + (hi - lo)], &src[lo..hi]);
                        } else {
                            for (d, &v) in dst[first..].iter_mut().step_by(s).zip(&src[lo..hi]) {
                                *d += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `dst = src` for runs of any length without calling `memmove` (see [`copy_short`]).
#[inline(always)]
fn copy_run(dst: &mut [f32], src: &[f32]) {
    let (mut d, mut s) = (dst.chunks_exact_mut(16), src.chunks_exact(16));
    for (d, s) in (&mut d).zip(&mut s) {
        copy_short(d, s);
    }
    copy_short(d.into_remainder(), s.remainder());
}

/// `dst = src` for runs of at most 16 elements, in fixed-size pieces without a loop: a slice
/// copy (or a copy loop, which LLVM turns into one) would call `memmove`, which costs more
/// than the copy for a few elements.
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    fn piece<const N: usize>(dst: &mut [f32], src: &[f32], at: &mut usize) {
        if dst.len() - *at >= N {
            if let (Ok(d), Ok(s)) =
                (<&mut [f32; N]>::try_from(&mut dst[*at..*at + N]), <&[f32; N]>::try_from(&src[*at..*at + N]))
            {
                *d = *s;
            }
            *at += N;
        }
    }
    let len = src.len().min(dst.len());
    let dst = &mut dst[..len];
    let mut at = 0;
    // Whole and half panels (output rows of 16 or 8) in one piece, without the checks below.
    if len == 16 || len == 8 {
        if len == 16 {
            piece::<16>(dst, src, &mut at);
        } else {
            piece::<8>(dst, src, &mut at);
        }
        return;
    }
    piece::<8>(dst, src, &mut at);
    piece::<8>(dst, src, &mut at);
    piece::<4>(dst, src, &mut at);
    piece::<2>(dst, src, &mut at);
    piece::<1>(dst, src, &mut at);
}

/// `dst += src` for the short rows of col2im.
#[inline(always)]
fn add_short(dst: &mut [f32], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

impl Plan {
    /// Per-worker scratch (elements).
    pub fn worker_scratch(&self) -> usize {
        self.col + self.staging + self.pack
    }

    /// Where a chunk's partial bias gradient starts in its partial, after `dW`: on a cache line,
    /// so that every partial does.
    fn bias_offset(&self) -> usize {
        (self.geom.o * self.geom.kg()).next_multiple_of(PANEL)
    }

    /// One chunk's partial filter gradient: `dW`, then the bias gradient if summed.
    fn partial_len(&self) -> usize {
        if self.bias {
            self.bias_offset() + self.geom.o.next_multiple_of(PANEL)
        } else {
            self.geom.o * self.geom.kg()
        }
    }

    /// A worker's scratch, split into its three parts.
    fn parts<'s>(&self, scratch: &'s mut [f32]) -> (&'s mut [f32], &'s mut [f32], &'s mut [f32]) {
        let (col, rest) = scratch.split_at_mut(self.col);
        let (staging, pack) = rest.split_at_mut(self.staging);
        (col, staging, pack)
    }
}

/// Scratch shared by all workers of the filter gradient: one partial `dW` per chunk when there
/// are several chunks.
pub(crate) fn filter_partials_len(plan: &Plan) -> usize {
    if plan.tasks > 1 {
        plan.tasks * plan.partial_len()
    } else {
        0
    }
}

/// `y = conv(x, w)` with the epilogue's bias and activation; with `pre` (as long as `y`),
/// the biased outputs before the activation are stored there too.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    par: Par,
    plan: &Plan,
    x: &[f32],
    weights: &[f32],
    bias: Option<&[f32]>,
    act: Option<UnaryFn>,
    y: &mut [f32],
    pre: Option<&mut [f32]>,
    scratch: &Scratch<'_>,
) {
    let g = plan.geom;
    if g.depthwise() {
        return depthwise::forward(par, &g, &[(x, weights)], bias, act, y, pre, scratch);
    }
    if g.few_channels() {
        return few_channels::forward(par, plan, x, weights, bias, act, y, pre, scratch);
    }
    let (p, kg, opg) = (g.p(), g.kg(), g.opg());
    par.chunks_mut_beside(y, plan.chunk * g.y_len(), pre, |t, y, pre, worker| {
        let b0 = t * plan.chunk;
        let cn = y.len() / g.y_len();
        let cols = cn * p;
        // SAFETY: `worker` comes from `Par`, which runs one task per worker at a time.
        let (own_col, staging, pack) = plan.parts(unsafe { scratch.worker(worker) });
        let (col, padded) = own_col.split_at_mut(own_col.len() - g.padded_input_len(plan.chunk));
        if !g.col_is_input() {
            wide!(par.isa(), fn(g: &Geom = &g, x: &[f32] = x, b0: usize = b0, cn: usize = cn, col: &mut [f32] = col, padded: &mut [f32] = padded) {
                g.im2col_chunk(x, b0, cn, col, padded)
            });
        }
        let direct = g.direct_y(cn);
        for group in 0..g.groups {
            let a = MatRef::new(weights, group * opg * kg, opg, kg, kg, 1);
            let dst = if direct {
                let v = g.y_view(0);
                MatMut::new(y, v.off + group * opg * v.rs, opg, cols, v.rs, v.cs)
            } else {
                MatMut::new(staging, group * opg * cols, opg, cols, cols, 1)
            };
            if g.col_is_input() {
                let v = g.x_view(b0);
                gemm(par.isa(), dst, a, MatRef::new(x, v.off + group * kg * v.rs, kg, cols, v.rs, v.cs), false, pack);
            } else {
                let b = PanelMat::new(&*col, group * kg * PANEL, kg, cols, g.ck() * PANEL);
                gemm_panels(par.isa(), dst, a, b, false, pack);
            }
        }
        wide!(par.isa(), fn(
            g: &Geom = &g, direct: bool = direct, staging: &[f32] = staging, cols: usize = cols,
            bias: Option<&[f32]> = bias, act: Option<UnaryFn> = act, y: &mut [f32] = y,
            pre: Option<&mut [f32]> = pre,
        ) {
            let p = g.p();
            if direct {
                if bias.is_some() || act.is_some() {
                    bias_act_rows(y, pre, p, bias, act);
                }
            } else {
                let mut pre = pre.map(|pre| pre.chunks_exact_mut(p));
                for (i, y) in y.chunks_exact_mut(g.y_len()).enumerate() {
                    for (o, y) in y.chunks_exact_mut(p).enumerate() {
                        let src = &staging[o * cols + i * p..][..p];
                        copy_bias_act(src, y, pre.as_mut().and_then(Iterator::next), bias.map(|b| b[o]), act);
                    }
                }
            }
        });
    });
}

/// `y = conv(x₁, w₁) + conv(x₂, w₂)` for a depthwise geometry (see [`Geom::depthwise`]):
/// each convolution summed from zero as [`forward`] sums it, then the two added.
pub(crate) fn forward_pair(
    par: Par,
    plan: &Plan,
    first: (&[f32], &[f32]),
    second: (&[f32], &[f32]),
    y: &mut [f32],
    scratch: &Scratch<'_>,
) {
    debug_assert!(plan.geom.depthwise());
    depthwise::forward(par, &plan.geom, &[first, second], None, None, y, None, scratch);
}

/// The data gradients of a pair of depthwise convolutions of one `dy` (see
/// [`forward_pair`]): each as [`backward_data`] computes it, in one pass over `dy`.
pub(crate) fn backward_data_pair(
    par: Par,
    plan: &Plan,
    dy: &[f32],
    weights: (&[f32], &[f32]),
    dx: (&mut [f32], &mut [f32]),
    scratch: &Scratch<'_>,
) {
    debug_assert!(plan.geom.depthwise());
    depthwise::backward_data(par, &plan.geom, dy, &[weights.0, weights.1], dx.0, Some(dx.1), scratch);
}

/// The filter gradients of a pair of depthwise convolutions of one `dy`: each as
/// [`backward_filter`] computes it, in one pass over `dy`.
pub(crate) fn backward_filter_pair(
    par: Par,
    plan: &Plan,
    x: (&[f32], &[f32]),
    dy: &[f32],
    dw: (&mut [f32], &mut [f32]),
    scratch: &Scratch<'_>,
) {
    debug_assert!(plan.geom.depthwise());
    depthwise::backward_filter(par, &plan.geom, &[x.0, x.1], dy, dw.0, Some(dw.1), scratch);
}

/// `dx` from `dy` and the filters.
pub(crate) fn backward_data(par: Par, plan: &Plan, dy: &[f32], weights: &[f32], dx: &mut [f32], scratch: &Scratch<'_>) {
    let g = plan.geom;
    if g.depthwise() {
        return depthwise::backward_data(par, &g, dy, &[weights], dx, None, scratch);
    }
    let (p, kg, opg) = (g.p(), g.kg(), g.opg());
    par.chunks_mut(dx, plan.chunk * g.x_len(), |t, dx, worker| {
        let b0 = t * plan.chunk;
        let cn = dx.len() / g.x_len();
        let cols = cn * p;
        // SAFETY: as in `forward`.
        let (dcol, staging, pack) = plan.parts(unsafe { scratch.worker(worker) });
        let (dy_data, dv) = gather_dy(&g, dy, b0, cn, staging, g.direct_y(cn));
        for group in 0..g.groups {
            let a = MatRef::new(weights, group * opg * kg, opg, kg, kg, 1).t();
            let b = MatRef::new(dy_data, dv.off + group * opg * dv.rs, opg, cols, dv.rs, dv.cs);
            let dst = if g.col_is_input() {
                let v = g.x_view(0);
                MatMut::new(dx, v.off + group * kg * v.rs, kg, cols, v.rs, v.cs)
            } else {
                MatMut::new(dcol, group * kg * cols, kg, cols, cols, 1)
            };
            gemm(par.isa(), dst, a, b, false, pack);
        }
        if !g.col_is_input() {
            wide!(par.isa(), fn(g: &Geom = &g, dcol: &[f32] = dcol, cols: usize = cols, dx: &mut [f32] = dx) {
                dx.fill(0.0);
                for (i, dx) in dx.chunks_exact_mut(g.x_len()).enumerate() {
                    g.col2im(dcol, cols, i * g.p(), dx);
                }
            });
        }
    });
}

/// The `[O × cn·P]` gradient matrix of examples `b0..b0+cn`: a view of `dy` if `direct`
/// (see [`Geom::direct_y`]), else gathered into `staging`.
fn gather_dy<'a>(
    g: &Geom,
    dy: &'a [f32],
    b0: usize,
    cn: usize,
    staging: &'a mut [f32],
    direct: bool,
) -> (&'a [f32], View) {
    if direct {
        return (dy, g.y_view(b0));
    }
    let (p, cols) = (g.p(), cn * g.p());
    for i in 0..cn {
        let example = &dy[(b0 + i) * g.y_len()..][..g.y_len()];
        for (o, row) in example.chunks_exact(p).enumerate() {
            staging[o * cols + i * p..][..p].copy_from_slice(row);
        }
    }
    (staging, View { off: 0, rs: cols, cs: 1 })
}

/// `dW` (and, given `db`, the bias gradient) from the input and `dy`: per chunk a partial
/// product (and per-channel sums of its `dy`), summed in chunk order. The chunk's im2col
/// matrix is rebuilt in cache (cheaper than leaving the whole batch's in memory from the
/// forward pass); the products are dot products along the positions, which both operands
/// store contiguously.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_filter(
    par: Par,
    plan: &Plan,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    partials: &mut [f32],
    scratch: &Scratch<'_>,
) {
    let g = plan.geom;
    if g.depthwise() {
        depthwise::backward_filter(par, &g, &[x], dy, dw, None, scratch);
        if let Some(db) = db {
            depthwise::bias_gradient(par, &g, dy, db);
        }
        return;
    }
    let (p, kg, opg) = (g.p(), g.kg(), g.opg());
    let w_len = g.o * kg;
    // One task: (chunk t, rows r0..) writing `dst` (rows r0.. of dW or of partial t) and
    // `bias` (the same rows of the bias gradient or of partial t's).
    let task = |t: usize, r0: usize, dst: &mut [f32], bias: Option<&mut [f32]>, worker: usize| {
        let b0 = t * plan.chunk;
        let cn = plan.chunk.min(g.n - b0);
        let cols = cn * p;
        let rows = dst.len() / kg;
        // SAFETY: as in `forward`.
        let (own_col, staging, pack) = plan.parts(unsafe { scratch.worker(worker) });
        let col: &[f32] = if g.whole_input() {
            &[]
        } else {
            let (col, padded) = own_col.split_at_mut(own_col.len() - g.padded_input_len(plan.chunk));
            wide!(par.isa(), fn(g: &Geom = &g, x: &[f32] = x, b0: usize = b0, cn: usize = cn, col: &mut [f32] = &mut *col, padded: &mut [f32] = padded) {
                g.im2col_chunk(x, b0, cn, col, padded)
            });
            col
        };
        let (dy_data, dv) = gather_dy(&g, dy, b0, cn, staging, g.filter_direct_dy(cn));
        if let Some(bias) = bias {
            // Each channel's row of the chunk's `dy`, summed while it is in cache.
            for (o, sum) in bias.iter_mut().enumerate() {
                let start = dv.off + (r0 + o) * dv.rs;
                *sum = if dv.cs == 1 {
                    lane_sum(&dy_data[start..][..cols])
                } else {
                    (0..cols).fold(0.0, |sum, j| sum + dy_data[start + j * dv.cs])
                };
            }
        }
        for group in 0..g.groups {
            let lo = r0.max(group * opg);
            let hi = (r0 + rows).min((group + 1) * opg);
            if lo >= hi {
                continue;
            }
            let a = MatRef::new(dy_data, dv.off + lo * dv.rs, hi - lo, cols, dv.rs, dv.cs);
            let dst = MatMut::new(dst, (lo - r0) * kg, hi - lo, kg, kg, 1);
            if g.whole_input() {
                let b = MatRef::new(x, b0 * g.x_len() + group * kg, cols, kg, g.x_len(), 1);
                gemm(par.isa(), dst, a, b, false, &mut *pack);
            } else {
                let stride = g.ck() * PANEL;
                gemm_nt(par.isa(), dst, a, PanelMat::new(col, group * kg * PANEL, kg, cols, stride));
            }
        }
    };
    if plan.tasks <= 1 {
        let rows = plan.rows;
        match db {
            Some(db) => {
                par.chunks_mut2(dw, rows * kg, db, rows, |r, dst, db, worker| task(0, r * rows, dst, Some(db), worker))
            }
            None => par.chunks_mut(dw, rows * kg, |r, dst, worker| task(0, r * rows, dst, None, worker)),
        }
        return;
    }
    let part = plan.partial_len();
    let bias_at = plan.bias_offset();
    par.chunks_mut(&mut partials[..plan.tasks * part], part, |t, dst, worker| {
        if plan.bias {
            let (dst, bias) = dst.split_at_mut(bias_at);
            task(t, 0, &mut dst[..w_len], Some(&mut bias[..g.o]), worker);
        } else {
            task(t, 0, dst, None, worker);
        }
    });
    let partials = &partials[..plan.tasks * part];
    // The chunks' partials added in chunk order, element by element.
    let merge = |out: &mut [f32], first: usize| {
        out.copy_from_slice(&partials[first..first + out.len()]);
        for t in 1..plan.tasks {
            let part = &partials[t * part + first..][..out.len()];
            out.iter_mut().zip(part).for_each(|(d, &v)| *d += v);
        }
    };
    par.chunks_mut(dw, ELEMENTS_PER_TASK, |c, dst, _| merge(dst, c * ELEMENTS_PER_TASK));
    if let Some(db) = db {
        merge(db, bias_at);
    }
}

/// Convolutions with few input channels (first layers), stride 1, without im2col: each
/// example's input is copied once into a zero-padded buffer, then blocks of `LANES` outputs
/// along an output row, for `ROWS` filters at a time, are summed in registers over the taps
/// (channel, kernel row, kernel column) with fused multiply-adds from zero: the very operations,
/// in the same order, that the GEMM performs on the im2col matrix (padding included, as zeros),
/// so the results are the GEMM's, bit for bit, on every path (`f32::mul_add` is exactly
/// rounded on each).
mod few_channels {
    use super::Geom;
    use crate::gemm::Isa;
    use crate::kernels::elementwise::bias_act_rows;
    use crate::par::{Par, Scratch};
    use netc_ir::UnaryFn;

    /// The most input channels and taps (`C·kh·kw`) this path takes.
    pub(super) const MAX_CHANNELS: usize = 4;
    pub(super) const MAX_TAPS: usize = 100;
    /// Outputs per block along a row (one AVX-512 register, two AVX2 ones).
    pub(super) const LANES: usize = 16;
    /// Filters per block, largest first: accumulators in registers (up to ten AVX-512 ones, or
    /// six pairs with AVX2); each path's kernel is instantiated for these counts.
    const ROWS_AVX512: [usize; 4] = [10, 8, 4, 1];
    const ROWS_AVX2: [usize; 4] = [6, 4, 2, 1];

    /// `(first filter, filters)` of the blocks covering `total` filters: each the largest of
    /// `sizes` (ending in 1) that still fits.
    fn blocks(total: usize, sizes: &[usize]) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut first = 0;
        std::iter::from_fn(move || {
            // Nothing fits once every filter is covered.
            let rows = *sizes.iter().find(|&&r| r <= total - first)?;
            first += rows;
            Some((first - rows, rows))
        })
    }

    /// The padded input of one example: rows of `w + 2·pad` plus a block's slack, so that a
    /// block reading past the row's end stays inside the buffer.
    fn padded_width(g: &Geom) -> usize {
        g.w + 2 * g.pad + LANES
    }

    /// Scratch per worker: the padded example, the filters transposed (tap-major) and the
    /// taps' offsets in the padded example.
    pub(super) fn padded_len(g: &Geom) -> usize {
        g.c * (g.h + 2 * g.pad) * padded_width(g) + LANES + g.o * g.ck() + g.ck()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        par: Par,
        plan: &super::Plan,
        x: &[f32],
        weights: &[f32],
        bias: Option<&[f32]>,
        act: Option<UnaryFn>,
        y: &mut [f32],
        pre: Option<&mut [f32]>,
        scratch: &Scratch<'_>,
    ) {
        let g = plan.geom;
        par.chunks_mut_beside(y, g.y_len(), pre, |n, y, pre, worker| {
            // SAFETY: `worker` comes from `Par`, which runs one task per worker at a time.
            let scratch = &mut unsafe { scratch.worker(worker) }[..plan.col];
            example(par.isa(), &g, &x[n * g.x_len()..][..g.x_len()], weights, scratch, y);
            bias_act_rows(y, pre, g.p(), bias, act);
        });
    }

    /// One example's outputs `y` (every filter's plane) from its input `x`, without the bias
    /// and activation; `scratch` holds [`padded_len`] elements.
    fn example(isa: Isa, g: &Geom, x: &[f32], weights: &[f32], scratch: &mut [f32], y: &mut [f32]) {
        let (pw, ph, k) = (padded_width(g), g.h + 2 * g.pad, g.ck());
        let (padded, rest) = scratch.split_at_mut(g.c * ph * pw + LANES);
        let (filters, offsets) = rest.split_at_mut(g.o * k);
        g.copy_padded(x, pw, padded);
        // Tap t = (channel, kernel row, kernel column) reads `padded` at `offsets[t]` from its
        // block's first output; filter o's tap t is at `filters[t·O + o]`.
        let mut t = 0;
        for ci in 0..g.c {
            for a in 0..g.kh {
                for b in 0..g.kw {
                    // Small integers (an offset inside the padded example), exact in f32.
                    offsets[t] = ((ci * ph + a) * pw + b) as f32;
                    t += 1;
                }
            }
        }
        for (t, column) in filters.chunks_exact_mut(g.o).enumerate() {
            for (o, w) in column.iter_mut().enumerate() {
                *w = weights[o * k + t];
            }
        }
        let offsets: &[f32] = &offsets[..k];
        // Two output rows at a time, so that AVX-512 loads each weight once for both.
        for oh in (0..g.ho).step_by(2) {
            for ow in (0..g.wo).step_by(LANES) {
                let (first, out, width) = (oh * pw + ow, oh * g.wo + ow, LANES.min(g.wo - ow));
                let block = Block { first, out, width, rows: (g.ho - oh).min(2) };
                run_block(isa, g, padded, filters, offsets, block, y);
            }
        }
    }

    /// Outputs `out..out+width` of every filter's plane, whose taps read `padded` from `first`,
    /// and the same columns of the next output rows, `rows` in all.
    #[derive(Clone, Copy)]
    struct Block {
        first: usize,
        out: usize,
        width: usize,
        rows: usize,
    }

    impl Block {
        /// The block's row `i` alone.
        fn row(self, g: &Geom, i: usize) -> Block {
            Block { first: self.first + i * padded_width(g), out: self.out + i * g.wo, rows: 1, ..self }
        }
    }

    fn run_block(isa: Isa, g: &Geom, padded: &[f32], filters: &[f32], offsets: &[f32], block: Block, y: &mut [f32]) {
        let k = g.ck();
        let last = block.row(g, block.rows - 1);
        assert!(offsets.iter().all(|&o| last.first + o as usize + LANES <= padded.len()), "tap outside the buffer");
        assert!(filters.len() == g.o * k && y.len() == g.o * g.p() && last.out + block.width <= g.p());
        match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has the path's instructions (a `Par` carries only such paths);
            // every read and write is inside the buffers (asserted above).
            Isa::Avx512 => unsafe { avx512::block(g, padded, filters, offsets, block, y) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, row by row.
            Isa::Avx2 => {
                (0..block.rows).for_each(|i| unsafe { avx2::block(g, padded, filters, offsets, block.row(g, i), y) })
            }
            _ => {
                for b in (0..block.rows).map(|i| block.row(g, i)) {
                    for o in 0..g.o {
                        for l in 0..b.width {
                            let sum = (0..k).fold(0.0f32, |acc, t| {
                                filters[t * g.o + o].mul_add(padded[b.first + offsets[t] as usize + l], acc)
                            });
                            y[o * g.p() + b.out + l] = sum;
                        }
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod avx512 {
        use super::{blocks, Block, Geom, ROWS_AVX512};
        use std::arch::x86_64::*;

        /// # Safety
        /// The CPU must support AVX-512F; the buffers must hold what `run_block` asserts.
        #[target_feature(enable = "avx512f,avx2,fma")]
        pub(super) unsafe fn block(
            g: &Geom,
            padded: &[f32],
            filters: &[f32],
            offsets: &[f32],
            b: Block,
            y: &mut [f32],
        ) {
            for (o0, rows) in blocks(g.o, &ROWS_AVX512) {
                // SAFETY: passed on from the caller.
                unsafe {
                    match (rows, b.rows) {
                        (10, 2) => rows_of::<10, 2>(g, padded, filters, offsets, b, y, o0),
                        (8, 2) => rows_of::<8, 2>(g, padded, filters, offsets, b, y, o0),
                        (4, 2) => rows_of::<4, 2>(g, padded, filters, offsets, b, y, o0),
                        (_, 2) => rows_of::<1, 2>(g, padded, filters, offsets, b, y, o0),
                        (10, _) => rows_of::<10, 1>(g, padded, filters, offsets, b, y, o0),
                        (8, _) => rows_of::<8, 1>(g, padded, filters, offsets, b, y, o0),
                        (4, _) => rows_of::<4, 1>(g, padded, filters, offsets, b, y, o0),
                        _ => rows_of::<1, 1>(g, padded, filters, offsets, b, y, o0),
                    }
                }
            }
        }

        /// Filters `o0..o0+R` of the block's `B` output rows, in `R·B` registers (each weight
        /// loaded once for the `B` rows).
        #[target_feature(enable = "avx512f,avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn rows_of<const R: usize, const B: usize>(
            g: &Geom,
            padded: &[f32],
            filters: &[f32],
            offsets: &[f32],
            b: Block,
            y: &mut [f32],
            o0: usize,
        ) {
            // SAFETY: every pointer stays inside its buffer (the caller's obligation).
            unsafe {
                // By filter, then output row.
                let mut acc = [[_mm512_setzero_ps(); B]; R];
                let base: [*const f32; B] = std::array::from_fn(|i| padded.as_ptr().add(b.row(g, i).first));
                let w = filters.as_ptr().add(o0);
                for (t, &offset) in offsets.iter().enumerate() {
                    let v: [__m512; B] = std::array::from_fn(|i| _mm512_loadu_ps(base[i].add(offset as usize)));
                    let wt = w.add(t * g.o);
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let wr = _mm512_set1_ps(*wt.add(r));
                        for (acc, &v) in acc.iter_mut().zip(&v) {
                            *acc = _mm512_fmadd_ps(wr, v, *acc);
                        }
                    }
                }
                let mask: __mmask16 = if b.width >= 16 { !0 } else { (1u16 << b.width) - 1 };
                for (r, acc) in acc.iter().enumerate() {
                    for (i, &acc) in acc.iter().enumerate() {
                        let out = b.row(g, i).out;
                        _mm512_mask_storeu_ps(y.as_mut_ptr().add((o0 + r) * g.p() + out), mask, acc);
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    mod avx2 {
        use super::{blocks, Block, Geom, ROWS_AVX2};
        use std::arch::x86_64::*;

        /// # Safety
        /// The CPU must support AVX2 and FMA; the buffers must hold what `run_block` asserts.
        #[target_feature(enable = "avx2,fma")]
        pub(super) unsafe fn block(
            g: &Geom,
            padded: &[f32],
            filters: &[f32],
            offsets: &[f32],
            b: Block,
            y: &mut [f32],
        ) {
            for (o0, rows) in blocks(g.o, &ROWS_AVX2) {
                // SAFETY: passed on from the caller.
                unsafe {
                    match rows {
                        6 => rows_of::<6>(g, padded, filters, offsets, b, y, o0),
                        4 => rows_of::<4>(g, padded, filters, offsets, b, y, o0),
                        2 => rows_of::<2>(g, padded, filters, offsets, b, y, o0),
                        _ => rows_of::<1>(g, padded, filters, offsets, b, y, o0),
                    }
                }
            }
        }

        /// Filters `o0..o0+R` of one block, in `2R` registers of eight outputs.
        #[target_feature(enable = "avx2,fma")]
        #[allow(clippy::too_many_arguments)]
        unsafe fn rows_of<const R: usize>(
            g: &Geom,
            padded: &[f32],
            filters: &[f32],
            offsets: &[f32],
            b: Block,
            y: &mut [f32],
            o0: usize,
        ) {
            // SAFETY: every pointer stays inside its buffer (the caller's obligation).
            unsafe {
                let mut lo = [_mm256_setzero_ps(); R];
                let mut hi = [_mm256_setzero_ps(); R];
                let base = padded.as_ptr().add(b.first);
                let w = filters.as_ptr().add(o0);
                for (t, &offset) in offsets.iter().enumerate() {
                    let v0 = _mm256_loadu_ps(base.add(offset as usize));
                    let v1 = _mm256_loadu_ps(base.add(offset as usize + 8));
                    let wt = w.add(t * g.o);
                    for r in 0..R {
                        let wr = _mm256_broadcast_ss(&*wt.add(r));
                        lo[r] = _mm256_fmadd_ps(wr, v0, lo[r]);
                        hi[r] = _mm256_fmadd_ps(wr, v1, hi[r]);
                    }
                }
                for r in 0..R {
                    let mut lanes = [0.0f32; 16];
                    _mm256_storeu_ps(lanes.as_mut_ptr(), lo[r]);
                    _mm256_storeu_ps(lanes.as_mut_ptr().add(8), hi[r]);
                    let dst = &mut y[(o0 + r) * g.p() + b.out..][..b.width];
                    dst.copy_from_slice(&lanes[..b.width]);
                }
            }
        }
    }
}

/// Depthwise convolutions without im2col: every output is its window's dot product with its
/// channel's filter, taps in row-major order, one plain multiply and add each from zero (the
/// same instructions on every instruction-set path). With stride 1 and less padding than the
/// filter (ConvAct's), a plane is copied with its zero padding and each block of outputs along
/// a row is summed over all taps in registers (see `correlate`); the data gradient is the same
/// sum over the zero-padded `dy` with the taps turned round. A padding tap adds `w·0`, which
/// leaves a sum from zero unchanged for finite weights, so these are the sums that skip the
/// padding. Other strides apply a tap to a whole output row at once (the columns whose input
/// lies inside the plane). The filter gradient sums each tap over the batch in `LANES` partial
/// sums of fixed lanes, added in lane order at the end. The work is split over planes (data)
/// or channels (filters), never inside a sum, so results do not depend on the thread count.
mod depthwise {
    use super::Geom;
    use crate::kernels::elementwise::bias_act_rows;
    use crate::kernels::reduce::lane_sum;
    use crate::par::{wide, Par, Scratch, ELEMENTS_PER_TASK};
    use netc_ir::UnaryFn;

    /// Lanes of the filter gradient's partial sums: fixed, so the order of every sum is too.
    const LANES: usize = 8;

    /// The most taps (`kh·kw`) a filter run here may have: its partial sums live on the stack.
    pub(super) const MAX_TAPS: usize = 49;

    fn planes_per_task(len: usize) -> usize {
        (ELEMENTS_PER_TASK / len.max(1)).max(1)
    }

    /// Whether whole rows of zero-padded planes are used: stride 1, padding under the filter
    /// size (so the data gradient's padding, `k − 1 − pad`, is not negative).
    fn by_rows(g: &Geom) -> bool {
        g.stride == 1 && g.pad < g.kh && g.pad < g.kw
    }

    /// A 1×1 filter over whole planes: each output one tap.
    fn pointwise(g: &Geom) -> bool {
        g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad == 0
    }

    /// `out = 0 + w·x`, the sum from zero of a single tap; with `ADD`, that sum is added to
    /// `out` instead.
    #[inline(always)]
    fn scale_from_zero<const ADD: bool>(w: f32, x: &[f32], out: &mut [f32]) {
        if ADD {
            out.iter_mut().zip(x).for_each(|(o, &v)| *o += 0.0 + w * v);
        } else {
            out.iter_mut().zip(x).for_each(|(o, &v)| *o = 0.0 + w * v);
        }
    }

    /// Channels per filter-gradient task: each task reads runs of this many consecutive planes.
    const CHANNELS_PER_TASK: usize = 8;

    /// Per-worker scratch: the larger of a zero-padded input plane and a zero-padded `dy` plane,
    /// then a filter-gradient task's tap sums, for a pair of filters.
    pub(super) fn scratch_len(g: &Geom) -> usize {
        plane_len(g) + 2 * CHANNELS_PER_TASK * g.kh * g.kw * LANES
    }

    /// A zero-padded plane; without one, an output plane (the second sum of a pair).
    fn plane_len(g: &Geom) -> usize {
        if !by_rows(g) {
            return g.p();
        }
        let input = (g.h + 2 * g.pad) * (g.w + 2 * g.pad);
        let grad = (g.ho + 2 * (g.kh - 1 - g.pad)) * (g.wo + 2 * (g.kw - 1 - g.pad));
        input.max(grad)
    }

    /// Zero-padded copies of planes of rows of `w`: `top` zero rows and `left` zero columns
    /// before each plane, in rows of `width` with zeros after. The padding is zeroed once; each
    /// plane overwrites only the inside.
    struct Padded<'a> {
        buf: &'a mut [f32],
        w: usize,
        top: usize,
        left: usize,
        width: usize,
    }

    impl<'a> Padded<'a> {
        #[inline(always)]
        fn new(buf: &'a mut [f32], (h, w): (usize, usize), (top, left): (usize, usize)) -> Self {
            let (width, rows) = (w + 2 * left, h + 2 * top);
            let buf = if top == 0 && left == 0 { &mut buf[..0] } else { &mut buf[..rows * width] };
            buf.fill(0.0);
            Padded { buf, w, top, left, width }
        }

        /// The plane `x`, padded; `x` itself when nothing is padded.
        #[inline(always)]
        fn plane<'s>(&'s mut self, x: &'s [f32]) -> &'s [f32] {
            if self.buf.is_empty() {
                return x;
            }
            for (r, row) in x.chunks_exact(self.w).enumerate() {
                super::copy_run(&mut self.buf[(r + self.top) * self.width + self.left..][..self.w], row);
            }
            self.buf
        }
    }

    /// The offsets of the taps (row-major) in a plane of rows of `width`.
    #[inline(always)]
    fn offsets(g: &Geom, width: usize) -> [usize; MAX_TAPS] {
        let mut offsets = [0; MAX_TAPS];
        for (t, off) in offsets.iter_mut().enumerate().take(g.kh * g.kw) {
            *off = t / g.kw * width + t % g.kw;
        }
        offsets
    }

    /// `out[i][j] = Σ_t w_t · src[i·width + j + off_t]` over the taps in order, from zero, one
    /// multiply and one add each, for rows of `cols` outputs. Each block of outputs along a row
    /// is summed in registers; a row's last block may overlap the one before, recomputing the
    /// same values, so every path and block width gives the same bits. With `ADD`, each sum is
    /// added to `out` instead of stored (a row's overlapping last block adds only its new
    /// outputs).
    #[inline(always)]
    fn correlate<const ADD: bool>(
        src: &[f32],
        width: usize,
        offsets: &[usize],
        weights: &[f32],
        out: &mut [f32],
        cols: usize,
    ) {
        // 3×3 filters (ConvAct's) with the taps unrolled and their weights in registers.
        if let (Ok(offsets), Ok(weights)) = (<&[usize; 9]>::try_from(offsets), <&[f32; 9]>::try_from(weights)) {
            return match cols {
                16.. => blocks::<16, 9, ADD>(src, width, offsets, weights, out, cols),
                8.. => blocks::<8, 9, ADD>(src, width, offsets, weights, out, cols),
                4.. => blocks::<4, 9, ADD>(src, width, offsets, weights, out, cols),
                _ => blocks::<1, 9, ADD>(src, width, offsets, weights, out, cols),
            };
        }
        match cols {
            16.. => blocks::<16, 0, ADD>(src, width, offsets, weights, out, cols),
            8.. => blocks::<8, 0, ADD>(src, width, offsets, weights, out, cols),
            4.. => blocks::<4, 0, ADD>(src, width, offsets, weights, out, cols),
            _ => blocks::<1, 0, ADD>(src, width, offsets, weights, out, cols),
        }
    }

    /// A block's sums into `dst`: stored, or with `ADD` added to all but the first `done`
    /// outputs (those of an overlapping last block that the previous block added already; a
    /// select per lane keeps them, so the block stays in one register).
    #[inline(always)]
    fn put<const L: usize, const ADD: bool>(dst: &mut [f32], acc: [f32; L], done: usize) {
        if let Ok(dst) = <&mut [f32; L]>::try_from(dst) {
            if ADD {
                for (l, (d, &a)) in dst.iter_mut().zip(&acc).enumerate() {
                    let sum = *d + a;
                    *d = if l < done { *d } else { sum };
                }
            } else {
                *dst = acc;
            }
        }
    }

    /// [`correlate`] in blocks of `L` outputs, for `K` taps (any number when `K` is 0).
    #[inline(always)]
    fn blocks<const L: usize, const K: usize, const ADD: bool>(
        src: &[f32],
        width: usize,
        offsets: &[usize],
        weights: &[f32],
        out: &mut [f32],
        cols: usize,
    ) {
        let taps = if K == 0 { offsets.len() } else { K };
        let (offsets, weights) = (&offsets[..taps], &weights[..taps]);
        for (i, row) in out.chunks_exact_mut(cols).enumerate() {
            let src = &src[i * width..];
            let mut j = 0;
            while j < cols {
                let j0 = j.min(cols - L);
                let mut acc = [0.0f32; L];
                for (&off, &w) in offsets.iter().zip(weights) {
                    // `L` long, so the loop below needs no bounds checks.
                    let v = &src[j0 + off..][..L];
                    for (acc, &v) in acc.iter_mut().zip(v) {
                        *acc += w * v;
                    }
                }
                put::<L, ADD>(&mut row[j0..j0 + L], acc, j - j0);
                j += L;
            }
        }
    }

    /// For kernel column `b`: the output columns `lo..hi` whose input column is inside the
    /// plane, and that input column for `lo`.
    fn columns(g: &Geom, b: usize) -> (usize, usize, usize) {
        let lo = (g.pad.saturating_sub(b)).div_ceil(g.stride).min(g.wo);
        let hi = ((g.w + g.pad).saturating_sub(b)).div_ceil(g.stride).min(g.wo).max(lo);
        (lo, hi, (lo * g.stride + b).saturating_sub(g.pad))
    }

    /// One tap applied to one output row: its output row `i`, the input row it reads, its
    /// index in the filter, the output columns `lo..hi` and the input column of `lo`.
    struct Tap {
        i: usize,
        input_row: usize,
        index: usize,
        lo: usize,
        hi: usize,
        first: usize,
    }

    /// Every tap of every output row whose input row is inside the plane: output rows in order,
    /// then the filter's taps in row-major order.
    #[inline(always)]
    fn each_tap(g: &Geom, mut f: impl FnMut(Tap)) {
        // The columns of each kernel column, worked out once (they involve divisions).
        let mut spans = [(0, 0, 0); MAX_TAPS];
        for (b, span) in spans.iter_mut().enumerate().take(g.kw) {
            *span = columns(g, b);
        }
        for i in 0..g.ho {
            let (a0, a1) = g.taps(i, g.kh, g.h);
            for a in a0..a1 {
                for (b, &(lo, hi, first)) in spans.iter().enumerate().take(g.kw) {
                    f(Tap { i, input_row: i * g.stride + a - g.pad, index: a * g.kw + b, lo, hi, first });
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    /// The sum of the convolutions of `inputs` (inputs and filters; one, or a pair), each
    /// summed from zero, then the bias and activation.
    pub(super) fn forward(
        par: Par,
        g: &Geom,
        inputs: &[(&[f32], &[f32])],
        bias: Option<&[f32]>,
        act: Option<UnaryFn>,
        y: &mut [f32],
        pre: Option<&mut [f32]>,
        scratch: &Scratch<'_>,
    ) {
        let per = planes_per_task(g.p());
        par.chunks_mut_beside(y, per * g.p(), pre, |t, y, pre, worker| {
            // SAFETY: `worker` comes from `Par`, which runs one task per worker at a time.
            let padded = unsafe { scratch.worker(worker) };
            wide!(par.isa(), fn(
                g: &Geom = g, inputs: &[(&[f32], &[f32])] = inputs, bias: Option<&[f32]> = bias,
                act: Option<UnaryFn> = act, y: &mut [f32] = y, pre: Option<&mut [f32]> = pre,
                padded: &mut [f32] = padded, first: usize = t * per,
            ) {
                forward_planes(g, inputs, bias, act, y, pre, padded, first)
            });
        });
    }

    /// The outputs of consecutive planes from plane `first`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn forward_planes(
        g: &Geom,
        inputs: &[(&[f32], &[f32])],
        bias: Option<&[f32]>,
        act: Option<UnaryFn>,
        y: &mut [f32],
        pre: Option<&mut [f32]>,
        scratch: &mut [f32],
        first: usize,
    ) {
        let (hw, p, k) = (g.h * g.w, g.p(), g.kh * g.kw);
        let mut pre = pre.map(|pre| pre.chunks_mut(p));
        let rows = by_rows(g);
        // Whole rows use a zero-padded plane; taps along rows sum a pair's second in `extra`.
        let (padded, extra) = scratch.split_at_mut(if rows { plane_len(g) } else { 0 });
        let mut padded = Padded::new(padded, (g.h, g.w), if rows { (g.pad, g.pad) } else { (0, 0) });
        let offsets = offsets(g, padded.width);
        let offsets = &offsets[..k];
        for (q, y) in y.chunks_mut(p).enumerate() {
            let plane = first + q;
            let channel = plane % g.c;
            for (i, &(x, weights)) in inputs.iter().enumerate() {
                let (x, w) = (&x[plane * hw..][..hw], &weights[channel * k..][..k]);
                if i == 0 {
                    plane_outputs::<false>(g, x, w, &mut padded, offsets, extra, y);
                } else {
                    plane_outputs::<true>(g, x, w, &mut padded, offsets, extra, y);
                }
            }
            if bias.is_some() || act.is_some() {
                let pre = pre.as_mut().and_then(Iterator::next);
                bias_act_rows(y, pre, p, bias.map(|b| &b[channel..channel + 1]), act);
            }
        }
    }

    /// One plane's outputs from input plane `x` and filter `w`, into `y` or with `ADD` added
    /// to it: over whole rows of the zero-padded plane where the geometry allows, else tap by
    /// tap (then through `extra` when adding, so that the sum is still summed from zero).
    #[inline(always)]
    fn plane_outputs<const ADD: bool>(
        g: &Geom,
        x: &[f32],
        w: &[f32],
        padded: &mut Padded<'_>,
        offsets: &[usize],
        extra: &mut [f32],
        y: &mut [f32],
    ) {
        if pointwise(g) {
            scale_from_zero::<ADD>(w[0], x, y);
        } else if by_rows(g) {
            let width = padded.width;
            correlate::<ADD>(padded.plane(x), width, offsets, w, y, g.wo);
        } else if ADD {
            let sum = &mut extra[..y.len()];
            forward_taps(g, x, w, sum);
            y.iter_mut().zip(&*sum).for_each(|(y, &s)| *y += s);
        } else {
            forward_taps(g, x, w, y);
        }
    }

    /// One plane's outputs, tap by tap along whole output rows (any stride).
    #[inline(always)]
    fn forward_taps(g: &Geom, x: &[f32], w: &[f32], y: &mut [f32]) {
        y.fill(0.0);
        each_tap(
            g,
            #[inline(always)]
            |t| {
                let row = &x[t.input_row * g.w..][..g.w];
                let (tap, y) = (w[t.index], &mut y[t.i * g.wo..][t.lo..t.hi]);
                match g.stride {
                    1 => y.iter_mut().zip(&row[t.first..]).for_each(|(y, &v)| *y += tap * v),
                    s => y.iter_mut().zip(row[t.first..].iter().step_by(s)).for_each(|(y, &v)| *y += tap * v),
                }
            },
        );
    }

    /// Each output's gradient times each tap, added to the input it read: per filter of
    /// `weights` (one, or a pair), into `dx` and then `second`.
    pub(super) fn backward_data(
        par: Par,
        g: &Geom,
        dy: &[f32],
        weights: &[&[f32]],
        dx: &mut [f32],
        second: Option<&mut [f32]>,
        scratch: &Scratch<'_>,
    ) {
        let per = planes_per_task(g.h * g.w);
        par.chunks_mut_beside(dx, per * g.h * g.w, second, |t, dx, second, worker| {
            // SAFETY: as in `forward`.
            let padded = unsafe { scratch.worker(worker) };
            wide!(par.isa(), fn(
                g: &Geom = g, dy: &[f32] = dy, weights: &[&[f32]] = weights, dx: &mut [f32] = dx,
                second: Option<&mut [f32]> = second, padded: &mut [f32] = padded, first: usize = t * per,
            ) {
                backward_data_planes(g, dy, weights, dx, second, padded, first)
            });
        });
    }

    /// The input gradients of consecutive planes from plane `first`.
    #[inline(always)]
    fn backward_data_planes(
        g: &Geom,
        dy: &[f32],
        weights: &[&[f32]],
        dx: &mut [f32],
        second: Option<&mut [f32]>,
        padded: &mut [f32],
        first: usize,
    ) {
        let (hw, p, k) = (g.h * g.w, g.p(), g.kh * g.kw);
        let rows = by_rows(g);
        // Input (r, c) gathers dy(r + pad − a, c + pad − b) · w(a, b) in the order the
        // tap-by-tap scatter adds them: rows of dy in order (a falling), then b rising; in the
        // padded dy that tap is at ((kh − 1 − a), (kw − 1 − b)).
        let margins = if rows { (g.kh - 1 - g.pad, g.kw - 1 - g.pad) } else { (0, 0) };
        let mut padded = Padded::new(padded, (g.ho, g.wo), margins);
        let width = padded.width;
        let (mut offsets, mut order) = ([0; MAX_TAPS], [0; MAX_TAPS]);
        let taps = (0..g.kh).rev().flat_map(|a| (0..g.kw).map(move |b| (a, b)));
        for ((off, index), (a, b)) in offsets.iter_mut().zip(&mut order).zip(taps) {
            (*off, *index) = ((g.kh - 1 - a) * width + g.kw - 1 - b, a * g.kw + b);
        }
        let mut second = second.map(|dx| dx.chunks_mut(hw));
        for (q, dx) in dx.chunks_mut(hw).enumerate() {
            let plane = first + q;
            let dy = &dy[plane * p..][..p];
            let src = padded.plane(dy);
            let outputs = std::iter::once(dx).chain(second.as_mut().and_then(Iterator::next));
            for (weights, dx) in weights.iter().zip(outputs) {
                let w = &weights[plane % g.c * k..][..k];
                if pointwise(g) {
                    scale_from_zero::<false>(w[0], dy, dx);
                } else if rows {
                    let mut turned = [0.0; MAX_TAPS];
                    for (v, &index) in turned.iter_mut().zip(&order[..k]) {
                        *v = w[index];
                    }
                    correlate::<false>(src, width, &offsets[..k], &turned[..k], dx, g.w);
                } else {
                    backward_data_taps(g, dy, w, dx);
                }
            }
        }
    }

    /// One plane's input gradient, tap by tap along whole output rows (any stride).
    #[inline(always)]
    fn backward_data_taps(g: &Geom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
        dx.fill(0.0);
        each_tap(
            g,
            #[inline(always)]
            |t| {
                let row = &mut dx[t.input_row * g.w..][..g.w];
                let (tap, dy) = (w[t.index], &dy[t.i * g.wo..][t.lo..t.hi]);
                match g.stride {
                    1 => row[t.first..].iter_mut().zip(dy).for_each(|(v, &d)| *v += tap * d),
                    s => row[t.first..].iter_mut().step_by(s).zip(dy).for_each(|(v, &d)| *v += tap * d),
                }
            },
        );
    }

    /// Per channel and tap, the sum over the examples and output positions of the output's
    /// gradient times the input it read: per input of `x` (one, or a pair), into `dw` and
    /// then `second`.
    // (The allowance covers the path functions `wide!` writes.)
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_filter(
        par: Par,
        g: &Geom,
        x: &[&[f32]],
        dy: &[f32],
        dw: &mut [f32],
        second: Option<&mut [f32]>,
        scratch: &Scratch<'_>,
    ) {
        let k = g.kh * g.kw;
        par.chunks_mut_beside(dw, CHANNELS_PER_TASK * k, second, |t, dw, second, worker| {
            // SAFETY: as in `forward`.
            let (padded, sums) = unsafe { scratch.worker(worker) }.split_at_mut(plane_len(g));
            let (sums, _) = sums.as_chunks_mut::<LANES>();
            wide!(par.isa(), fn(
                g: &Geom = g, x: &[&[f32]] = x, dy: &[f32] = dy, dw: &mut [f32] = dw,
                second: Option<&mut [f32]> = second, padded: &mut [f32] = padded,
                sums: &mut [[f32; LANES]] = &mut sums[..dw.len() * x.len()], first: usize = t * CHANNELS_PER_TASK,
            ) {
                filter_channels(g, x, dy, dw, second, padded, sums, first)
            });
        });
    }

    /// The filter gradients of consecutive channels from channel `first`, whose tap sums are
    /// `sums` (per input, the channels' sums). The planes are read in memory order (examples,
    /// then the channels). With whole rows, lane `j % LANES` of a tap's sums takes output
    /// column `j` of every row; otherwise the columns of the tap's span in turn.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn filter_channels(
        g: &Geom,
        inputs: &[&[f32]],
        dy: &[f32],
        dw: &mut [f32],
        second: Option<&mut [f32]>,
        padded: &mut [f32],
        sums: &mut [[f32; LANES]],
        first: usize,
    ) {
        let (hw, p, k) = (g.h * g.w, g.p(), g.kh * g.kw);
        sums.fill([0.0; LANES]);
        let rows = by_rows(g);
        let mut padded = Padded::new(padded, (g.h, g.w), if rows { (g.pad, g.pad) } else { (0, 0) });
        let width = padded.width;
        let offsets = offsets(g, width);
        let per_input = dw.len();
        for n in 0..g.n {
            for c in 0..per_input / k {
                let plane = n * g.c + first + c;
                let dy = &dy[plane * p..][..p];
                for (i, x) in inputs.iter().enumerate() {
                    let sums = &mut sums[i * per_input + c * k..][..k];
                    let x = &x[plane * hw..][..hw];
                    if pointwise(g) && g.wo == 1 {
                        // One position per row: lane 0 only.
                        sums[0][0] = dy.iter().zip(x).fold(sums[0][0], |s, (&d, &v)| s + d * v);
                    } else if rows {
                        let src = padded.plane(x);
                        let offsets = &offsets[..k];
                        match <&[usize; 9]>::try_from(offsets) {
                            Ok(offsets) => plane_sums(sums, dy, src, width, offsets, g.wo),
                            Err(_) => {
                                for (sums, &off) in sums.iter_mut().zip(offsets) {
                                    plane_sums(std::slice::from_mut(sums), dy, src, width, &[off], g.wo);
                                }
                            }
                        }
                    } else {
                        tap_sums(g, sums, dy, x);
                    }
                }
            }
        }
        let outputs = std::iter::once(dw).chain(second);
        for (dw, sums) in outputs.zip(sums.chunks_exact(per_input)) {
            for (dw, lanes) in dw.iter_mut().zip(sums) {
                *dw = lanes.iter().fold(0.0, |s, &v| s + v);
            }
        }
    }

    /// One plane's products added to its tap sums, tap by tap along the spans (any stride).
    #[inline(always)]
    fn tap_sums(g: &Geom, sums: &mut [[f32; LANES]], dy: &[f32], x: &[f32]) {
        each_tap(
            g,
            #[inline(always)]
            |t| {
                let row = &x[t.input_row * g.w..][..g.w];
                let (lanes, dy) = (&mut sums[t.index], &dy[t.i * g.wo..][t.lo..t.hi]);
                match g.stride {
                    1 => add_products(lanes, dy, &row[t.first..]),
                    s => {
                        let inputs = row[t.first..].iter().step_by(s);
                        for (j, (&d, &v)) in dy.iter().zip(inputs).enumerate() {
                            lanes[j % LANES] += d * v;
                        }
                    }
                }
            },
        );
    }

    /// Per channel, the sum of `dy` over the examples and positions: planes in example order,
    /// each in eight lanes.
    pub(super) fn bias_gradient(par: Par, g: &Geom, dy: &[f32], db: &mut [f32]) {
        let p = g.p();
        par.chunks_mut(db, 1, |channel, db, _| {
            db[0] = (0..g.n).fold(0.0, |sum, n| sum + lane_sum(&dy[(n * g.c + channel) * p..][..p]));
        });
    }

    /// For each of `K` taps, `sums[t][j % LANES] += dy[i][j] · src[i·width + j + offsets[t]]`
    /// along the rows `i` of `dy` (of `wo`), in order: the taps side by side in registers, so
    /// that their chains of additions overlap.
    #[inline(always)]
    fn plane_sums<const K: usize>(
        sums: &mut [[f32; LANES]],
        dy: &[f32],
        src: &[f32],
        width: usize,
        offsets: &[usize; K],
        wo: usize,
    ) {
        let mut acc: [[f32; LANES]; K] = std::array::from_fn(|t| sums[t]);
        let (full, rest) = (wo / LANES * LANES, wo % LANES);
        for (i, d) in dy.chunks_exact(wo).enumerate() {
            let row = &src[i * width..];
            for j in (0..full).step_by(LANES) {
                let d = &d[j..j + LANES];
                for (lanes, &off) in acc.iter_mut().zip(offsets) {
                    let v = &row[off + j..][..LANES];
                    for ((lane, &d), &v) in lanes.iter_mut().zip(d).zip(v) {
                        *lane += d * v;
                    }
                }
            }
            if rest > 0 {
                for (t, lanes) in acc.iter_mut().enumerate() {
                    add_products(lanes, &d[full..], &row[offsets[t] + full..]);
                }
            }
        }
        sums[..K].copy_from_slice(&acc);
    }

    /// `lanes[j % LANES] += d[j] · v[j]` for every `j` of `d`, in order of `j`.
    #[inline(always)]
    fn add_products(lanes: &mut [f32; LANES], d: &[f32], v: &[f32]) {
        let v = &v[..d.len()];
        let (mut d, mut v) = (d.chunks_exact(LANES), v.chunks_exact(LANES));
        for (d, v) in (&mut d).zip(&mut v) {
            for l in 0..LANES {
                lanes[l] += d[l] * v[l];
            }
        }
        // The rest through a block padded with zeros, so that every lane has a fixed register:
        // a lane past the rest adds 0·0 = +0, which leaves a sum from zero unchanged.
        let (mut dr, mut vr) = ([0.0f32; LANES], [0.0f32; LANES]);
        if !d.remainder().is_empty() {
            dr[..d.remainder().len()].copy_from_slice(d.remainder());
            vr[..v.remainder().len()].copy_from_slice(v.remainder());
            for l in 0..LANES {
                lanes[l] += dr[l] * vr[l];
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn whole_rows_of_padded_planes_give_the_tap_by_tap_sums_bit_for_bit() {
            // (h, w, kh, kw, pad): ConvAct's 3×3, rows of 24, 8, 5 and 2 outputs (every block
            // width), a pointwise filter, a non-square one.
            let cases = [
                (24, 24, 3, 3, 1),
                (8, 8, 3, 3, 1),
                (5, 7, 3, 3, 0),
                (3, 2, 3, 3, 1),
                (4, 4, 1, 1, 0),
                (6, 9, 3, 5, 2),
            ];
            for (h, w, kh, kw, pad) in cases {
                let (ho, wo) = (h + 2 * pad - kh + 1, w + 2 * pad - kw + 1);
                let g = Geom { n: 1, c: 1, h, w, o: 1, kh, kw, ho, wo, stride: 1, pad, groups: 1 };
                assert!(by_rows(&g), "{g:?}");
                let x: Vec<f32> = (0..h * w).map(|i| ((i * 7919) % 1009) as f32 / 101.0 - 4.9).collect();
                let dy: Vec<f32> = (0..ho * wo).map(|i| ((i * 104_729) % 991) as f32 / 97.0 - 5.1).collect();
                let k: Vec<f32> = (0..kh * kw).map(|i| ((i * 31) % 97) as f32 / 41.0 - 1.2).collect();
                let mut padded = vec![f32::NAN; scratch_len(&g)];
                let (mut rows, mut taps) = (vec![f32::NAN; ho * wo], vec![f32::NAN; ho * wo]);
                forward_planes(&g, &[(&x, &k)], None, None, &mut rows, None, &mut padded, 0);
                forward_taps(&g, &x, &k, &mut taps);
                assert_eq!(bits(&rows), bits(&taps), "forward {g:?}");
                let (mut rows, mut taps) = (vec![f32::NAN; h * w], vec![f32::NAN; h * w]);
                backward_data_planes(&g, &dy, &[&k], &mut rows, None, &mut padded, 0);
                backward_data_taps(&g, &dy, &k, &mut taps);
                assert_eq!(bits(&rows), bits(&taps), "data gradient {g:?}");
            }
        }

        fn bits(values: &[f32]) -> Vec<u32> {
            values.iter().map(|v| v.to_bits()).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::Isa;

    fn geom(c: usize, h: usize, w: usize, k: usize, stride: usize, pad: usize, groups: usize) -> Geom {
        let ho = (h + 2 * pad - k) / stride + 1;
        let wo = (w + 2 * pad - k) / stride + 1;
        Geom { n: 3, c, h, w, o: groups, kh: k, kw: k, ho, wo, stride, pad, groups }
    }

    /// Row `r` = (channel, kernel row, kernel column), position `q` of example `i`'s im2col.
    fn element(g: &Geom, x: &[f32], i: usize, r: usize, q: usize) -> f32 {
        let (ci, a, b) = (r / (g.kh * g.kw), r / g.kw % g.kh, r % g.kw);
        let (oh, ow) = (q / g.wo, q % g.wo);
        let ih = (oh * g.stride + a) as isize - g.pad as isize;
        let iw = (ow * g.stride + b) as isize - g.pad as isize;
        if ih < 0 || iw < 0 || ih as usize >= g.h || iw as usize >= g.w {
            return 0.0;
        }
        x[i * g.x_len() + (ci * g.h + ih as usize) * g.w + iw as usize]
    }

    #[test]
    fn depthwise_windows_and_both_gradients_match_the_im2col_definition() {
        // (c, h, w, k, stride, pad): padded, strided, pointwise, a filter wider than the plane.
        for (c, h, w, k, s, pad) in [(3, 7, 6, 3, 2, 1), (4, 5, 5, 3, 1, 1), (2, 6, 6, 1, 1, 0), (2, 2, 3, 5, 1, 2)] {
            let g = geom(c, h, w, k, s, pad, c);
            assert!(g.depthwise());
            // More taps than the stack holds: the GEMM path.
            assert!(!geom(c, h + 8, w + 8, 9, 1, 4, c).depthwise());
            let x: Vec<f32> = (0..g.n * g.x_len()).map(|i| ((i * 7919) % 23) as f32 - 11.0).collect();
            let weights: Vec<f32> = (0..c * k * k).map(|i| ((i * 31) % 7) as f32 - 3.0).collect();
            let mut y = vec![f32::NAN; g.n * g.y_len()];
            let mut memory = vec![f32::NAN; depthwise::scratch_len(&g) * 2];
            for threads in [1, 2] {
                let scratch = Scratch::new(&mut memory, threads);
                depthwise::forward(Par::new(threads), &g, &[(&x, &weights)], None, None, &mut y, None, &scratch);
                for (e, y) in y.chunks(g.y_len()).enumerate() {
                    for (q, &v) in y.iter().enumerate() {
                        let (ch, pos) = (q / g.p(), q % g.p());
                        let want: f32 =
                            (0..k * k).map(|t| weights[ch * k * k + t] * element(&g, &x, e, ch * k * k + t, pos)).sum();
                        assert_eq!(v, want, "{g:?} example {e} output {q}");
                    }
                }
            }
            // <forward(x), d> = <x, backward_data(d)> (small integers: exact in f32).
            let d: Vec<f32> = (0..y.len()).map(|i| ((i * 13) % 5) as f32 - 2.0).collect();
            let mut dx = vec![f32::NAN; x.len()];
            depthwise::backward_data(Par::new(2), &g, &d, &[&weights], &mut dx, None, &Scratch::new(&mut memory, 2));
            let lhs: f32 = y.iter().zip(&d).map(|(a, b)| a * b).sum();
            let rhs: f32 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs, "{g:?}");
            // dW[c, t] = Σ over examples and positions of d times the input the tap read.
            let mut dw = vec![f32::NAN; weights.len()];
            for threads in [1, 2] {
                let scratch = Scratch::new(&mut memory, threads);
                depthwise::backward_filter(Par::new(threads), &g, &[&x], &d, &mut dw, None, &scratch);
                for (r, &v) in dw.iter().enumerate() {
                    let (ch, t) = (r / (k * k), r % (k * k));
                    let want: f32 = (0..g.n)
                        .flat_map(|e| (0..g.p()).map(move |q| (e, q)))
                        .map(|(e, q)| d[e * g.y_len() + ch * g.p() + q] * element(&g, &x, e, ch * k * k + t, q))
                        .sum();
                    assert_eq!(v, want, "{g:?} dW[{r}]");
                }
            }
        }
    }

    #[test]
    fn a_pair_of_depthwise_convolutions_and_their_gradients_give_each_ones_bits() {
        // (c, h, w, k, stride, pad): whole rows with a last block overlapping the one before
        // (21 columns) and narrower than any block, pointwise, taps along rows (stride 2).
        for (c, h, w, k, s, pad) in [(3, 9, 21, 3, 1, 1), (2, 5, 3, 3, 1, 1), (4, 6, 6, 1, 1, 0), (3, 7, 6, 3, 2, 1)] {
            let g = geom(c, h, w, k, s, pad, c);
            let plans = [g.forward_plan(), g.data_plan(), g.filter_plan(false)];
            let numbers = |len: usize, seed: usize| -> Vec<f32> {
                (0..len).map(|i| ((i * 7919 + seed) % 1009) as f32 / 101.0 - 4.9).collect()
            };
            let (x1, x2, dy) = (numbers(g.n * g.x_len(), 0), numbers(g.n * g.x_len(), 5), numbers(g.n * g.y_len(), 9));
            let (w1, w2) = (numbers(c * k * k, 3), numbers(c * k * k, 11));
            for isa in Isa::ALL.into_iter().filter(|isa| isa.is_available()) {
                for threads in [1, 2] {
                    let par = Par::new(threads).with_isa(isa);
                    let most = plans.iter().map(Plan::worker_scratch).max().unwrap_or(0);
                    let mut memory = vec![f32::NAN; most * threads];
                    let scratch = Scratch::new(&mut memory, threads);
                    let on = format!("{g:?} on {isa} with {threads} threads");
                    let each = |x: &[f32], w: &[f32]| {
                        let mut y = vec![f32::NAN; dy.len()];
                        forward(par, &plans[0], x, w, None, None, &mut y, None, &scratch);
                        y
                    };
                    let sum: Vec<f32> = each(&x1, &w1).iter().zip(each(&x2, &w2)).map(|(a, b)| a + b).collect();
                    let mut y = vec![f32::NAN; sum.len()];
                    forward_pair(par, &plans[0], (&x1, &w1), (&x2, &w2), &mut y, &scratch);
                    assert_eq!(bits(&y), bits(&sum), "forward, {on}");

                    let data = |w: &[f32]| {
                        let mut dx = vec![f32::NAN; x1.len()];
                        backward_data(par, &plans[1], &dy, w, &mut dx, &scratch);
                        dx
                    };
                    let (mut dx1, mut dx2) = (vec![f32::NAN; x1.len()], vec![f32::NAN; x1.len()]);
                    backward_data_pair(par, &plans[1], &dy, (&w1, &w2), (&mut dx1, &mut dx2), &scratch);
                    assert_eq!((bits(&dx1), bits(&dx2)), (bits(&data(&w1)), bits(&data(&w2))), "data, {on}");

                    let filter = |x: &[f32]| {
                        let mut dw = vec![f32::NAN; w1.len()];
                        backward_filter(par, &plans[2], x, &dy, &mut dw, None, &mut [], &scratch);
                        dw
                    };
                    let (mut dw1, mut dw2) = (vec![f32::NAN; w1.len()], vec![f32::NAN; w1.len()]);
                    backward_filter_pair(par, &plans[2], (&x1, &x2), &dy, (&mut dw1, &mut dw2), &scratch);
                    assert_eq!((bits(&dw1), bits(&dw2)), (bits(&filter(&x1)), bits(&filter(&x2))), "filter, {on}");
                }
            }
        }
    }

    #[test]
    fn few_channel_convolutions_compute_the_gemms_fused_sums_on_every_path() {
        // (c, h, w, k, pad, filters): LeNet's and CIFAR's first layers, a row narrower than a
        // block, filters not a multiple of any register block.
        for (c, h, w, k, pad, o) in
            [(1, 28, 28, 5, 0, 20), (3, 12, 12, 5, 2, 32), (2, 9, 11, 3, 1, 7), (1, 6, 40, 3, 0, 13)]
        {
            let g = Geom { o, ..geom(c, h, w, k, 1, pad, 1) };
            assert!(g.few_channels(), "{g:?}");
            let x: Vec<f32> = (0..g.n * g.x_len()).map(|i| ((i * 7919) % 1009) as f32 / 101.0 - 4.9).collect();
            let weights: Vec<f32> = (0..o * g.ck()).map(|i| ((i * 31) % 97) as f32 / 41.0 - 1.2).collect();
            // The GEMM's order: each output fused from zero over the taps in order, padding as zeros.
            let mut want = vec![0.0f32; g.n * g.y_len()];
            for (e, y) in want.chunks_mut(g.y_len()).enumerate() {
                for (q, v) in y.iter_mut().enumerate() {
                    let (filter, pos) = (q / g.p(), q % g.p());
                    *v = (0..g.ck())
                        .fold(0.0f32, |acc, r| weights[filter * g.ck() + r].mul_add(element(&g, &x, e, r, pos), acc));
                }
            }
            let plan = g.forward_plan();
            for isa in Isa::ALL.into_iter().filter(|isa| isa.is_available()) {
                for threads in [1, 2] {
                    let par = Par::new(threads).with_isa(isa);
                    let mut memory = vec![0.0; plan.worker_scratch() * threads];
                    let scratch = Scratch::new(&mut memory, threads);
                    let mut y = vec![f32::NAN; want.len()];
                    forward(par, &plan, &x, &weights, None, None, &mut y, None, &scratch);
                    assert_eq!(bits(&y), bits(&want), "{g:?} on {isa} with {threads} threads");
                }
            }
        }
    }

    #[test]
    fn a_kept_pre_activation_is_the_biased_output_on_every_path() {
        // GEMM through the staging block, GEMM writing in place (one position per filter),
        // few input channels, depthwise.
        let cases = [
            Geom { o: 6, ..geom(8, 9, 9, 3, 1, 1, 1) },
            Geom { o: 6, ..geom(5, 4, 4, 4, 1, 0, 1) },
            Geom { o: 7, ..geom(1, 12, 12, 5, 1, 0, 1) },
            geom(3, 7, 6, 3, 2, 1, 3),
        ];
        for g in cases {
            let plan = g.forward_plan();
            let x: Vec<f32> = (0..g.n * g.x_len()).map(|i| ((i * 7919) % 1009) as f32 / 101.0 - 4.9).collect();
            let weights: Vec<f32> = (0..g.o * g.kg()).map(|i| ((i * 31) % 97) as f32 / 41.0 - 1.2).collect();
            let bias: Vec<f32> = (0..g.o).map(|o| o as f32 * 0.7 - 2.0).collect();
            for threads in [1, 2] {
                let par = Par::new(threads);
                let mut memory = vec![0.0; plan.worker_scratch() * threads];
                let scratch = Scratch::new(&mut memory, threads);
                let run = |act: Option<UnaryFn>, pre: Option<&mut [f32]>| {
                    let mut y = vec![f32::NAN; g.n * g.y_len()];
                    forward(par, &plan, &x, &weights, Some(&bias), act, &mut y, pre, &scratch);
                    y
                };
                let (biased, activated) = (run(None, None), run(Some(UnaryFn::Tanh), None));
                let mut pre = vec![f32::NAN; biased.len()];
                let both = run(Some(UnaryFn::Tanh), Some(&mut pre));
                assert_eq!(bits(&pre), bits(&biased), "{g:?}, {threads} threads");
                assert_eq!(bits(&both), bits(&activated), "{g:?}, {threads} threads");
            }
        }
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn chunks_cover_the_batch_once() {
        // (c, h, w, k, stride, pad): 576, 64, 9 and 1 positions per example.
        for (c, h, w, k, s, pad) in
            [(8, 28, 28, 5, 1, 0), (20, 12, 12, 5, 1, 0), (3, 5, 5, 3, 1, 0), (3, 3, 3, 3, 3, 1)]
        {
            for n in [1, 7, 100, 300, 1000] {
                let g = Geom { n, ..geom(c, h, w, k, s, pad, 1) };
                for plan in [g.forward_plan(), g.filter_plan(false), g.filter_plan(true)] {
                    assert!(plan.tasks * plan.chunk >= n && (plan.tasks - 1) * plan.chunk < n, "{g:?} {plan:?}");
                }
            }
        }
    }

    #[test]
    fn a_padded_copy_gives_the_same_im2col_matrix() {
        for (c, h, w, k, pad) in [(2, 7, 6, 3, 1), (3, 5, 9, 5, 2), (1, 4, 4, 3, 2)] {
            let g = geom(c, h, w, k, 1, pad, 1);
            assert!(g.pads_input());
            let x: Vec<f32> = (0..3 * g.x_len()).map(|i| i as f32 * 0.5 - 3.0).collect();
            let (b0, cn) = (1, 2);
            let len = (cn * g.p()).next_multiple_of(PANEL) * g.ck();
            let (mut direct, mut through_copy) = (vec![f32::NAN; len], vec![f32::NAN; len]);
            g.im2col_panels(&x, b0, cn, &mut direct);
            let mut padded = vec![f32::NAN; g.padded_input_len(cn)];
            g.im2col_chunk(&x, b0, cn, &mut through_copy, &mut padded);
            assert_eq!(bits(&through_copy), bits(&direct), "{g:?}");
        }
    }

    #[test]
    fn im2col_panels_hold_the_window_elements_and_col2im_is_the_adjoint() {
        let configs = [
            (1, 5, 4, 3, 1, 1, 1),
            (2, 7, 6, 3, 2, 1, 1),
            (1, 4, 4, 2, 2, 0, 1),
            (3, 5, 5, 5, 3, 2, 1),
            (4, 6, 5, 3, 1, 1, 2),
        ];
        for (c, h, w, k, s, pad, groups) in configs {
            let g = geom(c, h, w, k, s, pad, groups);
            let x: Vec<f32> = (0..3 * g.x_len()).map(|i| i as f32 + 1.0).collect();
            let (p, ck) = (g.p(), g.ck());
            let (b0, cn) = (1, 2);
            let cols = cn * p;
            let mut col = vec![f32::NAN; cols.next_multiple_of(PANEL) * ck];
            g.im2col_panels(&x, b0, cn, &mut col);
            for q in 0..cols.next_multiple_of(PANEL) {
                for r in 0..ck {
                    let want = if q < cols { element(&g, &x, b0 + q / p, r, q % p) } else { 0.0 };
                    assert_eq!(
                        col[(q / PANEL) * ck * PANEL + r * PANEL + q % PANEL],
                        want,
                        "{configs:?} col ({r}, {q})"
                    );
                }
            }
            // <im2col(x), d> = <x, col2im(d)> for d of ones: col2im counts each input's windows.
            let ones = vec![1.0; ck * p];
            let mut back = vec![0.0; g.x_len()];
            g.col2im(&ones, p, 0, &mut back);
            let lhs: f32 =
                (0..ck).flat_map(|r| (0..p).map(move |q| (r, q))).map(|(r, q)| element(&g, &x, 0, r, q)).sum();
            let rhs: f32 = x.iter().zip(&back).map(|(a, b)| a * b).sum();
            assert_eq!(lhs, rhs, "{c} {h} {w} {k} {s} {pad}");
        }
    }
}
