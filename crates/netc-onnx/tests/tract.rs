//! tract loads every example's ONNX export and computes the interpreter's logits (within
//! `common::TOLERANCE`) from the raw inputs.

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
        if difference > common::TOLERANCE {
            failures.push(format!("{}: {difference:.2e}", case.name));
        }
    }
    assert!(failures.is_empty(), "logits differ by more than {}: {failures:?}", common::TOLERANCE);
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
