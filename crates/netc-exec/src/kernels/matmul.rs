//! Matrix products, tiled over output rows. Each tile is one GEMM over the whole contraction,
//! so no sum is ever split across tasks; tiles depend only on the shapes.

use super::elementwise::bias_act_cols;
use crate::gemm::{gemm, pack_len, MatMut, MatRef, ROW_MULTIPLE};
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
}

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
        MatMul { m, n, k, a_rs, a_cs, b_rs, b_cs, rows: rows.max(1) }
    }

    /// GEMM packing memory per worker.
    pub fn worker_scratch(&self) -> usize {
        pack_len(self.rows, self.n, self.k)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        par: Par,
        a: &[f32],
        b: &[f32],
        bias: Option<&[f32]>,
        act: Option<UnaryFn>,
        c: &mut [f32],
        scratch: &Scratch<'_>,
    ) {
        let n = self.n;
        if n == 0 {
            return;
        }
        par.chunks_mut(c, self.rows * n, |t, c, worker| {
            let r0 = t * self.rows;
            let rows = c.len() / n;
            let a = MatRef::new(a, r0 * self.a_rs, rows, self.k, self.a_rs, self.a_cs);
            let b = MatRef::new(b, 0, self.k, n, self.b_rs, self.b_cs);
            // SAFETY: `worker` comes from `Par`, which runs one task per worker at a time.
            let pack = unsafe { scratch.worker(worker) };
            gemm(par.isa(), MatMut::new(c, 0, rows, n, n, 1), a, b, false, pack);
            if bias.is_some() || act.is_some() {
                bias_act_cols(c, bias, act, n);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            mm.run(Par::new(1), &a, &b, None, None, &mut c, &Scratch::new(&mut pack[..mm.worker_scratch()], 1));
            assert_eq!(c, want, "{ta} {tb}");
        }
        let mut c = [0.0; 4];
        let mm = MatMul::new(&[2, 2], &[2, 2], false, false);
        let scratch = Scratch::new(&mut pack[..mm.worker_scratch()], 1);
        mm.run(Par::new(1), &a, &b, Some(&[-20.0, 0.0]), Some(UnaryFn::Relu), &mut c, &scratch);
        assert_eq!(c, [0.0, 22.0, 23.0, 50.0]);
    }
}
