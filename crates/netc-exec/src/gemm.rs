//! Single-threaded SGEMM on strided views: BLIS-style blocking around a 6×16 register-tile
//! microkernel (AVX2+FMA when the CPU has it, portable code otherwise). Operand panels are read
//! in place when their layout allows and packed otherwise; a right operand may also come
//! already cut into panels ([`PanelMat`], as im2col writes it), and [`gemm_nt`] takes dot
//! products of contiguous rows with such panels. Callers parallelise over their own tiles and
//! lend the packing memory, so a product never allocates.
//!
//! Each element is summed in a fixed order that depends only on the shapes: blocks of `KC`
//! along the contraction, each accumulated from zero with FMAs and then added (the
//! orientation and whether panels are packed do not change it).

/// Rows and columns of the register tile.
pub(crate) const MR: usize = 6;
const NR: usize = 16;
/// Cache blocking: an `MC × KC` block of `a` stays in L2, a `KC × NC` block of `b` in L3.
const MC: usize = 144;
const KC: usize = 256;
const NC: usize = 2048;
/// Contractions up to this long read strided panels in place.
const SHORT_K: usize = 64;
/// Products with more rows than this reuse each panel of `b` enough to pack it.
const B_IN_PLACE_ROWS: usize = 128;

/// A read-only `rows × cols` matrix: element (i, j) at `data[off + i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatRef<'a> {
    data: &'a [f32],
    off: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// A writable matrix view, like [`MatRef`].
#[derive(Debug)]
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    off: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

