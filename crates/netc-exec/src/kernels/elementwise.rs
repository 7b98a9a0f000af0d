//! The epilogues of GEMM steps: per-channel bias and activation, applied to the product in
//! place. Each loop body is a concrete closure (see `with_act!`) so LLVM vectorises it;
//! chunks of [`ELEMENTS_PER_TASK`] run in parallel, which cannot change any result. (Other
//! elementwise work is fused and JIT-compiled; see `fuse.rs`.)

use crate::par::{Par, ELEMENTS_PER_TASK};
use netc_ir::UnaryFn;

/// Runs `$body` with `$op` bound to a closure computing the activation `$act`
/// (`Option<UnaryFn>`, `None` = identity) on an `f32`, bit for bit as `UnaryFn::eval` in `f64`
/// rounded to `f32` (what the interpreter computes). Cheap functions get `f32` forms with the
/// same results; the transcendental ones go through `eval`.
macro_rules! with_act {
    ($act:expr, |$op:ident| $body:expr) => {{
        use netc_ir::UnaryFn as U;
        match $act {
            None => {
                let $op = |x: f32| x;
                $body
            }
            Some(U::Relu) => {
                let $op = |x: f32| x.max(0.0);
                $body
            }
            Some(U::ReluDeriv) => {
                let $op = |x: f32| if x > 0.0 { 1.0 } else { 0.0 };
                $body
            }
            Some(U::Scale { c }) => {
                let c = c as f32;
                let $op = move |x: f32| x * c;
                $body
            }
            Some(U::Equal { value }) => {
                let $op = move |x: f32| if f64::from(x) == value { 1.0 } else { 0.0 };
                $body
            }
            Some(f) => {
                let $op = move |x: f32| f.eval(f64::from(x)) as f32;
                $body
            }
        }
    }};
}

/// `data = act(data)`
pub(crate) fn act_in_place(par: Par, act: Option<UnaryFn>, data: &mut [f32]) {
    if act.is_none() {
        return;
    }
    with_act!(act, |op| par.chunks_mut(data, ELEMENTS_PER_TASK, |_, data, _| {
        for v in data.iter_mut() {
            *v = op(*v);
        }
    }))
}

/// `data += bias[c]` for `data` of shape `[outer, channels, inner]`.
pub(crate) fn bias_in_place(par: Par, bias: &[f32], inner: usize, data: &mut [f32]) {
    let channels = bias.len();
    if inner == 0 || channels == 0 {
        return;
    }
    let rows_per_task = (ELEMENTS_PER_TASK / inner).max(1);
    par.chunks_mut(data, rows_per_task * inner, |t, data, _| {
        for (r, row) in data.chunks_mut(inner).enumerate() {
            let b = bias[(t * rows_per_task + r) % channels];
            row.iter_mut().for_each(|v| *v += b);
        }
    })
}

/// `rows = act(rows + bias[first_channel + r])` for the rows (of `inner` elements) of `data`:
/// the epilogue of a convolution, on one task's images. With `pre` (as long as `data`), the
/// biased rows are also stored there: the pre-activation, for a backward pass that reads it.
#[inline(always)]
pub(crate) fn bias_act_rows(
    data: &mut [f32],
    pre: Option<&mut [f32]>,
    inner: usize,
    bias: Option<&[f32]>,
    act: Option<UnaryFn>,
) {
    if inner == 0 {
        return;
    }
    let b = |r: usize| bias.map(|b| b[r % b.len()]);
    with_act!(act, |op| match pre {
        None => {
            for (r, row) in data.chunks_mut(inner).enumerate() {
                match b(r) {
                    Some(b) => row.iter_mut().for_each(|v| *v = op(*v + b)),
                    None => row.iter_mut().for_each(|v| *v = op(*v)),
                }
            }
        }
        Some(pre) => {
            for (r, (row, pre)) in data.chunks_mut(inner).zip(pre.chunks_mut(inner)).enumerate() {
                keep_pre(row, pre, b(r), op);
            }
        }
    })
}

