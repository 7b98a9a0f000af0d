//! Exporting a model with saved weights to ONNX: the evaluation-mode program, the weights and
//! the preprocessing they were trained with, as one ONNX model that takes the raw input.

use super::compile::lower;
use crate::{Error, Model};
use netc_ir::{Mode, Tensor};
use netc_onnx::Preprocess;
use netc_syntax::{Code, Label};
use netc_train::{preprocess, Named, Recipe, Statistics};
use std::path::Path;

/// The bytes of the `.onnx` file of `model` with the weights file `weights` (and the
/// statistics stored with them, the mean image, …), as `netc export --format onnx` writes it.
pub fn export_onnx(model: &Model, weights: &Path) -> Result<Vec<u8>, Error> {
    let program = lower(model, Mode::Eval)?;
    let expected: Vec<(String, Vec<usize>)> =
        program.params().iter().map(|p| (p.name.to_string(), p.shape.clone())).collect();
    let recipe = Recipe::of(model.train());
    let image_len = model.net().input.shape.iter().product();
    let saved = netc_train::checkpoint::load_model(weights, &expected, recipe.needs(image_len)).map_err(Error::Io)?;
    onnx_model(model, &saved.params, &saved.stats)
}

/// The bytes of the `.onnx` file of `model` with parameters `params` and the statistics its
/// recipe's preprocessing learned, `stats`.
pub fn onnx_model(model: &Model, params: &[Named], stats: &Statistics) -> Result<Vec<u8>, Error> {
    let program = lower(model, Mode::Eval)?;
    let steps = preprocessing(model, stats)?;
    netc_onnx::export(&program, params, &steps).map_err(|e| {
        let Some(source) = &e.source else { return Error::Internal(e.to_string()) };
        model.source_error(
            Code::NotExportable.error().with_message(e.to_string()).with_labels(vec![Label::primary(
                (),
                source.span.range(),
            )
            .with_message("this layer")]),
        )
    })
}

/// The recipe's preprocessing as export steps, in the order `Statistics::apply` takes them.
fn preprocessing(model: &Model, stats: &Statistics) -> Result<Vec<Preprocess>, Error> {
    let recipe = Recipe::of(model.train());
    let shape = model.net().input.shape.clone();
    let len: usize = shape.iter().product();
    let missing = |what: &str| Error::Io(format!("the weights hold no {what}, which the recipe's preprocessing needs"));
    let tensor = |dims: Vec<usize>, data: &[f32]| {
        Tensor::new(dims, data.to_vec()).map_err(|e| Error::Io(format!("preprocessing statistics: {e}")))
    };
    let mut steps = Vec::new();
    match recipe.pixels {
        netc_check::Preprocess::None => {}
        netc_check::Preprocess::Scale => steps.push(Preprocess::Divide(preprocess::SCALE_DIVISOR)),
        netc_check::Preprocess::MeanImage => {
            let mean = stats.mean.as_deref().ok_or_else(|| missing("mean image"))?;
            steps.push(Preprocess::SubtractMean(tensor(shape, mean)?));
        }
    }
    if recipe.contrast_norm {
        let mean_norm = stats.mean_norm.ok_or_else(|| missing("mean standard deviation"))?;
        steps.push(Preprocess::ContrastNorm { mean_norm, min_norm: preprocess::MIN_NORM as f32 });
    }
    if recipe.whiten {
        let w = stats.whitening.as_deref().ok_or_else(|| missing("whitening matrix"))?;
        steps.push(Preprocess::Whiten(tensor(vec![len, len], w)?));
    }
    Ok(steps)
}
