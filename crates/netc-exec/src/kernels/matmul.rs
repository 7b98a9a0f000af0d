//! Matrix products, tiled over output rows, or over columns when there are few rows (a
//! batch): a row tile packs the whole right operand (the weights) once per task, a column tile
//! only its own columns. Each tile is one GEMM over the whole contraction, so no sum is ever
//! split across tasks, and each element is summed in the same order whatever the tiling; tiles
//! depend only on the shapes.

use super::elementwise::bias_act_cols;
use crate::gemm::{gemm, gemm_panels, pack_len, pack_rhs, panels_len, MatMut, MatRef, B_IN_PLACE_ROWS, ROW_MULTIPLE};
use crate::par::{split, Par, Scratch};
use netc_ir::UnaryFn;

/// `c[m × n] = op(a)[m × k] · op(b)[k × n]`, with strides of `op(a)` and `op(b)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MatMul {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    a_rs: usize,
    a_cs: usize,
    b_rs: usize,
    b_cs: usize,
    /// Output rows per task.
    rows: usize,
    /// With few rows: columns per task instead (see [`MatMul::by_columns`]).
    columns: Option<usize>,
    /// Whether row tiles share the right operand packed once: with several tasks whose GEMMs
    /// would each pack all of it (more rows than it reads in place for).
    shared_rhs: bool,
}

/// Products with at most this many rows, and columns for two tiles or more, are tiled over
/// columns.
const FEW_ROWS: usize = 128;
/// Columns per column tile: whole panels of the GEMM.
const COLUMN_TILE: usize = 128;

/// Below this many multiply-adds a product is one task.
const SMALL: usize = 1 << 20;

impl MatMul {
    pub fn new(a: &[usize], b: &[usize], trans_a: bool, trans_b: bool) -> MatMul {
        let (a0, a1) = (a[0], a[1]);
        let (b0, b1) = (b[0], b[1]);
        let (m, k, a_rs, a_cs) = if trans_a { (a1, a0, 1, a1) } else { (a0, a1, a1, 1) };
        let (n, b_rs, b_cs) = if trans_b { (b0, 1, b1) } else { (b1, b1, 1) };
        // A few large tiles: each GEMM packs its operands, so many small tiles repeat work. Whole
        // register tiles of rows per task (on every path) leave at most one partial tile.
        let rows =
            if m * n * k <= SMALL { m } else { split(m, m.div_ceil(8).max(32)).1.next_multiple_of(ROW_MULTIPLE) };
        let columns = (m * n * k > SMALL && m <= FEW_ROWS && n >= 2 * COLUMN_TILE).then_some(COLUMN_TILE);
        let rows = rows.max(1);
        let shared_rhs = columns.is_none() && rows < m && rows > B_IN_PLACE_ROWS;
        MatMul { m, n, k, a_rs, a_cs, b_rs, b_cs, rows, columns, shared_rhs }
    }

    /// Scratch for `threads` workers: GEMM packing per worker, and for column tiles their
    /// results before they are copied into place.
    pub fn scratch_len(&self, threads: usize) -> usize {
        match self.columns {
            Some(cols) => pack_len(self.m, cols, self.k) * threads + self.m * self.n.next_multiple_of(cols),
            None => pack_len(self.rows, self.n, self.k) * threads + self.shared_len(),
        }
    }