/// `pre = row + b; row = op(pre)` (no addition without a bias, which would turn -0 into +0).
#[inline(always)]
fn keep_pre(row: &mut [f32], pre: &mut [f32], b: Option<f32>, op: impl Fn(f32) -> f32) {
    match b {
        Some(b) => row.iter_mut().zip(pre).for_each(|(v, p)| {
            *p = *v + b;
            *v = op(*p);
        }),
        None => row.iter_mut().zip(pre).for_each(|(v, p)| {
            *p = *v;
            *v = op(*p);
        }),
    }
}

/// `dst = act(src + b)` for one row, and `pre = src + b` where given.
#[inline(always)]
pub(crate) fn copy_bias_act(
    src: &[f32],
    dst: &mut [f32],
    pre: Option<&mut [f32]>,
    b: Option<f32>,
    act: Option<UnaryFn>,
) {
    with_act!(act, |op| match (pre, b) {
        (None, Some(b)) => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = op(s + b)),
        (None, None) => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = op(s)),
        (Some(pre), Some(b)) => dst.iter_mut().zip(pre).zip(src).for_each(|((d, p), &s)| {
            *p = s + b;
            *d = op(*p);
        }),
        (Some(pre), None) => dst.iter_mut().zip(pre).zip(src).for_each(|((d, p), &s)| {
            *p = s;
            *d = op(s);
        }),
    })
}

/// `rows[i][j] = act(rows[i][j] + bias[j])`: the epilogue of a matrix product whose columns
/// are channels; with `pre`, the biased rows are also stored there.
pub(crate) fn bias_act_cols(
    data: &mut [f32],
    pre: Option<&mut [f32]>,
    bias: Option<&[f32]>,
    act: Option<UnaryFn>,
    cols: usize,
) {
    if cols == 0 {
        return;
    }
    with_act!(act, |op| match pre {
        None => {
            for row in data.chunks_mut(cols) {
                match bias {
                    Some(b) => row.iter_mut().zip(b).for_each(|(v, &b)| *v = op(*v + b)),
                    None => row.iter_mut().for_each(|v| *v = op(*v)),
                }
            }
        }
        Some(pre) => {
            for (row, pre) in data.chunks_mut(cols).zip(pre.chunks_mut(cols)) {
                match bias {
                    Some(b) => row.iter_mut().zip(pre).zip(b).for_each(|((v, p), &b)| {
                        *p = *v + b;
                        *v = op(*p);
                    }),
                    None => keep_pre(row, pre, None, op),
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_match_the_f64_definition_bit_for_bit() {
        let fns = [
            UnaryFn::Relu,
            UnaryFn::ReluDeriv,
            UnaryFn::Scale { c: 1.0 / 0.7 },
            UnaryFn::Scale { c: -1.0 },
            UnaryFn::Equal { value: 1.0 },
            UnaryFn::Tanh,
            UnaryFn::Softplus,
        ];
        let xs = [-3.7f32, -1.0, -1e-30, 0.0, 1e-30, 0.3, 1.0, 2.5, 1e30, f32::INFINITY, f32::NAN];
        for f in fns {
            let mut out = xs;
            act_in_place(Par::new(1), Some(f), &mut out);
            for (&x, &y) in xs.iter().zip(&out) {
                let want = f.eval(f64::from(x)) as f32;
                assert!(
                    want.to_bits() == y.to_bits() || (want.is_nan() && y.is_nan()),
                    "{f:?}({x}) = {y}, want {want}"
                );
            }
        }
    }

    #[test]
    fn the_bias_goes_to_every_element_of_its_channel() {
        let mut data = [1.0, -2.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0];
        bias_in_place(Par::new(1), &[0.5, 10.0], 2, &mut data);
        assert_eq!(data, [1.5, -1.5, 13.0, 6.0, 5.5, -5.5, 17.0, 2.0]);
    }
}