/// One past the last element a strided view touches, or 0 for an empty view.
fn extent(off: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        off + (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

impl<'a> MatRef<'a> {
    /// The view of `data` starting at `off`; panics if it reaches past `data` (a planning bug).
    pub fn new(data: &'a [f32], off: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> MatRef<'a> {
        assert!(extent(off, rows, cols, rs, cs) <= data.len(), "matrix view outside its buffer");
        MatRef { data, off, rows, cols, rs, cs }
    }

    /// The transposed view.
    pub fn t(self) -> MatRef<'a> {
        MatRef { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }
}

impl<'a> MatMut<'a> {
    pub fn new(data: &'a mut [f32], off: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> MatMut<'a> {
        assert!(extent(off, rows, cols, rs, cs) <= data.len(), "matrix view outside its buffer");
        MatMut { data, off, rows, cols, rs, cs }
    }

    fn t(self) -> MatMut<'a> {
        MatMut { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    /// The view's shape and strides, for cost estimates.
    fn as_ref(&self) -> MatRef<'_> {
        MatRef { data: self.data, off: self.off, rows: self.rows, cols: self.cols, rs: self.rs, cs: self.cs }
    }

    fn t_ref(&self) -> MatRef<'_> {
        self.as_ref().t()
    }
}

/// A `rows × cols` matrix already cut into the microkernel's panels of 16 columns, each
/// stored row by row: element (k, j) at `data[off + (j / 16)·panel_stride + 16·k + j % 16]`.
/// Columns past `cols` (up to the next multiple of 16) must be finite, ideally zero.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PanelMat<'a> {
    data: &'a [f32],
    off: usize,
    rows: usize,
    cols: usize,
    panel_stride: usize,
}

impl<'a> PanelMat<'a> {
    /// Panics if the panels reach past `data` (a planning bug).
    pub fn new(data: &'a [f32], off: usize, rows: usize, cols: usize, panel_stride: usize) -> PanelMat<'a> {
        let panels = cols.div_ceil(NR);
        let end = if panels == 0 || rows == 0 { 0 } else { off + (panels - 1) * panel_stride + rows * NR };
        assert!(end <= data.len(), "panel matrix outside its buffer");
        PanelMat { data, off, rows, cols, panel_stride }
    }
}

/// The right operand of a product.
#[derive(Clone, Copy, Debug)]
enum Rhs<'a> {
    View(MatRef<'a>),
    Panels(PanelMat<'a>),
}

/// `dst = a·b` (or `+=`) for a right operand already in panels: no packing of `b` at all.
pub(crate) fn gemm_panels(dst: MatMut<'_>, a: MatRef<'_>, b: PanelMat<'_>, accumulate: bool, pack: &mut [f32]) {
    assert!(a.rows == dst.rows && b.rows == a.cols && b.cols == dst.cols, "GEMM operand shapes do not agree");
    gemm_oriented(dst, a, Rhs::Panels(b), accumulate, pack);
}

/// `dst = a · bᵀ` where `a` (`m × k`) has contiguous rows and `b` (`n × k`) is a panel
/// matrix over the contraction (see [`PanelMat`]): both are read in place along the
/// contraction, eight lanes at a time, so nothing is packed or transposed. Each element is the
/// sum of eight lane-wise partial sums in a fixed order, plus the ragged tail.
pub(crate) fn gemm_nt(dst: MatMut<'_>, a: MatRef<'_>, b: PanelMat<'_>) {
    assert!(a.rows == dst.rows && b.rows == dst.cols && b.cols == a.cols, "GEMM operand shapes do not agree");
    // Rows are read as `k` consecutive elements (a single column needs no column stride).
    assert!(a.cs == 1 || a.cols <= 1 || a.rows == 0, "the left operand needs contiguous rows");
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    let kernel = Microkernel::detect();
    // Each tile of `b` rows stays in L1 while all rows of `a` (fewer, in L2) pass by.
    for j0 in (0..n).step_by(NT_COLS) {
        for i0 in (0..m).step_by(NT_ROWS) {
            let (rows, cols) = (NT_ROWS.min(m - i0), NT_COLS.min(n - j0));
            let mut sums = [[0.0f32; NT_COLS]; NT_ROWS];
            match kernel {
                #[cfg(target_arch = "x86_64")]
                Microkernel::Avx2Fma => {
                    // The last element each row of `a`, and each panel row of `b`, is read at.
                    let a_end = a.off + (i0 + rows - 1) * a.rs + k;
                    let b_end = b.off + k.div_ceil(NR).max(1).saturating_sub(1) * b.panel_stride + (j0 + cols) * NR;
                    assert!(a_end <= a.data.len() && (k == 0 || b_end <= b.data.len()), "operand outside its buffer");
                    // SAFETY: the CPU has AVX2 and FMA (checked in `detect`); every read lies
                    // inside the operands (asserted above).
                    unsafe { avx2::nt_tile(rows, cols, k, &a, i0, &b, j0, &mut sums) };
                }
                _ => portable_nt_tile(rows, cols, k, &a, i0, &b, j0, &mut sums),
            }
            for (i, row) in sums.iter().enumerate().take(rows) {
                for (j, &v) in row.iter().enumerate().take(cols) {
                    dst.data[dst.off + (i0 + i) * dst.rs + (j0 + j) * dst.cs] = v;
                }
            }
        }
    }
}

/// Rows of `a` and of `b` per dot-product tile: twelve accumulators.
const NT_ROWS: usize = 3;
const NT_COLS: usize = 4;

/// Element (i, p) of `a` and (j, p) of the panel matrix `b`.
#[inline(always)]
fn nt_at(a: &MatRef<'_>, b: &PanelMat<'_>, i: usize, j: usize, p: usize) -> (f32, f32) {
    (a.data[a.off + i * a.rs + p], b.data[b.off + (p / NR) * b.panel_stride + j * NR + p % NR])
}

/// The portable dot-product tile: eight lanes per row pair, then the tail, in the same order
/// as the AVX2 kernel.
#[allow(clippy::too_many_arguments)]
fn portable_nt_tile(
    rows: usize,
    cols: usize,
    k: usize,
    a: &MatRef<'_>,
    i0: usize,
    b: &PanelMat<'_>,
    j0: usize,
    sums: &mut [[f32; NT_COLS]; NT_ROWS],
) {
    let body = k / 8 * 8;
    for (i, row) in sums.iter_mut().enumerate().take(rows) {
        for (j, sum) in row.iter_mut().enumerate().take(cols) {
            let mut lanes = [0.0f32; 8];
            for p0 in (0..body).step_by(8) {
                for (l, lane) in lanes.iter_mut().enumerate() {
                    let (x, y) = nt_at(a, b, i0 + i, j0 + j, p0 + l);
                    *lane += x * y;
                }
            }
            let mut total = lane_total(&lanes);
            for p in body..k {
                let (x, y) = nt_at(a, b, i0 + i, j0 + j, p);
                total += x * y;
            }
            *sum = total;
        }
    }
}

/// The fixed-order sum of eight lanes (pairwise, as the AVX2 kernel reduces a register).
fn lane_total(l: &[f32; 8]) -> f32 {
    ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]))
}

/// Packing memory a product of these sizes needs (either orientation).
pub(crate) fn pack_len(m: usize, n: usize, k: usize) -> usize {
    let one = |m: usize, n: usize| {
        let kc = k.min(KC);
        m.min(MC).next_multiple_of(MR) * kc + kc * n.min(NC).next_multiple_of(NR)
    };
    one(m, n).max(one(n, m))
}

/// `dst = a·b`, or `dst += a·b` with `accumulate`. `pack` must hold [`pack_len`] elements.
pub(crate) fn gemm(dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, accumulate: bool, pack: &mut [f32]) {
    assert!(a.rows == dst.rows && b.rows == a.cols && b.cols == dst.cols, "GEMM operand shapes do not agree");
    // `c = a·b` or, transposed, `cᵀ = bᵀ·aᵀ`: whichever moves less memory around.
    if cost(&dst.t_ref(), &b.t(), &a.t()) < cost(&dst.as_ref(), &a, &b) {
        gemm_oriented(dst.t(), b.t(), Rhs::View(a.t()), accumulate, pack);
    } else {
        gemm_oriented(dst, a, Rhs::View(b), accumulate, pack);
    }
}

/// Whether the panels of `a` are read in place rather than packed: rows of `a` are read as
/// six sequential streams; strided columns only for short contractions, since long strided
/// panels thrash the L1 sets (with power-of-two strides especially).
fn a_in_place(a: &MatRef<'_>, k: usize) -> bool {
    a.cs == 1 || (a.rs == 1 && k <= SHORT_K)
}

/// Whether the panels of `b` in an `m`-row product are read in place: contiguous rows, when
/// a panel (`k` rows of 64 bytes) fits in L1 without its rows colliding in the same cache
/// sets (strides of a multiple of 4 KiB would), or is reused by few rows of `a`.
fn b_in_place(b: &MatRef<'_>, m: usize, k: usize) -> bool {
    let fits = k <= SHORT_K || (k <= 2 * SHORT_K && (b.rs * 4) % 4096 != 0);
    b.cs == 1 && m <= B_IN_PLACE_ROWS && (fits || m <= 2 * MR)
}

/// The extra memory traffic of computing `dst = a·b` in this orientation, in elements:
/// packing (gathers cost more than copies of contiguous runs) and writing a result whose rows
/// are not contiguous.
fn cost(dst: &MatRef<'_>, a: &MatRef<'_>, b: &MatRef<'_>) -> usize {
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    let (a_in_place, b_in_place) = (a_in_place(a, k), b_in_place(b, m, k));
    let a_cost = if a_in_place { 0 } else { m * k * if a.rs == 1 { 1 } else { 2 } * n.div_ceil(NC) };
    let b_cost = if b_in_place { 0 } else { k * n * if b.cs == 1 { 1 } else { 3 } };
    let c_cost = if dst.cs == 1 { 0 } else { 2 * m * n * k.div_ceil(KC) };
    a_cost + b_cost + c_cost
}

fn gemm_oriented(dst: MatMut<'_>, a: MatRef<'_>, b: Rhs<'_>, accumulate: bool, pack: &mut [f32]) {
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[dst.off + i * dst.rs + j * dst.cs] = 0.0;
                }
            }
        }
        return;
    }
    let kernel = Microkernel::detect();
    // Panels read in place are not packed (only ragged edge panels are).
    let a_in_place = a_in_place(&a, k);
    let b_in_place = match b {
        Rhs::View(view) => b_in_place(&view, m, k),
        Rhs::Panels(_) => true,
    };
    let (b_data, b_rs, b_cs) = match b {
        Rhs::View(view) => (view.data, view.rs, view.cs),
        Rhs::Panels(panels) => (panels.data, NR, 1),
    };
    let a_len = m.min(MC).next_multiple_of(MR) * k.min(KC);
    let (packed_a, packed_b) = pack.split_at_mut(a_len);
    let mut dst = dst;
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            let b_panels = match b {
                Rhs::View(view) => pack_b(&view, pc, jc, kc, nc, packed_b, b_in_place),
                Rhs::Panels(p) => {
                    let count = nc.div_ceil(NR);
                    let first = p.off + (jc / NR) * p.panel_stride + pc * NR;
                    Panels { in_place: Some((first, p.panel_stride)), count, whole: count }
                }
            };
            // Each block along the contraction is summed from zero, then added.
            let add = accumulate || pc > 0;
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                let a_panels = pack_a(&a, ic, pc, mc, kc, packed_a, a_in_place);
                for jp in 0..b_panels.count {
                    let pb = b_panels.get(jp, b_data, b_rs, b_cs, packed_b, kc);
                    let jr = jp * NR;
                    for ip in 0..a_panels.count {
                        let pa = a_panels.get(ip, a.data, a.rs, a.cs, packed_a, kc);
                        let ir = ip * MR;
                        let tile = Tile { row: ic + ir, col: jc + jr, rows: MR.min(mc - ir), cols: NR.min(nc - jr) };
                        kernel.run(kc, pa, pb, &mut dst, tile, add);
                    }
                }
            }
        }
    }
}

