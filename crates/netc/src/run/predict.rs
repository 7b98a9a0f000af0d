//! Classifying single inputs with saved weights: images, or the images of an IDX file, through
//! the preprocessing the weights were trained with, to the most probable classes.

use super::training::EVAL_BATCH;
use crate::{Error, Model};
use netc_train::{Backend, Recipe, StepError};
use netc_train::{EvalPass, EvalSet};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The most probable classes of one input, most probable first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// The file, and the example's index in it when it holds several.
    pub input: String,
    pub classes: Vec<ClassProbability>,
}

/// One class and the probability the net gives it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClassProbability {
    /// The class index, as the labels number it.
    pub class: usize,
    /// The data set's name for it (the index itself when the weights record no names).
    pub name: String,
    pub probability: f64,
}

/// The `top` most probable classes of every example of `inputs` under the weights `weights`,
/// preprocessed by the statistics stored with them.
pub fn predict(
    model: &Model,
    weights: &Path,
    inputs: &[PathBuf],
    top: usize,
    backend: &mut dyn Backend,
) -> Result<Vec<Prediction>, Error> {
    let shape = &model.net().input.shape;
    let image_len: usize = shape.iter().product();
    let mut examples = Vec::new();
    for path in inputs {
        examples.extend(netc_data::read_inputs(path, shape).map_err(|e| Error::Io(e.to_string()))?);
    }
    let expected: Vec<(String, Vec<usize>)> =
        backend.params().iter().map(|p| (p.name.clone(), p.shape.clone())).collect();
    let recipe = Recipe::of(model.train());
    let netc_train::checkpoint::SavedModel { params, stats, class_names } =
        netc_train::checkpoint::load_model(weights, &expected, recipe.needs(image_len)).map_err(Error::Io)?;
    let classes = model.net().loss.classes;
    let names = class_names
        .filter(|names| names.len() == classes)
        .unwrap_or_else(|| (0..classes).map(|c| c.to_string()).collect());

    let mut predictions = Vec::with_capacity(examples.len());
    let mut batch = vec![0f32; EVAL_BATCH * image_len];
    let mut scratch = Vec::new();
    let pass = EvalPass { epoch: model.train().epochs, set: EvalSet::Predict };
    for (index, chunk) in examples.chunks(EVAL_BATCH).enumerate() {
        for (example, out) in chunk.iter().zip(batch.chunks_exact_mut(image_len.max(1))) {
            let values = match &example.values {
                netc_data::Values::Bytes(v) => netc_train::Values::Bytes(v),
                netc_data::Values::Floats(v) => netc_train::Values::Floats(v),
            };
            stats.apply(recipe, values, out, &mut scratch);
        }
        let scores =
            backend.scores(&params, &batch[..chunk.len() * image_len], chunk.len(), pass.key(index)).map_err(|e| {
                match e {
                    StepError::NonFinite { layer, .. } => {
                        Error::Io(format!("prediction produced NaN or infinity in `{layer}`"))
                    }
                    StepError::Failed(message) => Error::Io(message),
                }
            })?;
        for (example, scores) in chunk.iter().zip(scores.chunks_exact(classes.max(1))) {
            predictions.push(Prediction { input: example.name.clone(), classes: most_probable(scores, &names, top) });
        }
    }
    Ok(predictions)
}