    /// `c = act(a · b + bias)`; with `pre`, `a · b + bias` is stored there too.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        par: Par,
        a: &[f32],
        b: &[f32],
        bias: Option<&[f32]>,
        act: Option<UnaryFn>,
        c: &mut [f32],
        pre: Option<&mut [f32]>,
        scratch: &mut [f32],
    ) {
        let n = self.n;
        if n == 0 {
            return;
        }
        if let Some(cols) = self.columns {
            return self.by_columns(par, cols, a, b, bias, act, c, pre, scratch);
        }
        let (panels, scratch) = scratch.split_at_mut(self.shared_len());
        let b = MatRef::new(b, 0, self.k, n, self.b_rs, self.b_cs);
        let shared = self.shared_rhs.then(|| pack_rhs(par, b, panels));
        let scratch = Scratch::new(scratch, par.threads());
        par.chunks_mut_beside(c, self.rows * n, pre, |t, c, pre, worker| {
            let r0 = t * self.rows;
            let rows = c.len() / n;
            let a = MatRef::new(a, r0 * self.a_rs, rows, self.k, self.a_rs, self.a_cs);
            // SAFETY: `worker` comes from `Par`, which runs one task per worker at a time.
            let pack = unsafe { scratch.worker(worker) };
            let dst = MatMut::new(c, 0, rows, n, n, 1);
            match shared {
                Some(panels) => gemm_panels(par.isa(), dst, a, panels, false, pack),
                None => gemm(par.isa(), dst, a, b, false, pack),
            }
            if bias.is_some() || act.is_some() {
                bias_act_cols(c, pre, bias, act, n);
            }
        });
    }
}

impl MatMul {
    /// Scratch for the shared right operand, if any.
    fn shared_len(&self) -> usize {
        if self.shared_rhs {
            panels_len(self.k, self.n)
        } else {
            0
        }
    }