/// A panel of `a` (`MR` rows × kc): element (i, p) at `data[off + i·rs + p·cs]`.
#[derive(Clone, Copy, Debug)]
struct PanelA<'a> {
    data: &'a [f32],
    off: usize,
    rs: usize,
    cs: usize,
}

/// A panel of `b` (kc × `NR` contiguous columns): row p at `data[off + p·rs..][..NR]`.
#[derive(Clone, Copy, Debug)]
struct PanelB<'a> {
    data: &'a [f32],
    off: usize,
    rs: usize,
}

/// Where the panels of one block come from: the operand itself from `first` (whole panels
/// `step` apart), or the packing buffer; a ragged last panel is always packed.
#[derive(Clone, Copy, Debug)]
struct Panels {
    in_place: Option<(usize, usize)>,
    count: usize,
    whole: usize,
}

impl Panels {
    /// Panel `p`, in place in `data` (with strides `rs`, `cs`) or in `packed`.
    #[inline(always)]
    fn get<'a>(self, p: usize, data: &'a [f32], rs: usize, cs: usize, packed: &'a [f32], kc: usize) -> Source<'a> {
        match self.in_place {
            Some((first, step)) if p < self.whole => Source::InPlace { data, off: first + p * step, rs, cs },
            _ => Source::Packed { data: packed, off: p * kc },
        }
    }
}

