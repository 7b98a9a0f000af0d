//! Single-threaded SGEMM on strided views: BLIS-style blocking around a register-tile
//! microkernel for the instruction set chosen at run time ([`Isa`]): 10×32 with AVX-512, 6×16
//! with AVX2+FMA, 6×16 in portable code otherwise. Operand panels are read
//! in place when their layout allows and packed otherwise; a right operand may also come
//! already cut into panels ([`PanelMat`], as im2col writes it), and [`gemm_nt`] takes dot
//! products of contiguous rows with such panels. Callers parallelise over their own tiles and
//! lend the packing memory, so a product never allocates.
//!
//! Each element is summed in a fixed order that depends only on the shapes: blocks of `KC`
//! along the contraction, each accumulated from zero with fused multiply-adds (`f32::mul_add`
//! in portable code) and then added. Neither the orientation, nor whether panels are packed,
//! nor the instruction set (which only changes how many elements are computed at once)
//! changes it, so every path gives bitwise the same results.

use std::fmt;

/// The instruction set of the GEMM microkernels. Every path computes bitwise identical
/// results; they differ only in speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512F: 10×32 register tiles (two 16-wide registers per row).
    Avx512,
    /// AVX2 with FMA: 6×16 register tiles.
    Avx2,
    /// Plain Rust with `f32::mul_add`, for any CPU.
    Portable,
}

impl Isa {
    /// Every path, fastest first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

    /// The fastest path this CPU supports.
    pub fn best() -> Isa {
        Isa::ALL.into_iter().find(|isa| isa.is_available()).unwrap_or(Isa::Portable)
    }

