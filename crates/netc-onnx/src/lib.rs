//! ONNX export: an evaluation-mode netc IR [`Program`] and the values of its parameters as an
//! ONNX model (opset [`OPSET`]) that takes the net's raw input — the trainer's preprocessing is
//! part of the graph — and outputs the logits. Nothing else of netc is needed to run it.
//!
//! Every op an evaluation-mode forward program holds maps to primitive ONNX ops: layers and
//! user-defined units alike arrive here as IR ops (`min`, `max`, `select`, `exp`, …), fixed masks
//! as constants, resampled masks already as their expectation. Each ONNX node is named after the
//! layer its IR instruction came from (`conv1/Conv`), each parameter keeps its IR name
//! (`conv1.weight`). An op with no ONNX counterpart (backward-pass ops, random numbers) is an
//! [`ExportError`] naming its layer.
//!
//! ```
//! let text = "program tiny (eval) {
//!   source x span=0..9
//!   source dense1 layer=0 span=10..19
//!   %0: [N,3] = input x                                   # x
//!   %1: [N] = labels
//!   %2: [2,3] = param dense1.weight role=weight init=fans(3,2)  # dense1
//!   %3: [N,2] = matmul %0, %2 trans_b                     # dense1
//!   %4: [] = softmax_xent %3, %1
//!   return loss = %4
//!   return logits = %3
//! }
//! ";
//! let program = netc_ir::parse(text).unwrap();
//! let weight = netc_ir::Tensor::new(vec![2, 3], vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).unwrap();
//! let params = [("dense1.weight".to_string(), weight)];
//! let model = netc_onnx::model(&program, &params, &[netc_onnx::Preprocess::Divide(255.0)]).unwrap();
//! let graph = model.graph.unwrap();
//! assert_eq!(model.opset_import[0].version, netc_onnx::OPSET);
//! assert_eq!((graph.input[0].name.as_str(), graph.output[0].name.as_str()), ("x", "logits"));
//! let ops: Vec<&str> = graph.node.iter().map(|n| n.name.as_str()).collect();
//! assert_eq!(ops, ["preprocess/Div", "dense1/Gemm"]);
//! ```

mod graph;
mod translate;

#[rustfmt::skip]
#[allow(clippy::all, clippy::pedantic)]
pub mod onnx;

use netc_ir::{Program, Source, Tensor};
use std::fmt;

/// The ONNX operator set the exported models use (ONNX 1.12 and later, ONNX Runtime 1.12 and
/// later, tract).
pub const OPSET: i64 = 17;
/// The ONNX IR version that goes with [`OPSET`].
pub const IR_VERSION: i64 = 8;

/// A step of the preprocessing that the net's raw input goes through, in the order given:
/// what the trainer applies to every example (`netc_train::Statistics::apply`).
#[derive(Clone, Debug, PartialEq)]
pub enum Preprocess {
    /// `x / divisor` (`preprocess = scale` divides pixels by 255).
    Divide(f32),
    /// `x − mean`, the mean training image, of the input's per-example shape.
    SubtractMean(Tensor),
    /// Contrast normalisation of each example: less its mean, then times
    /// `mean_norm / max(std, min_norm)`, where `std` is the standard deviation of the centred
    /// example (divisor `D − 1`, `D` values).
    ContrastNorm { mean_norm: f32, min_norm: f32 },
    /// ZCA whitening of each example flattened to `D` values: `z ← W z` with `W` of `D × D`.
    Whiten(Tensor),
}

/// Why a program could not be exported.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportError {
    /// The layer (or the net's input, or `loss`) of the instruction that could not be exported.
    pub source: Option<Source>,
    pub message: String,
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "cannot export `{}` to ONNX: {}", source.name, self.message),
            None => write!(f, "cannot export to ONNX: {}", self.message),
        }
    }
}

impl std::error::Error for ExportError {}

/// The ONNX model of `program`, which must be an evaluation-mode program, with the parameter
/// values `params` (by name, as `netc_lower::init_params` or a weights file gives them) as
/// initializers and `preprocess` applied to the input first. The graph's input is named after
/// the program's data input, with a symbolic batch dimension `N`; its output is `logits`.
pub fn model(
    program: &Program,
    params: &[(String, Tensor)],
    preprocess: &[Preprocess],
) -> Result<onnx::ModelProto, ExportError> {
    let graph = translate::graph(program, params, preprocess)?;
    Ok(onnx::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![onnx::OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "netc".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: format!("The net `{}`, exported by netc in evaluation mode.", program.name()),
        graph: Some(graph),
        ..Default::default()
    })
}

/// [`model`] as the bytes of a `.onnx` file.
pub fn export(
    program: &Program,
    params: &[(String, Tensor)],
    preprocess: &[Preprocess],
) -> Result<Vec<u8>, ExportError> {
    use prost::Message;
    Ok(model(program, params, preprocess)?.encode_to_vec())
}
