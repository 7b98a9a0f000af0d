//! Softmax cross-entropy and its gradient, row by row in the interpreter's order (these are
//! tiny next to the layers, and matching the reference bit for bit costs nothing).

use super::reduce::beats;
use crate::ExecError;

/// Each label as a class index, or the first that is not one.
fn class(labels: &[f32], row: usize, classes: usize) -> Result<usize, ExecError> {
    let v = labels.get(row).copied().unwrap_or(f32::NAN);
    let x = f64::from(v);
    if x >= 0.0 && x.fract() == 0.0 && (x as usize) < classes {
        Ok(x as usize)
    } else {
        Err(ExecError::BadLabel { example: row, value: v, classes })
    }
}

/// `(max, Σ exp(z − max))` of a row.
fn row_stats(row: &[f32]) -> (f32, f32) {
    let max = row.iter().copied().fold(row[0], |m, v| if beats(v, m) { v } else { m });
    let mut sum = 0.0f32;
    for &v in row {
        sum += (v - max).exp();
    }
    (max, sum)
}

/// The mean over rows of `logsumexp(z) − z[label]`.
pub(crate) fn xent(z: &[f32], labels: &[f32], classes: usize, out: &mut [f32]) -> Result<(), ExecError> {
    let mut total = 0.0f32;
    let mut rows = 0;
    for (r, row) in z.chunks_exact(classes.max(1)).enumerate() {
        let label = class(labels, r, classes)?;
        let (max, sum) = row_stats(row);
        total += (max + sum.ln()) - row[label];
        rows += 1;
    }
    if let Some(o) = out.first_mut() {
        *o = total / rows.max(1) as f32;
    }
    Ok(())
}

/// `(softmax(z) − onehot(label)) / rows`
pub(crate) fn xent_grad(z: &[f32], labels: &[f32], classes: usize, out: &mut [f32]) -> Result<(), ExecError> {
    let rows = z.len() / classes.max(1);
    let scale = (1.0 / rows.max(1) as f64) as f32;
    for (r, (row, dz)) in z.chunks_exact(classes.max(1)).zip(out.chunks_exact_mut(classes.max(1))).enumerate() {
        let label = class(labels, r, classes)?;
        let (max, sum) = row_stats(row);
        for (k, (d, &v)) in dz.iter_mut().zip(row).enumerate() {
            let p = (v - max).exp() / sum;
            let target = if k == label { 1.0 } else { 0.0 };
            *d = (p - target) * scale;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_of_uniform_scores_is_log_classes_and_bad_labels_are_refused() {
        let mut loss = [0.0];
        xent(&[0.0; 8], &[1.0, 3.0], 4, &mut loss).unwrap();
        assert!((loss[0] - 4f32.ln()).abs() < 1e-6);
        let mut grad = [0.0; 8];
        xent_grad(&[0.0; 8], &[1.0, 3.0], 4, &mut grad).unwrap();
        assert_eq!(grad, [0.125, -0.375, 0.125, 0.125, 0.125, 0.125, 0.125, -0.375]);
        for bad in [4.0, -1.0, 0.5, f32::NAN] {
            let err = xent(&[0.0; 8], &[1.0, bad], 4, &mut loss).unwrap_err();
            assert!(matches!(err, ExecError::BadLabel { example: 1, classes: 4, .. }), "{err:?}");
        }
    }
}