    /// Whether this CPU can run the path.
    pub fn is_available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f") && Isa::Avx2.is_available(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx512 | Isa::Avx2 => false,
            Isa::Portable => true,
        }
    }

    /// The name `NETC_ISA` takes: `avx512`, `avx2` or `portable`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// The path of that [`Isa::name`], if any.
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|isa| isa.name() == name)
    }

    /// Rows of the register tile (and of a packed panel of `a`).
    fn rows(self) -> usize {
        match self {
            Isa::Avx512 => MR_AVX512,
            Isa::Avx2 | Isa::Portable => MR_AVX2,
        }
    }

    /// Panels of `b` (16 columns each) per register tile.
    fn panels(self) -> usize {
        match self {
            Isa::Avx512 => 2,
            Isa::Avx2 | Isa::Portable => 1,
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Rows of the register tile per path: ten rows of two 16-wide registers keep 20 of the 32
/// AVX-512 registers accumulating (LeNet's 20, 50 and 500 filters are whole tiles); six rows of
/// two 8-wide registers use 12 of AVX2's 16.
const MR_AVX512: usize = 10;
const MR_AVX2: usize = 6;
/// The most rows and columns a register tile has on any path.
const MR_MAX: usize = MR_AVX512;
const TILE_COLS_MAX: usize = 2 * NR;
/// A multiple of every path's tile rows: callers that split products by rows cut at multiples
/// of it so that only the last task has a partial tile, whichever path runs.
pub(crate) const ROW_MULTIPLE: usize = 30;
/// Columns of a panel of `b`.
const NR: usize = 16;
/// Cache blocking: an `MC × KC` block of `a` stays in L2, a `KC × NC` block of `b` in L3.
/// `MC` is a multiple of every path's tile rows.
const MC: usize = 120;
const KC: usize = 256;
const NC: usize = 2048;
/// Contractions up to this long read strided panels in place.
const SHORT_K: usize = 64;
/// Products with more rows than this reuse each panel of `b` enough to pack it.
pub(crate) const B_IN_PLACE_ROWS: usize = 128;
/// Products with at most this many rows read `b` in place whatever its stride (the choice of
/// orientation depends on the shapes only, not on the path).
const FEW_ROWS: usize = 12;

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
pub(crate) fn gemm_panels(
    isa: Isa,
    dst: MatMut<'_>,
    a: MatRef<'_>,
    b: PanelMat<'_>,
    accumulate: bool,
    pack: &mut [f32],
) {
    assert!(a.rows == dst.rows && b.rows == a.cols && b.cols == dst.cols, "GEMM operand shapes do not agree");
    gemm_oriented(isa, dst, a, Rhs::Panels(b), accumulate, pack);
}

/// Memory for [`pack_rhs`] of a `k × n` operand.
pub(crate) fn panels_len(k: usize, n: usize) -> usize {
    k * n.next_multiple_of(NR)
}

/// `b` cut into the panels [`gemm_panels`] reads in place (columns past `b`'s zero), in
/// `out`, for a right operand several products share: packed once instead of once each. The
/// panels are packed in parallel; the values do not depend on how.
pub(crate) fn pack_rhs<'o>(par: crate::par::Par, b: MatRef<'_>, out: &'o mut [f32]) -> PanelMat<'o> {
    let (k, n) = (b.rows, b.cols);
    let out = &mut out[..panels_len(k, n)];
    par.chunks_mut(out, NR * k.max(1), |panel, dst, _| {
        let first = b.off + panel * NR * b.cs;
        pack_panels::<NR>(b.data, first, b.cs, b.rs, NR.min(n - panel * NR), k, 0, dst);
    });
    PanelMat::new(out, 0, k, n, NR * k)
}

/// `dst = a · bᵀ` where `a` (`m × k`) has contiguous rows and `b` (`n × k`) is a panel
/// matrix over the contraction (see [`PanelMat`]): both are read in place along the
/// contraction, a panel row (16 positions) at a time, so nothing is packed or transposed.
/// Each element is the sum of sixteen lane-wise partial sums (lane `l` fuses the products at
/// `l`, `l + 16`, … in order) reduced in [`lane_total16`]'s order, plus the ragged tail fused
/// in order: the same on every path (AVX-512 holds the sixteen lanes in one register, AVX2 in
/// two).
pub(crate) fn gemm_nt(isa: Isa, dst: MatMut<'_>, a: MatRef<'_>, b: PanelMat<'_>) {
    assert!(a.rows == dst.rows && b.rows == dst.cols && b.cols == a.cols, "GEMM operand shapes do not agree");
    // Rows are read as `k` consecutive elements (a single column needs no column stride).
    assert!(a.cs == 1 || a.cols <= 1 || a.rows == 0, "the left operand needs contiguous rows");
    let (m, n, k) = (dst.rows, dst.cols, a.cols);
    // Each tile of `b` rows stays in L1 while all rows of `a` (fewer, in L2) pass by.
    let (tile_rows, tile_cols) = match isa {
        Isa::Avx512 => (NT_ROWS_AVX512, NT_COLS_AVX512),
        Isa::Avx2 | Isa::Portable => (NT_ROWS, NT_COLS),
    };
    for j0 in (0..n).step_by(tile_cols) {
        for i0 in (0..m).step_by(tile_rows) {
            let (rows, cols) = (tile_rows.min(m - i0), tile_cols.min(n - j0));
            let mut sums = [[0.0f32; NT_COLS_MAX]; NT_ROWS_MAX];
            // The last element each row of `a`, and each panel row of `b`, is read at.
            let a_end = a.off + (i0 + rows - 1) * a.rs + k;
            let b_end = b.off + k.div_ceil(NR).max(1).saturating_sub(1) * b.panel_stride + (j0 + cols) * NR;
            assert!(a_end <= a.data.len() && (k == 0 || b_end <= b.data.len()), "operand outside its buffer");
            match isa {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has AVX-512F, AVX2 and FMA (the executor accepts only
                // available paths); every read lies inside the operands (asserted above).
                Isa::Avx512 => unsafe { avx512::nt_tile(rows, cols, k, &a, i0, &b, j0, &mut sums) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: the CPU has AVX2 and FMA; reads as above.
                Isa::Avx2 => unsafe { avx2::nt_tile(rows, cols, k, &a, i0, &b, j0, &mut sums) },
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

/// Rows of `a` and of `b` per dot-product tile: with AVX2 six results of two registers each,
/// with AVX-512 twenty-four of one register each. A step of 16 positions then loads AVX2's
/// operands in two halves of 8 and AVX-512's once, for 12 or 24 fused multiply-adds.
const NT_ROWS: usize = 2;
const NT_COLS: usize = 3;
const NT_ROWS_AVX512: usize = 4;
const NT_COLS_AVX512: usize = 6;
const NT_ROWS_MAX: usize = NT_ROWS_AVX512;
const NT_COLS_MAX: usize = NT_COLS_AVX512;

/// The per-tile results of the dot-product kernels.
type NtSums = [[f32; NT_COLS_MAX]; NT_ROWS_MAX];

/// Element (i, p) of `a` and (j, p) of the panel matrix `b`.
#[inline(always)]
fn nt_at(a: &MatRef<'_>, b: &PanelMat<'_>, i: usize, j: usize, p: usize) -> (f32, f32) {
    (a.data[a.off + i * a.rs + p], b.data[b.off + (p / NR) * b.panel_stride + j * NR + p % NR])
}

/// The ragged tail `body..k` of one dot product, fused in order onto `total`.
#[inline(always)]
fn nt_tail(a: &MatRef<'_>, b: &PanelMat<'_>, i: usize, j: usize, body: usize, k: usize, total: f32) -> f32 {
    (body..k).fold(total, |total, p| {
        let (x, y) = nt_at(a, b, i, j, p);
        x.mul_add(y, total)
    })
}

/// The portable dot-product tile: sixteen lanes per result, then the tail, in the same order
/// as the SIMD kernels.
#[allow(clippy::too_many_arguments)]
fn portable_nt_tile(
    rows: usize,
    cols: usize,
    k: usize,
    a: &MatRef<'_>,
    i0: usize,
    b: &PanelMat<'_>,
    j0: usize,
    sums: &mut NtSums,
) {
    let body = k / NR * NR;
    for (i, row) in sums.iter_mut().enumerate().take(rows) {
        for (j, sum) in row.iter_mut().enumerate().take(cols) {
            let mut lanes = [0.0f32; NR];
            for p0 in (0..body).step_by(NR) {
                for (l, lane) in lanes.iter_mut().enumerate() {
                    let (x, y) = nt_at(a, b, i0 + i, j0 + j, p0 + l);
                    *lane = x.mul_add(y, *lane);
                }
            }
            *sum = nt_tail(a, b, i0 + i, j0 + j, body, k, lane_total16(&lanes));
        }
    }
}

/// The fixed-order sum of sixteen lanes, as the SIMD kernels reduce their registers: the upper
/// eight added onto the lower eight, then those pairwise.
fn lane_total16(l: &[f32; NR]) -> f32 {
    let h: [f32; 8] = std::array::from_fn(|i| l[i] + l[i + 8]);
    ((h[0] + h[4]) + (h[2] + h[6])) + ((h[1] + h[5]) + (h[3] + h[7]))
}

/// Packing memory a product of these sizes needs (either orientation).
/// It depends on the shapes only, not on the path, so plans hold for every path.
pub(crate) fn pack_len(m: usize, n: usize, k: usize) -> usize {
    let one = |m: usize, n: usize| {
        let kc = k.min(KC);
        packed_a_len(m, kc) + kc * n.min(NC).next_multiple_of(NR)
    };
    one(m, n).max(one(n, m))
}

/// Packing memory for the panels of an `m`-row block of `a`, on whichever path needs most.
fn packed_a_len(m: usize, kc: usize) -> usize {
    let rows = m.min(MC);
    rows.next_multiple_of(MR_AVX512).max(rows.next_multiple_of(MR_AVX2)) * kc
}

/// `dst = a·b`, or `dst += a·b` with `accumulate`. `pack` must hold [`pack_len`] elements.
pub(crate) fn gemm(isa: Isa, dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, accumulate: bool, pack: &mut [f32]) {
    assert!(a.rows == dst.rows && b.rows == a.cols && b.cols == dst.cols, "GEMM operand shapes do not agree");
    // `c = a·b` or, transposed, `cᵀ = bᵀ·aᵀ`: whichever moves less memory around.
    if cost(&dst.t_ref(), &b.t(), &a.t()) < cost(&dst.as_ref(), &a, &b) {
        gemm_oriented(isa, dst.t(), b.t(), Rhs::View(a.t()), accumulate, pack);
    } else {
        gemm_oriented(isa, dst, a, Rhs::View(b), accumulate, pack);
    }
}

/// Whether the panels of `a` are read in place rather than packed: rows of `a` are read as
/// sequential streams (one per tile row); strided columns only for short contractions, since long strided
/// panels thrash the L1 sets (with power-of-two strides especially).
fn a_in_place(a: &MatRef<'_>, k: usize) -> bool {
    a.cs == 1 || (a.rs == 1 && k <= SHORT_K)
}

/// Whether the panels of `b` in an `m`-row product are read in place: contiguous rows, when
/// a panel (`k` rows of 64 bytes) fits in L1 without its rows colliding in the same cache
/// sets (strides of a multiple of 4 KiB would), or is reused by few rows of `a`.
fn b_in_place(b: &MatRef<'_>, m: usize, k: usize) -> bool {
    let fits = k <= SHORT_K || (k <= 2 * SHORT_K && !(b.rs * 4).is_multiple_of(4096));
    b.cs == 1 && m <= B_IN_PLACE_ROWS && (fits || m <= FEW_ROWS)
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

fn gemm_oriented(isa: Isa, dst: MatMut<'_>, a: MatRef<'_>, b: Rhs<'_>, accumulate: bool, pack: &mut [f32]) {
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
    let (mr, tile_panels) = (isa.rows(), isa.panels());
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
    let (packed_a, packed_b) = pack.split_at_mut(packed_a_len(m, k.min(KC)));
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
                let a_panels = pack_a(&a, ic, pc, mc, kc, packed_a, a_in_place, mr);
                for jp in (0..b_panels.count).step_by(tile_panels) {
                    let pb0 = b_panels.get(jp, b_data, b_rs, b_cs, packed_b, kc, NR).b();
                    let pb1 = (jp + 1 < b_panels.count && tile_panels == 2)
                        .then(|| b_panels.get(jp + 1, b_data, b_rs, b_cs, packed_b, kc, NR).b());
                    let jr = jp * NR;
                    for ip in 0..a_panels.count {
                        let pa = a_panels.get(ip, a.data, a.rs, a.cs, packed_a, kc, mr).a();
                        let ir = ip * mr;
                        let cols = (tile_panels * NR).min(nc - jr);
                        let tile = Tile { row: ic + ir, col: jc + jr, rows: mr.min(mc - ir), cols };
                        run_tile(isa, kc, mr, pa, pb0, pb1, &mut dst, tile, add);
                    }
                }
            }
        }
    }
}

/// A panel of `a` (tile rows × kc): element (i, p) at `data[off + i·rs + p·cs]`.
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
    /// Panel `p` of `width` lanes, in place in `data` (with strides `rs`, `cs`) or in `packed`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn get<'a>(
        self,
        p: usize,
        data: &'a [f32],
        rs: usize,
        cs: usize,
        packed: &'a [f32],
        kc: usize,
        width: usize,
    ) -> Source<'a> {
        match self.in_place {
            Some((first, step)) if p < self.whole => Source::InPlace { data, off: first + p * step, rs, cs },
            _ => Source::Packed { data: packed, off: p * kc * width, width },
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
    /// A packed panel: `width` values per step of the contraction from `off`.
    Packed {
        data: &'a [f32],
        off: usize,
        width: usize,
    },
}

impl<'a> Source<'a> {
    fn a(self) -> PanelA<'a> {
        match self {
            Source::InPlace { data, off, rs, cs } => PanelA { data, off, rs, cs },
            Source::Packed { data, off, width } => PanelA { data, off, rs: 1, cs: width },
        }
    }

    fn b(self) -> PanelB<'a> {
        match self {
            Source::InPlace { data, off, rs, .. } => PanelB { data, off, rs },
            Source::Packed { data, off, width } => PanelB { data, off, rs: width },
        }
    }
}

/// Rows `ic..ic+mc`, columns `pc..pc+kc` of `a` as panels of `mr` rows: packed column by
/// column (`mr` values per column, zero-padded), or in place when `in_place` and whole.
#[allow(clippy::too_many_arguments)]
fn pack_a(
    a: &MatRef<'_>,
    ic: usize,
    pc: usize,
    mc: usize,
    kc: usize,
    out: &mut [f32],
    in_place: bool,
    mr: usize,
) -> Panels {
    let first = a.off + ic * a.rs + pc * a.cs;
    let whole = if in_place { mc / mr } else { 0 };
    match mr {
        MR_AVX512 => pack_panels::<MR_AVX512>(a.data, first, a.rs, a.cs, mc, kc, whole, out),
        _ => pack_panels::<MR_AVX2>(a.data, first, a.rs, a.cs, mc, kc, whole, out),
    }
    Panels { in_place: in_place.then_some((first, mr * a.rs)), count: mc.div_ceil(mr), whole }
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

/// One past the last element a panel of `rows` rows reads.
fn a_extent(p: &PanelA<'_>, rows: usize, kc: usize) -> usize {
    p.off + (rows - 1) * p.rs + (kc - 1) * p.cs + 1
}
fn b_extent(p: &PanelB<'_>, kc: usize) -> usize {
    p.off + (kc - 1) * p.rs + NR
}

/// `dst[tile] (+)= a · b` for one panel of `a` (`mr` rows, `tile.rows` of them real) and one
/// or two panels of `b` (`b1` only on paths whose tiles span two).
#[allow(clippy::too_many_arguments)]
fn run_tile(
    isa: Isa,
    kc: usize,
    mr: usize,
    a: PanelA<'_>,
    b0: PanelB<'_>,
    b1: Option<PanelB<'_>>,
    dst: &mut MatMut<'_>,
    tile: Tile,
    add: bool,
) {
    assert!(a_extent(&a, mr, kc) <= a.data.len(), "panel outside its buffer");
    assert!(b_extent(&b0, kc) <= b0.data.len(), "panel outside its buffer");
    assert!(b1.is_none_or(|b1| b_extent(&b1, kc) <= b1.data.len()), "panel outside its buffer");
    let panels = 1 + usize::from(b1.is_some());
    let start = dst.off + tile.row * dst.rs + tile.col * dst.cs;
    let whole = tile.cols == panels * NR && dst.cs == 1;
    #[cfg(target_arch = "x86_64")]
    if whole && isa != Isa::Portable {
        assert!(start + (tile.rows - 1) * dst.rs + tile.cols <= dst.data.len(), "tile outside the result");
        // SAFETY: the CPU has the path's instructions (the executor accepts only available
        // paths); the panels and the tile's rows lie inside their buffers (asserted above).
        unsafe {
            let c = dst.data.as_mut_ptr().add(start);
            simd_tile(isa, tile.rows, kc, &a, &b0, b1.as_ref(), c, dst.rs, add);
        }
        return;
    }
    // Ragged columns (and the portable kernel) go through a local tile with the same
    // arithmetic: the product summed from zero, then added to the result.
    let mut acc = [0.0f32; MR_MAX * TILE_COLS_MAX];
    let width = panels * NR;
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above, writing the local tile (rows of `width`).
        Isa::Avx512 | Isa::Avx2 => unsafe {
            simd_tile(isa, tile.rows, kc, &a, &b0, b1.as_ref(), acc.as_mut_ptr(), width, false);
        },
        _ => {
            portable_tile(tile.rows, kc, &a, &b0, &mut acc[..], width);
            if let Some(b1) = &b1 {
                portable_tile(tile.rows, kc, &a, b1, &mut acc[NR..], width);
            }
        }
    }
    for (i, acc_row) in acc.chunks_exact(width).enumerate().take(tile.rows) {
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

/// The SIMD register tile of `isa` for `rows` rows, written at `c` (rows `ldc` apart).
///
/// # Safety
/// The CPU must support `isa` (not [`Isa::Portable`]); the panels must hold `rows` rows and
/// `kc` steps, and `c` must be valid for `rows` rows of the tile's columns.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn simd_tile(
    isa: Isa,
    rows: usize,
    kc: usize,
    a: &PanelA<'_>,
    b0: &PanelB<'_>,
    b1: Option<&PanelB<'_>>,
    c: *mut f32,
    ldc: usize,
    add: bool,
) {
    // SAFETY: passed on from the caller.
    unsafe {
        let pa = a.data.as_ptr().add(a.off);
        let pb0 = b0.data.as_ptr().add(b0.off);
        match (isa, b1) {
            (Isa::Avx512, Some(b1)) => {
                let pb = [pb0, b1.data.as_ptr().add(b1.off)];
                avx512::tile_rows::<2>(rows, kc, pa, a.rs, a.cs, pb, [b0.rs, b1.rs], c, ldc, add);
            }
            (Isa::Avx512, None) => avx512::tile_rows::<1>(rows, kc, pa, a.rs, a.cs, [pb0], [b0.rs], c, ldc, add),
            _ => avx2::tile_rows(rows, kc, pa, a.rs, a.cs, pb0, b0.rs, c, ldc, add),
        }
    }
}

/// The register tile in plain Rust: `rows` rows of one panel of `b` into `acc` (rows `ldc`
/// apart), each fused multiply-add in the SIMD kernels' order.
fn portable_tile(rows: usize, kc: usize, a: &PanelA<'_>, b: &PanelB<'_>, acc: &mut [f32], ldc: usize) {
    for p in 0..kc {
        let brow = &b.data[b.off + p * b.rs..][..NR];
        for i in 0..rows {
            let ai = a.data[a.off + i * a.rs + p * a.cs];
            for (c, &bj) in acc[i * ldc..][..NR].iter_mut().zip(brow) {
                *c = ai.mul_add(bj, *c);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{nt_tail, MatRef, NtSums, PanelMat, MR_AVX2, NR};
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
    /// matrix `b`, sixteen positions (one panel row) per step in two halves of eight, two
    /// registers per result (lanes 0–7 and 8–15), reduced and finished as `portable_nt_tile`.
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
        sums: &mut NtSums,
    ) {
        // SAFETY: reads stay inside the rows (the caller's obligation): `p + 16 <= body <= k`.
        unsafe {
            // Accumulators by half, column of the tile (row of `b`), then row.
            let mut acc = [[[_mm256_setzero_ps(); ROWS]; COLS]; 2];
            let a_rows: [*const f32; ROWS] = std::array::from_fn(|i| a.data.as_ptr().add(a.off + (i0 + i) * a.rs));
            let body = k / NR * NR;
            let mut p = 0;
            while p < body {
                let panel = b.data.as_ptr().add(b.off + (p / NR) * b.panel_stride);
                for (half, acc) in acc.iter_mut().enumerate() {
                    let va: [__m256; ROWS] = std::array::from_fn(|i| _mm256_loadu_ps(a_rows[i].add(p + 8 * half)));
                    for (j, column) in acc.iter_mut().enumerate() {
                        let vb = _mm256_loadu_ps(panel.add((j0 + j) * NR + 8 * half));
                        for (sum, &x) in column.iter_mut().zip(&va) {
                            *sum = _mm256_fmadd_ps(x, vb, *sum);
                        }
                    }
                }
                p += NR;
            }
            for j in 0..COLS {
                for i in 0..ROWS {
                    let folded = _mm256_add_ps(acc[0][j][i], acc[1][j][i]);
                    sums[i][j] = nt_tail(a, b, i0 + i, j0 + j, body, k, lane_sum(folded));
                }
            }
        }
    }

    /// The eight lanes of `v` summed in `lane_total16`'s order after its fold: (l0+l4, l1+l5, l2+l6, l3+l7),
    /// then pairs 0+2 and 1+3, then their sum.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn lane_sum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let t = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)))
    }

    /// [`nt`] for a tile of `rows` × `cols` (at most 2 × 3).
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
        sums: &mut NtSums,
    ) {
        // SAFETY: passed on to the caller.
        unsafe {
            match (rows, cols) {
                (2, 3) => nt::<2, 3>(k, a, i0, b, j0, sums),
                (2, 2) => nt::<2, 2>(k, a, i0, b, j0, sums),
                (2, _) => nt::<2, 1>(k, a, i0, b, j0, sums),
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
                _ => tile::<MR_AVX2>(kc, a, ars, acs, b, ldb, c, ldc, add),
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{avx2, nt_tail, MatRef, NtSums, PanelMat, MR_AVX512, NR};
    use std::arch::x86_64::*;

    /// `c (+)= a · b` for one `R` × 16·`P` tile held in AVX-512 registers (twenty for ten rows
    /// of two panels): per step of the contraction, `P` loads of `b`, `R` broadcasts of `a`
    /// and `R`·`P` FMAs. Element (i, p) of the `a` panel is at `a + i·ars + p·acs`, row p of
    /// `b` panel q at `b[q] + p·ldb[q]` (16 contiguous), row i of the tile at `c + i·ldc`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, and the panels and the tile's rows must be valid for
    /// those reads and writes.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize, const P: usize>(
        kc: usize,
        a: *const f32,
        ars: usize,
        acs: usize,
        b: [*const f32; P],
        ldb: [usize; P],
        c: *mut f32,
        ldc: usize,
        add: bool,
    ) {
        // SAFETY: every access is inside the panels or the tile (the caller's obligations).
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); P]; R];
            let mut rows = [a; R];
            for (i, r) in rows.iter_mut().enumerate() {
                *r = a.add(i * ars);
            }
            let mut b = b;
            let mut at = 0;
            for _ in 0..kc {
                let mut bv = [_mm512_setzero_ps(); P];
                for q in 0..P {
                    bv[q] = _mm512_loadu_ps(b[q]);
                    b[q] = b[q].add(ldb[q]);
                }
                for i in 0..R {
                    let ai = _mm512_set1_ps(*rows[i].add(at));
                    for q in 0..P {
                        acc[i][q] = _mm512_fmadd_ps(ai, bv[q], acc[i][q]);
                    }
                }
                at += acs;
            }
            for (i, acc) in acc.iter().enumerate() {
                for (q, &v) in acc.iter().enumerate() {
                    let dst = c.add(i * ldc + q * NR);
                    let v = if add { _mm512_add_ps(_mm512_loadu_ps(dst), v) } else { v };
                    _mm512_storeu_ps(dst, v);
                }
            }
        }
    }

    /// [`tile`] for `rows` (1 to 10) rows.
    ///
    /// # Safety
    /// As for [`tile`].
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn tile_rows<const P: usize>(
        rows: usize,
        kc: usize,
        a: *const f32,
        ars: usize,
        acs: usize,
        b: [*const f32; P],
        ldb: [usize; P],
        c: *mut f32,
        ldc: usize,
        add: bool,
    ) {
        // SAFETY: passed on to the caller.
        unsafe {
            match rows {
                1 => tile::<1, P>(kc, a, ars, acs, b, ldb, c, ldc, add),
                2 => tile::<2, P>(kc, a, ars, acs, b, ldb, c, ldc, add),
                3 => tile::<3, P>(kc, a, ars, acs, b, ldb, c, ldc, add),
                4 => tile::<4, P>(kc, a, ars, acs, b, ldb, c, ldc, add),
                5 => tile::<5, P>(kc, a, ars, acs, b, ldb, c, ldc, add),
                6 => tile::<6, P>(kc, a, ars, acs, b, ldb, c, ldc, add),
                7 => tile::<7, P>(kc, a, ars, acs, b, ldb, c, ldc, add),
                8 => tile::<8, P>(kc, a, ars, acs, b, ldb, c, ldc, add),
                9 => tile::<9, P>(kc, a, ars, acs, b, ldb, c, ldc, add),
                _ => tile::<MR_AVX512, P>(kc, a, ars, acs, b, ldb, c, ldc, add),
            }
        }
    }

    /// The dot products of rows `i0..i0+ROWS` of `a` with rows `j0..j0+COLS` of the panel
    /// matrix `b`, sixteen positions (one panel row) per step, one register per result: its
    /// lanes reduced as `lane_total16` orders them, plus the ragged tail in order.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; the rows must lie inside the operands.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn nt<const ROWS: usize, const COLS: usize>(
        k: usize,
        a: &MatRef<'_>,
        i0: usize,
        b: &PanelMat<'_>,
        j0: usize,
        sums: &mut NtSums,
    ) {
        // SAFETY: reads stay inside the rows (the caller's obligation): `p + 16 <= body <= k`.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); ROWS]; COLS];
            let a_rows: [*const f32; ROWS] = std::array::from_fn(|i| a.data.as_ptr().add(a.off + (i0 + i) * a.rs));
            let body = k / NR * NR;
            let mut p = 0;
            while p < body {
                let panel = b.data.as_ptr().add(b.off + (p / NR) * b.panel_stride);
                let va: [__m512; ROWS] = std::array::from_fn(|i| _mm512_loadu_ps(a_rows[i].add(p)));
                for (j, column) in acc.iter_mut().enumerate() {
                    let vb = _mm512_loadu_ps(panel.add((j0 + j) * NR));
                    for (sum, &x) in column.iter_mut().zip(&va) {
                        *sum = _mm512_fmadd_ps(x, vb, *sum);
                    }
                }
                p += NR;
            }
            for (j, column) in acc.iter().enumerate() {
                for (i, &v) in column.iter().enumerate() {
                    let folded = _mm256_add_ps(
                        _mm512_castps512_ps256(v),
                        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)),
                    );
                    sums[i][j] = nt_tail(a, b, i0 + i, j0 + j, body, k, avx2::lane_sum(folded));
                }
            }
        }
    }

    /// [`nt`] for a tile of `rows` × `cols` (at most 4 × 6).
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
        sums: &mut NtSums,
    ) {
        // SAFETY: passed on to the caller.
        unsafe {
            match (rows, cols) {
                (4, 6) => nt::<4, 6>(k, a, i0, b, j0, sums),
                (4, 5) => nt::<4, 5>(k, a, i0, b, j0, sums),
                (4, 4) => nt::<4, 4>(k, a, i0, b, j0, sums),
                (4, 3) => nt::<4, 3>(k, a, i0, b, j0, sums),
                (4, 2) => nt::<4, 2>(k, a, i0, b, j0, sums),
                (4, _) => nt::<4, 1>(k, a, i0, b, j0, sums),
                (3, 6) => nt::<3, 6>(k, a, i0, b, j0, sums),
                (3, 5) => nt::<3, 5>(k, a, i0, b, j0, sums),
                (3, 4) => nt::<3, 4>(k, a, i0, b, j0, sums),
                (3, 3) => nt::<3, 3>(k, a, i0, b, j0, sums),
                (3, 2) => nt::<3, 2>(k, a, i0, b, j0, sums),
                (3, _) => nt::<3, 1>(k, a, i0, b, j0, sums),
                (2, 6) => nt::<2, 6>(k, a, i0, b, j0, sums),
                (2, 5) => nt::<2, 5>(k, a, i0, b, j0, sums),
                (2, 4) => nt::<2, 4>(k, a, i0, b, j0, sums),
                (2, 3) => nt::<2, 3>(k, a, i0, b, j0, sums),
                (2, 2) => nt::<2, 2>(k, a, i0, b, j0, sums),
                (2, _) => nt::<2, 1>(k, a, i0, b, j0, sums),
                (_, 6) => nt::<1, 6>(k, a, i0, b, j0, sums),
                (_, 5) => nt::<1, 5>(k, a, i0, b, j0, sums),
                (_, 4) => nt::<1, 4>(k, a, i0, b, j0, sums),
                (_, 3) => nt::<1, 3>(k, a, i0, b, j0, sums),
                (_, 2) => nt::<1, 2>(k, a, i0, b, j0, sums),
                _ => nt::<1, 1>(k, a, i0, b, j0, sums),
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
                gemm(Isa::best(), dst, a, b, true, &mut pack);
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
            gemm(Isa::best(), MatMut::new(&mut want, 0, m, n, n, 1), a, b, false, &mut pack);
            gemm_panels(
                Isa::best(),
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
                Isa::best(),
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

    /// Values whose products and sums round, so a different order or a missing fusion shows.
    fn awkward(len: usize, seed: usize) -> Vec<f32> {
        (0..len).map(|i| ((i * 7919 + seed * 104_729) % 1013) as f32 / 97.0 - 5.1).collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn every_path_computes_the_same_bits() {
        let available: Vec<Isa> = Isa::ALL.into_iter().filter(|isa| isa.is_available()).collect();
        for isa in Isa::ALL.into_iter().filter(|isa| !isa.is_available()) {
            println!("skipping the {isa} path: this CPU lacks it");
        }
        let shapes =
            [(1, 1, 1), (7, 17, 5), (20, 576, 25), (50, 64, 500), (13, 45, 300), (100, 500, 784), (31, 33, 600)];
        for (m, n, k) in shapes {
            let a_data = awkward(m * k, 1);
            let b_data = awkward(k * n, 2);
            let mut results = Vec::new();
            for &isa in &available {
                for (ta, tb) in [(false, false), (true, false), (false, true)] {
                    let a =
                        if ta { MatRef::new(&a_data, 0, k, m, m, 1).t() } else { MatRef::new(&a_data, 0, m, k, k, 1) };
                    let b =
                        if tb { MatRef::new(&b_data, 0, n, k, k, 1).t() } else { MatRef::new(&b_data, 0, k, n, n, 1) };
                    let mut c = awkward(m * n, 3);
                    let mut pack = vec![f32::NAN; pack_len(m, n, k)];
                    gemm(isa, MatMut::new(&mut c, 0, m, n, n, 1), a, b, true, &mut pack);
                    results.push((isa, ta, tb, bits(&c)));
                }
                // The dot-product kernel on rows of `a` and of `bᵀ` (b's columns as panels),
                // filed under the layout (true, true), which the products above do not use.
                let stride = 16 * (n + 1);
                let mut panels = vec![0.0; k.div_ceil(16) * stride];
                for j in 0..n {
                    for p in 0..k {
                        panels[(p / 16) * stride + 16 * j + p % 16] = b_data[p * n + j];
                    }
                }
                let mut c = vec![0.0; m * n];
                let a = MatRef::new(&a_data, 0, m, k, k, 1);
                gemm_nt(isa, MatMut::new(&mut c, 0, m, n, n, 1), a, PanelMat::new(&panels, 0, n, k, stride));
                results.push((isa, true, true, bits(&c)));
            }
            // The same operands (the same transposes) on every path give the same bits.
            for r in &results {
                let first = results.iter().find(|q| (q.1, q.2) == (r.1, r.2)).expect("itself");
                assert!(r.3 == first.3, "{m}x{n}x{k} (layout {} {}): {} differs from {}", r.1, r.2, r.0, first.0);
            }
        }
    }

    #[test]
    fn isa_names_round_trip() {
        for isa in Isa::ALL {
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
        }
        assert_eq!(Isa::from_name("sse9"), None);
        assert!(Isa::Portable.is_available() && Isa::best().is_available());
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn views_past_their_buffer_are_refused() {
        let a = [0.0; 5];
        let _ = MatRef::new(&a, 0, 2, 3, 3, 1);
    }
}