/// A panel, in place or packed; the microkernel turns it into its strides.
#[derive(Clone, Copy, Debug)]
enum Source<'a> {
    InPlace {
        data: &'a [f32],
        off: usize,
        rs: usize,
        cs: usize,
    },
    /// Packed panels start at `off·MR` (for `a`) or `off·NR` (for `b`).
    Packed {
        data: &'a [f32],
        off: usize,
    },
}

impl<'a> Source<'a> {
    fn a(self) -> PanelA<'a> {
        match self {
            Source::InPlace { data, off, rs, cs } => PanelA { data, off, rs, cs },
            Source::Packed { data, off } => PanelA { data, off: off * MR, rs: 1, cs: MR },
        }
    }

    fn b(self) -> PanelB<'a> {
        match self {
            Source::InPlace { data, off, rs, .. } => PanelB { data, off, rs },
            Source::Packed { data, off } => PanelB { data, off: off * NR, rs: NR },
        }
    }
}

/// Rows `ic..ic+mc`, columns `pc..pc+kc` of `a` as panels of `MR` rows: packed column by
/// column (`MR` values per column, zero-padded), or in place when `in_place` and whole.
fn pack_a(a: &MatRef<'_>, ic: usize, pc: usize, mc: usize, kc: usize, out: &mut [f32], in_place: bool) -> Panels {
    let first = a.off + ic * a.rs + pc * a.cs;
    let whole = if in_place { mc / MR } else { 0 };
    pack_panels::<MR>(a.data, first, a.rs, a.cs, mc, kc, whole, out);
    Panels { in_place: in_place.then_some((first, MR * a.rs)), count: mc.div_ceil(MR), whole }
}

/// Columns `jc..jc+nc`, rows `pc..pc+kc` of `b` as panels of `NR` columns: packed row by row
/// (`NR` values per row, zero-padded), or in place when `in_place` and whole.
fn pack_b(b: &MatRef<'_>, pc: usize, jc: usize, kc: usize, nc: usize, out: &mut [f32], in_place: bool) -> Panels {
    let first = b.off + pc * b.rs + jc * b.cs;
    let whole = if in_place { nc / NR } else { 0 };
    pack_panels::<NR>(b.data, first, b.cs, b.rs, nc, kc, whole, out);
    Panels { in_place: in_place.then_some((first, NR * b.cs)), count: nc.div_ceil(NR), whole }
}

