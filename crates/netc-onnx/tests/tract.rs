//! tract loads every example's ONNX export and computes the interpreter's logits (within
//! `common::TOLERANCE` of their scale) from the raw inputs.

mod common;

use tract_onnx::prelude::*;

fn run(case: &common::Case) -> TractResult<Vec<f32>> {
    let model = tract_onnx::onnx()
        .model_for_read(&mut case.onnx.as_slice())?
        .with_input_fact(0, f32::fact(&case.input_shape).into())?
        .into_optimized()?
        .into_runnable()?;
    let input = Tensor::from_shape(&case.input_shape, &case.input)?;
    let outputs = model.run(tvec!(input.into()))?;
    Ok(outputs[0].to_plain_array_view::<f32>()?.iter().copied().collect())
}

#[test]
fn tract_computes_the_interpreters_logits_for_every_example() {
    let mut failures = Vec::new();
    for case in common::cases() {
        let logits = run(case).unwrap_or_else(|e| panic!("{}: tract cannot run the export: {e:?}", case.name));
        assert_eq!(logits.len(), common::BATCH * case.classes, "{}", case.name);
        let difference = max_difference(&logits, &case.logits);
        println!("{}: max |tract − netc| = {difference:.2e} (largest logit {:.3})", case.name, largest(&case.logits));
        if !within_tolerance(difference, largest(&case.logits)) {
            failures.push(format!("{}: {difference:.2e}", case.name));
        }
    }
    assert!(failures.is_empty(), "logits differ by more than {} of their scale: {failures:?}", common::TOLERANCE);
}

/// Whether `difference` is within `common::TOLERANCE` for logits whose largest magnitude is
/// `largest` (as `tools/onnx_check.py` judges ONNX Runtime).
fn within_tolerance(difference: f32, largest: f32) -> bool {
    difference <= common::TOLERANCE * largest.max(1.0)
}

/// The largest absolute difference between two equally long runs of logits.
pub fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// The largest logit's magnitude, to show how large the differences are relative to it.
pub fn largest(logits: &[f32]) -> f32 {
    logits.iter().fold(0.0, |m, x| m.max(x.abs()))
}