/// The softmax of `scores`, its `top` largest first (the lower class first on ties).
fn most_probable(scores: &[f32], names: &[String], top: usize) -> Vec<ClassProbability> {
    let max = scores.iter().fold(f64::NEG_INFINITY, |m, &s| m.max(f64::from(s)));
    let exps: Vec<f64> = scores.iter().map(|&s| (f64::from(s) - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| exps[b].total_cmp(&exps[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(top)
        .map(|class| ClassProbability { class, name: names[class].clone(), probability: exps[class] / total })
        .collect()
}

/// How a net's test predictions spread over the classes.
#[derive(Clone, Debug, PartialEq)]
pub struct Confusion {
    /// `counts[true class][predicted class]`.
    pub counts: Vec<Vec<usize>>,
    /// One name per class.
    pub names: Vec<String>,
}

impl Confusion {
    /// The fraction of each class's examples predicted as another class (`None` for a class
    /// with no examples).
    pub fn class_errors(&self) -> Vec<Option<f64>> {
        self.counts
            .iter()
            .enumerate()
            .map(|(class, row)| {
                let total: usize = row.iter().sum();
                (total > 0).then(|| (total - row[class]) as f64 / total as f64)
            })
            .collect()
    }

    /// The matrix as a table: a row per true class, a column per predicted class, then the
    /// class's error.
    pub fn table(&self) -> String {
        let width = self.names.iter().map(String::len).max().unwrap_or(0).max(6);
        let mut out = format!("{:>width$}", "true\\predicted");
        self.names.iter().for_each(|n| out.push_str(&format!(" {n:>width$}")));
        out.push_str(&format!(" {:>width$}\n", "error"));
        for ((name, row), error) in self.names.iter().zip(&self.counts).zip(self.class_errors()) {
            out.push_str(&format!("{name:>width$}"));
            row.iter().for_each(|c| out.push_str(&format!(" {c:>width$}")));
            let error = error.map_or("–".to_string(), |e| format!("{:.2}%", e * 100.0));
            out.push_str(&format!(" {error:>width$}\n"));
        }
        out
    }
}

/// The confusion matrix of saved weights on the data's test set.
pub fn confusion(
    model: &Model,
    data: &super::Data,
    weights: &Path,
    backend: &mut dyn Backend,
) -> Result<Confusion, Error> {
    data.check_fits(model)?;
    let test = super::Data::samples(&data.set.test);
    let image_len = test.image_len;
    let expected: Vec<(String, Vec<usize>)> =
        backend.params().iter().map(|p| (p.name.clone(), p.shape.clone())).collect();
    let recipe = Recipe::of(model.train());
    let saved = netc_train::checkpoint::load_model(weights, &expected, recipe.needs(image_len)).map_err(Error::Io)?;
    let classes = model.net().loss.classes;
    let mut counts = vec![vec![0usize; classes]; classes];
    let mut batch = vec![0f32; EVAL_BATCH * image_len];
    let mut scratch = Vec::new();
    let pass = super::training::final_test_pass(model);
    for (index, (start, labels)) in (0..).step_by(EVAL_BATCH).zip(test.labels.chunks(EVAL_BATCH)).enumerate() {
        let images = test.images.slice(start * image_len..(start + labels.len()) * image_len);
        let inputs = &mut batch[..images.len()];
        netc_train::preprocess_all(recipe, &saved.stats, images, image_len, inputs, &mut scratch);
        let scores = backend.scores(&saved.params, inputs, labels.len(), pass.key(index)).map_err(|e| match e {
            StepError::NonFinite { layer, .. } => {
                Error::Io(format!("evaluation produced NaN or infinity in `{layer}`"))
            }
            StepError::Failed(message) => Error::Io(message),
        })?;
        for (scores, &label) in scores.chunks_exact(classes.max(1)).zip(labels) {
            // The first highest score, as the error count takes it.
            let predicted = scores.iter().enumerate().fold(0, |best, (i, &s)| if s > scores[best] { i } else { best });
            counts[usize::from(label)][predicted] += 1;
        }
    }
    Ok(Confusion { counts, names: data.set.class_names.clone() })
}

/// The predictions as one JSON document, for other programs.
pub fn predictions_json(predictions: &[Prediction]) -> String {
    serde_json::to_string_pretty(predictions).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confusion_table_has_a_row_per_true_class_and_its_error() {
        let confusion = Confusion { counts: vec![vec![3, 1], vec![0, 0]], names: vec!["cat".into(), "dog".into()] };
        assert_eq!(confusion.class_errors(), vec![Some(0.25), None]);
        let table = confusion.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[1].trim_start().starts_with("cat") && lines[1].ends_with("25.00%"), "{table}");
        assert!(lines[2].ends_with("–"), "{table}");
    }

    #[test]
    fn probabilities_are_the_softmax_in_order() {
        let names: Vec<String> = ["cat", "dog", "bird"].map(String::from).to_vec();
        let top = most_probable(&[1.0, 3.0, 1.0], &names, 2);
        let e = std::f64::consts::E;
        let total = 2.0 + e * e;
        assert_eq!(top[0].name, "dog");
        assert!((top[0].probability - e * e / total).abs() < 1e-12);
        // A tie goes to the lower class.
        assert_eq!((top[1].class, top[1].name.as_str()), (0, "cat"));
        assert!((top[1].probability - 1.0 / total).abs() < 1e-12);
        assert_eq!(most_probable(&[0.0, 0.0], &names[..2], 5).len(), 2);
    }
}