/// Packs panels `whole..` of `W` lanes each, for `len` lanes in all: step `p` of lane `l` of a
/// panel is `data[start + (panel·W + l)·across + p·along]`, and lanes past `len` are zero.
#[allow(clippy::too_many_arguments)]
fn pack_panels<const W: usize>(
    data: &[f32],
    start: usize,
    across: usize,
    along: usize,
    len: usize,
    kc: usize,
    whole: usize,
    out: &mut [f32],
) {
    for panel in whole..len.div_ceil(W) {
        let dst = &mut out[panel * W * kc..][..W * kc];
        let lanes = W.min(len - panel * W);
        let first = start + panel * W * across;
        if across == 1 && lanes == W {
            for (p, step) in dst.chunks_exact_mut(W).enumerate() {
                let src = &data[first + p * along..][..W];
                // A fixed-size copy stays inline (a slice copy would call `memmove`).
                if let (Ok(step), Ok(src)) = (<&mut [f32; W]>::try_from(step), <&[f32; W]>::try_from(src)) {
                    *step = *src;
                }
            }
        } else if along == 1 {
            // Each lane is contiguous: gather every packed step from the lane runs.
            let runs: [&[f32]; W] =
                std::array::from_fn(|l| if l < lanes { &data[first + l * across..][..kc] } else { &[] });
            for (p, step) in dst.chunks_exact_mut(W).enumerate() {
                for (v, run) in step.iter_mut().zip(&runs) {
                    *v = run.get(p).copied().unwrap_or(0.0);
                }
            }
        } else {
            for (p, step) in dst.chunks_exact_mut(W).enumerate() {
                let base = first + p * along;
                for (l, v) in step.iter_mut().enumerate() {
                    *v = if l < lanes { data[base + l * across] } else { 0.0 };
                }
            }
        }
    }
}

/// Where a register tile goes in the result.
#[derive(Clone, Copy, Debug)]
struct Tile {
    row: usize,
    col: usize,
    rows: usize,
    cols: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Microkernel {
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    Portable,
}

/// One past the last element a panel reads.
fn a_extent(p: &PanelA<'_>, kc: usize) -> usize {
    p.off + (MR - 1) * p.rs + (kc - 1) * p.cs + 1
}
fn b_extent(p: &PanelB<'_>, kc: usize) -> usize {
    p.off + (kc - 1) * p.rs + NR
}

impl Microkernel {
    fn detect() -> Microkernel {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Microkernel::Avx2Fma;
        }
        Microkernel::Portable
    }

    /// `dst[tile] (+)= a · b` for one `MR × kc` panel of `a` and one `kc × NR` panel of `b`.
    fn run(self, kc: usize, a: Source<'_>, b: Source<'_>, dst: &mut MatMut<'_>, tile: Tile, add: bool) {
        let (a, b) = (a.a(), b.b());
        assert!(a_extent(&a, kc) <= a.data.len() && b_extent(&b, kc) <= b.data.len(), "panel outside its buffer");
        let start = dst.off + tile.row * dst.rs + tile.col * dst.cs;
        #[cfg(target_arch = "x86_64")]
        if self == Microkernel::Avx2Fma && tile.cols == NR && dst.cs == 1 {
            assert!(start + (tile.rows - 1) * dst.rs + NR <= dst.data.len());
            // SAFETY: the CPU has AVX2 and FMA (checked in `detect`); the panels and the
            // tile's rows of 16 lie inside their buffers (asserted above).
            unsafe {
                let (pa, pb, c) =
                    (a.data.as_ptr().add(a.off), b.data.as_ptr().add(b.off), dst.data.as_mut_ptr().add(start));
                avx2::tile_rows(tile.rows, kc, pa, a.rs, a.cs, pb, b.rs, c, dst.rs, add);
            }
            return;
        }
        // Ragged columns (and the portable kernel) go through a local tile with the same
        // arithmetic: the product summed from zero, then added to the result.
        let mut acc = [0.0f32; MR * NR];
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above, writing the local tile (rows of `NR`).
            Microkernel::Avx2Fma => unsafe {
                let (pa, pb) = (a.data.as_ptr().add(a.off), b.data.as_ptr().add(b.off));
                avx2::tile_rows(tile.rows, kc, pa, a.rs, a.cs, pb, b.rs, acc.as_mut_ptr(), NR, false);
            },
            Microkernel::Portable => portable_tile(kc, &a, &b, &mut acc),
        }
        for (i, acc_row) in acc.chunks_exact(NR).enumerate().take(tile.rows) {
            let start = start + i * dst.rs;
            if dst.cs == 1 {
                let row = &mut dst.data[start..start + tile.cols];
                if add {
                    row.iter_mut().zip(acc_row).for_each(|(c, &v)| *c += v);
                } else {
                    row.copy_from_slice(&acc_row[..tile.cols]);
                }
            } else {
                for (j, &v) in acc_row.iter().enumerate().take(tile.cols) {
                    let c = &mut dst.data[start + j * dst.cs];
                    *c = if add { *c + v } else { v };
                }
            }
        }
    }
}