    /// Column tiles: each task multiplies all rows of `a` by its `cols` columns of `b` into its
    /// own block of the staging memory, then the rows of `c` are assembled from the blocks.
    #[allow(clippy::too_many_arguments)]
    fn by_columns(
        &self,
        par: Par,
        cols: usize,
        a: &[f32],
        b: &[f32],
        bias: Option<&[f32]>,
        act: Option<UnaryFn>,
        c: &mut [f32],
        pre: Option<&mut [f32]>,
        scratch: &mut [f32],
    ) {
        let (m, n, k) = (self.m, self.n, self.k);
        let (staging, packs) = scratch.split_at_mut(m * n.next_multiple_of(cols));
        let packs = Scratch::new(packs, par.threads());
        let a = MatRef::new(a, 0, m, k, self.a_rs, self.a_cs);
        par.chunks_mut(staging, m * cols, |t, block, worker| {
            let (j0, width) = (t * cols, cols.min(n - t * cols));
            let b = MatRef::new(b, j0 * self.b_cs, k, width, self.b_rs, self.b_cs);
            // SAFETY: `worker` comes from `Par`, which runs one task per worker at a time.
            let pack = unsafe { packs.worker(worker) };
            gemm(par.isa(), MatMut::new(block, 0, m, width, width, 1), a, b, false, pack);
        });
        let staging = &*staging;
        par.chunks_mut_beside(c, n, pre, |i, row, pre, _| {
            for (t, part) in row.chunks_mut(cols).enumerate() {
                part.copy_from_slice(&staging[t * m * cols + i * part.len()..][..part.len()]);
            }
            if bias.is_some() || act.is_some() {
                bias_act_cols(row, pre, bias, act, n);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of 100 rows by 300 columns (the last column tile partial), over 70: the
    /// operands `a`, `b` and a bias.
    const BATCH: (usize, usize, usize) = (100, 300, 70);

    fn batch_operands() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (m, n, k) = BATCH;
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 997) as f32 / 89.0 - 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 991) as f32 / 97.0 - 5.0).collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 / 50.0 - 3.0).collect();
        (a, b, bias)
    }

    #[test]
    fn column_tiles_give_the_row_tiles_bits() {
        // Both operand orientations.
        let ((m, n, k), (a, b, bias)) = (BATCH, batch_operands());
        for trans_b in [false, true] {
            let b_dims = if trans_b { [n, k] } else { [k, n] };
            let tiled = MatMul::new(&[m, k], &b_dims, false, trans_b);
            assert!(tiled.columns.is_some(), "{tiled:?}");
            let by_rows = MatMul { columns: None, ..tiled };
            for threads in [1, 2] {
                let mut results = Vec::new();
                for mm in [tiled, by_rows] {
                    let mut scratch = vec![0.0; mm.scratch_len(threads)];
                    let mut c = vec![f32::NAN; m * n];
                    mm.run(Par::new(threads), &a, &b, Some(&bias), Some(UnaryFn::Relu), &mut c, None, &mut scratch);
                    results.push(c.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
                }
                assert_eq!(results[0], results[1], "trans_b {trans_b}, {threads} threads");
            }
        }
    }

    #[test]
    fn row_tiles_sharing_the_packed_right_operand_give_its_bits() {
        // Inference's 1,000 × 500 × 784 in small: several tasks of more rows than a GEMM reads
        // the right operand in place for, columns not a multiple of a panel.
        let (m, n, k) = (1200, 90, 70);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 997) as f32 / 89.0 - 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104_729) % 991) as f32 / 97.0 - 5.0).collect();
        for trans_b in [false, true] {
            let b_dims = if trans_b { [n, k] } else { [k, n] };
            let shared = MatMul::new(&[m, k], &b_dims, false, trans_b);
            assert!(shared.shared_rhs && shared.rows < m, "{shared:?}");
            let apart = MatMul { shared_rhs: false, ..shared };
            for threads in [1, 2] {
                let results: Vec<Vec<u32>> = [shared, apart]
                    .iter()
                    .map(|mm| {
                        let mut scratch = vec![f32::NAN; mm.scratch_len(threads)];
                        let mut c = vec![f32::NAN; m * n];
                        mm.run(Par::new(threads), &a, &b, None, Some(UnaryFn::Relu), &mut c, None, &mut scratch);
                        c.iter().map(|v| v.to_bits()).collect()
                    })
                    .collect();
                assert_eq!(results[0], results[1], "trans_b {trans_b}, {threads} threads");
            }
        }
    }

    #[test]
    fn a_kept_pre_activation_is_the_biased_product() {
        // Row tiles and column tiles, with and without a bias (no bias: stored as computed).
        let ((m, n, k), (a, b, bias)) = (BATCH, batch_operands());
        let tiled = MatMul::new(&[m, k], &[k, n], false, false);
        for mm in [tiled, MatMul { columns: None, ..tiled }] {
            for (bias, threads) in [(Some(&bias[..]), 1), (Some(&bias[..]), 2), (None, 2)] {
                let mut scratch = vec![0.0; mm.scratch_len(threads)];
                let mut run = |act: Option<UnaryFn>, pre: Option<&mut [f32]>| {
                    let mut c = vec![f32::NAN; m * n];
                    mm.run(Par::new(threads), &a, &b, bias, act, &mut c, pre, &mut scratch);
                    c.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                let (product, activated) = (run(None, None), run(Some(UnaryFn::Softplus), None));
                let mut pre = vec![f32::NAN; m * n];
                let both = run(Some(UnaryFn::Softplus), Some(&mut pre));
                let pre: Vec<u32> = pre.iter().map(|v| v.to_bits()).collect();
                assert!(pre == product && both == activated, "{mm:?}, bias {}, {threads} threads", bias.is_some());
            }
        }
    }

    #[test]
    fn transposes_read_the_operands_the_right_way_round() {
        // a = [[1, 2], [3, 4]], b = [[5, 6], [7, 8]]
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [5.0, 6.0, 7.0, 8.0];
        let cases = [
            (false, false, [19.0, 22.0, 43.0, 50.0]),
            (true, false, [26.0, 30.0, 38.0, 44.0]),
            (false, true, [17.0, 23.0, 39.0, 53.0]),
            (true, true, [23.0, 31.0, 34.0, 46.0]),
        ];
        let mut pack = vec![0.0; 1024];
        for (ta, tb, want) in cases {
            let mut c = [0.0; 4];
            let mm = MatMul::new(&[2, 2], &[2, 2], ta, tb);
            mm.run(Par::new(1), &a, &b, None, None, &mut c, None, &mut pack[..mm.scratch_len(1)]);
            assert_eq!(c, want, "{ta} {tb}");
        }
        let mut c = [0.0; 4];
        let mm = MatMul::new(&[2, 2], &[2, 2], false, false);
        mm.run(
            Par::new(1),
            &a,
            &b,
            Some(&[-20.0, 0.0]),
            Some(UnaryFn::Relu),
            &mut c,
            None,
            &mut pack[..mm.scratch_len(1)],
        );
        assert_eq!(c, [0.0, 22.0, 23.0, 50.0]);
    }
}