/// The register tile in plain Rust (LLVM vectorises the inner loop with whatever SIMD the
/// target has).
fn portable_tile(kc: usize, a: &PanelA<'_>, b: &PanelB<'_>, acc: &mut [f32; MR * NR]) {
    for p in 0..kc {
        let brow = &b.data[b.off + p * b.rs..][..NR];
        for (i, row) in acc.chunks_exact_mut(NR).enumerate() {
            let ai = a.data[a.off + i * a.rs + p * a.cs];
            for (c, &bj) in row.iter_mut().zip(brow) {
                *c += ai * bj;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{nt_at, MatRef, PanelMat, MR, NR, NT_COLS, NT_ROWS};
    use std::arch::x86_64::*;

    /// `c (+)= a · b` for one `R`×16 tile held in AVX registers (twelve for six rows): per
    /// step of the contraction, two loads of `b`, `R` broadcasts of `a` and 2·`R` FMAs.
    /// Element (i, p) of the `a` panel is at `a + i·ars + p·acs`, row p of the `b` panel at
    /// `b + p·ldb` (16 contiguous), row i of the tile at `c + i·ldc`.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA, and the panels and the tile's rows must be valid
    /// for those reads and writes.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile<const R: usize>(
        kc: usize,
        a: *const f32,
        ars: usize,
        acs: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        add: bool,
    ) {
        // SAFETY: every access is inside the panels or the tile (the caller's obligations).
        unsafe {
            let mut lo = [_mm256_setzero_ps(); R];
            let mut hi = [_mm256_setzero_ps(); R];
            let mut rows = [a; R];
            for (i, r) in rows.iter_mut().enumerate() {
                *r = a.add(i * ars);
            }
            let mut b = b;
            let mut at = 0;
            for _ in 0..kc {
                let b0 = _mm256_loadu_ps(b);
                let b1 = _mm256_loadu_ps(b.add(8));
                for i in 0..R {
                    let ai = _mm256_broadcast_ss(&*rows[i].add(at));
                    lo[i] = _mm256_fmadd_ps(ai, b0, lo[i]);
                    hi[i] = _mm256_fmadd_ps(ai, b1, hi[i]);
                }
                at += acs;
                b = b.add(ldb);
            }
            for i in 0..R {
                let row = c.add(i * ldc);
                let (mut l, mut h) = (lo[i], hi[i]);
                if add {
                    l = _mm256_add_ps(_mm256_loadu_ps(row), l);
                    h = _mm256_add_ps(_mm256_loadu_ps(row.add(8)), h);
                }
                _mm256_storeu_ps(row, l);
                _mm256_storeu_ps(row.add(8), h);
            }
        }
    }

    /// The dot products of rows `i0..i0+ROWS` of `a` with rows `j0..j0+COLS` of the panel
    /// matrix `b`, eight positions per step; each result is its register's lanes reduced
    /// pairwise, plus the ragged tail in order (as `portable_nt_tile`).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; the rows must lie inside the operands.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn nt<const ROWS: usize, const COLS: usize>(
        k: usize,
        a: &MatRef<'_>,
        i0: usize,
        b: &PanelMat<'_>,
        j0: usize,
        sums: &mut [[f32; NT_COLS]; NT_ROWS],
    ) {
        // SAFETY: reads stay inside the rows (the caller's obligation): `p + 8 <= body <= k`.
        unsafe {
            // Accumulators by column of the tile (row of `b`), then row.
            let mut acc = [[_mm256_setzero_ps(); ROWS]; COLS];
            let a_rows: [*const f32; ROWS] = std::array::from_fn(|i| a.data.as_ptr().add(a.off + (i0 + i) * a.rs));
            let body = k / 8 * 8;
            let mut p = 0;
            while p < body {
                let panel = b.data.as_ptr().add(b.off + (p / NR) * b.panel_stride + p % NR);
                let va: [__m256; ROWS] = std::array::from_fn(|i| _mm256_loadu_ps(a_rows[i].add(p)));
                for (j, column) in acc.iter_mut().enumerate() {
                    let vb = _mm256_loadu_ps(panel.add((j0 + j) * NR));
                    for (sum, &x) in column.iter_mut().zip(&va) {
                        *sum = _mm256_fmadd_ps(x, vb, *sum);
                    }
                }
                p += 8;
            }
            for (j, column) in acc.iter().enumerate() {
                for (i, &v) in column.iter().enumerate() {
                    // `lane_total`'s order: (l0+l4, l1+l5, l2+l6, l3+l7), then pairs 0+2
                    // and 1+3, then their sum.
                    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                    let t = _mm_add_ps(s, _mm_movehl_ps(s, s));
                    let mut total = _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
                    for q in body..k {
                        let (x, y) = nt_at(a, b, i0 + i, j0 + j, q);
                        total += x * y;
                    }
                    sums[i][j] = total;
                }
            }
        }
    }

    /// [`nt`] for a tile of `rows` × `cols` (at most 3 × 4).
    ///
    /// # Safety
    /// As for [`nt`].
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn nt_tile(
        rows: usize,
        cols: usize,
        k: usize,
        a: &MatRef<'_>,
        i0: usize,
        b: &PanelMat<'_>,
        j0: usize,
        sums: &mut [[f32; NT_COLS]; NT_ROWS],
    ) {
        // SAFETY: passed on to the caller.
        unsafe {
            match (rows, cols) {
                (3, 4) => nt::<3, 4>(k, a, i0, b, j0, sums),
                (3, 3) => nt::<3, 3>(k, a, i0, b, j0, sums),
                (3, 2) => nt::<3, 2>(k, a, i0, b, j0, sums),
                (3, _) => nt::<3, 1>(k, a, i0, b, j0, sums),
                (2, 4) => nt::<2, 4>(k, a, i0, b, j0, sums),
                (2, 3) => nt::<2, 3>(k, a, i0, b, j0, sums),
                (2, 2) => nt::<2, 2>(k, a, i0, b, j0, sums),
                (2, _) => nt::<2, 1>(k, a, i0, b, j0, sums),
                (_, 4) => nt::<1, 4>(k, a, i0, b, j0, sums),
                (_, 3) => nt::<1, 3>(k, a, i0, b, j0, sums),
                (_, 2) => nt::<1, 2>(k, a, i0, b, j0, sums),
                _ => nt::<1, 1>(k, a, i0, b, j0, sums),
            }
        }
    }

    /// [`tile`] for `rows` (1 to 6) rows.
    ///
    /// # Safety
    /// As for [`tile`].
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile_rows(
        rows: usize,
        kc: usize,
        a: *const f32,
        ars: usize,
        acs: usize,
        b: *const f32,
        ldb: usize,
        c: *mut f32,
        ldc: usize,
        add: bool,
    ) {
        // SAFETY: passed on to the caller.
        unsafe {
            match rows {
                1 => tile::<1>(kc, a, ars, acs, b, ldb, c, ldc, add),
                2 => tile::<2>(kc, a, ars, acs, b, ldb, c, ldc, add),
                3 => tile::<3>(kc, a, ars, acs, b, ldb, c, ldc, add),
                4 => tile::<4>(kc, a, ars, acs, b, ldb, c, ldc, add),
                5 => tile::<5>(kc, a, ars, acs, b, ldb, c, ldc, add),
                _ => tile::<MR>(kc, a, ars, acs, b, ldb, c, ldc, add),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &MatRef<'_>, b: &MatRef<'_>) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for l in 0..k {
                    c[i * n + j] +=
                        f64::from(a.data[a.off + i * a.rs + l * a.cs]) * f64::from(b.data[b.off + l * b.rs + j * b.cs]);
                }
            }
        }
        c
    }

    #[test]
    fn products_of_any_shape_and_layout_match_the_definition() {
        let shapes =
            [(1, 1, 1), (2, 3, 4), (7, 17, 5), (13, 33, 300), (150, 20, 25), (6, 16, 513), (20, 2100, 3), (5, 4, 0)];
        for (m, n, k) in shapes {
            let a_data: Vec<f32> = (0..m * k + 3).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
            let b_data: Vec<f32> = (0..k * n + 5).map(|i| ((i * 104_729) % 11) as f32 - 5.0).collect();
            for (ta, tb, tc) in [(false, false, false), (true, false, true), (false, true, false), (true, true, true)] {
                let a = if ta { MatRef::new(&a_data, 3, k, m, m, 1).t() } else { MatRef::new(&a_data, 3, m, k, k, 1) };
                let b = if tb { MatRef::new(&b_data, 5, n, k, k, 1).t() } else { MatRef::new(&b_data, 5, k, n, n, 1) };
                let want = naive(m, n, k, &a, &b);
                let mut c = vec![1.0f32; m * n + 2];
                let dst = if tc { MatMut::new(&mut c, 2, m, n, 1, m) } else { MatMut::new(&mut c, 2, m, n, n, 1) };
                let mut pack = vec![f32::NAN; pack_len(m, n, k)];
                gemm(dst, a, b, true, &mut pack);
                for i in 0..m {
                    for j in 0..n {
                        let got = if tc { c[2 + j * m + i] } else { c[2 + i * n + j] };
                        assert_eq!(f64::from(got), want[i * n + j] + 1.0, "{m}x{n}x{k} {ta} {tb} {tc} at ({i}, {j})");
                    }
                }
            }
        }
    }

    #[test]
    fn panel_operands_multiply_like_views() {
        for (m, n, k) in [(7, 20, 300), (6, 16, 5), (13, 33, 17)] {
            let a_data: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
            let b_data: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 11) as f32 - 5.0).collect();
            let a = MatRef::new(&a_data, 0, m, k, k, 1);
            let b = MatRef::new(&b_data, 0, k, n, n, 1);
            // The same b in panels of 16 columns, one spare row per panel, zero-padded.
            let stride = 16 * (k + 1);
            let mut panels = vec![0.0; n.div_ceil(16) * stride];
            for kk in 0..k {
                for j in 0..n {
                    panels[(j / 16) * stride + 16 * kk + j % 16] = b_data[kk * n + j];
                }
            }
            let mut want = vec![0.0; m * n];
            let mut got = vec![0.0; m * n];
            let mut pack = vec![0.0; pack_len(m, n, k)];
            gemm(MatMut::new(&mut want, 0, m, n, n, 1), a, b, false, &mut pack);
            gemm_panels(
                MatMut::new(&mut got, 0, m, n, n, 1),
                a,
                PanelMat::new(&panels, 0, k, n, stride),
                false,
                &mut pack,
            );
            assert_eq!(got, want, "{m}x{n}x{k}");
        }
    }

    #[test]
    fn dot_products_with_panel_rows_match_the_definition() {
        for (m, n, k) in [(1usize, 1usize, 1usize), (3, 4, 16), (7, 9, 37), (20, 25, 576), (5, 2, 8)] {
            let a_data: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
            let b_rows: Vec<f32> = (0..n * k).map(|i| ((i * 104_729) % 11) as f32 - 5.0).collect();
            // b (n × k) in panels over k: element (j, p) at (p / 16)·stride + 16·j + p % 16.
            let stride = 16 * (n + 2);
            let mut panels = vec![0.0; k.div_ceil(16) * stride];
            for j in 0..n {
                for p in 0..k {
                    panels[(p / 16) * stride + 16 * j + p % 16] = b_rows[j * k + p];
                }
            }
            let mut c = vec![f32::NAN; m * n];
            gemm_nt(
                MatMut::new(&mut c, 0, m, n, n, 1),
                MatRef::new(&a_data, 0, m, k, k, 1),
                PanelMat::new(&panels, 0, n, k, stride),
            );
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|p| a_data[i * k + p] * b_rows[j * k + p]).sum();
                    assert_eq!(c[i * n + j], want, "{m}x{n}x{k} ({i}, {j})");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn views_past_their_buffer_are_refused() {
        let a = [0.0; 5];
        let _ = MatRef::new(&a, 0, 2, 3, 3, 1);
    }
}
