//! Training and evaluation of a model on a data set, with the command line's overrides.

use super::data::Data;
use crate::{Error, Model};
pub use netc_train::EVAL_BATCH;
use netc_train::{Backend, Controls, EpochMetrics, EvalPass, EvalSet, Event, RunOptions, StepError, TrainError};

/// Command-line settings that replace the `train` block's.
#[derive(Clone, Debug, Default)]
pub struct TrainOverrides {
    pub epochs: Option<usize>,
    pub batch: Option<usize>,
    /// A constant learning rate; replaces any schedule.
    pub lr: Option<f64>,
    pub seed: Option<u64>,
}

impl TrainOverrides {
    pub fn apply(&self, config: &mut netc_check::TrainConfig) {
        if let Some(epochs) = self.epochs {
            config.epochs = epochs;
        }
        if let Some(batch) = self.batch {
            config.batch = batch;
        }
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        if let Some(rate) = self.lr {
            config.lr_schedule.clear();
            match &mut config.optimizer {
                netc_check::Optimizer::Sgd { lr, .. } | netc_check::Optimizer::Adam { lr, .. } => *lr = rate,
            }
        }
    }
}

/// Trains `model` on `data` with `backend`, writing the run folder `options.out`.
pub fn train(
    model: &Model,
    data: &Data,
    backend: &mut dyn Backend,
    options: &RunOptions,
    on_event: &mut dyn FnMut(Event),
) -> Result<Vec<EpochMetrics>, Error> {
    train_with(model, data, backend, options, Controls::default(), on_event)
}

/// [`train`], stopping when `controls.stop` is set ([`Error::Interrupted`]) and writing
/// TensorBoard events when asked.
pub fn train_with(
    model: &Model,
    data: &Data,
    backend: &mut dyn Backend,
    options: &RunOptions,
    controls: Controls,
    on_event: &mut dyn FnMut(Event),
) -> Result<Vec<EpochMetrics>, Error> {
    data.check_fits(model)?;
    check_augment(model)?;
    let job = netc_train::Job {
        net: model.net(),
        config: model.train(),
        source: &model.source.text,
        train: Data::samples(&data.set.train),
        test: Data::samples(&data.set.test),
        class_names: &data.set.class_names,
    };
    netc_train::train(&job, backend, options, controls, on_event).map_err(|e| match e {
        TrainError::Io(message) => Error::Io(message),
        TrainError::Diverged(divergence) => Error::Diverged { source: model.source.clone(), divergence },
        TrainError::ResumeMismatch { folder, mismatch } => Error::ResumeMismatch { folder, mismatch },
        TrainError::Locked { folder, pid } => Error::Locked { folder, pid },
        TrainError::Occupied { folder } => Error::Occupied { folder },
        TrainError::Interrupted { folder, at } => Error::Interrupted { folder, at },
        TrainError::EpochsTooFew { epoch, .. } => Error::Usage {
            source: None,
            diagnostics: vec![netc_syntax::Diagnostic::error()
                .with_message(e.to_string())
                .with_notes(vec![format!("help: resume with --epochs {epoch} or more")])],
        },
        TrainError::Chunks { batch, processes, .. } => Error::Usage {
            source: None,
            diagnostics: vec![netc_syntax::Diagnostic::error().with_message(e.to_string()).with_notes(vec![format!(
                "help: pass --grad-chunks N with {processes} ≤ N ≤ {batch}; the same N trains the same bits with any \
                 number of processes"
            )])],
        },
    })
}

/// Flips and crops work on images: the net's input must be `[channels, rows, cols]`.
fn check_augment(model: &Model) -> Result<(), Error> {
    let input = &model.net().input;
    if model.train().augment == netc_check::Augment::default() || input.shape.len() == 3 {
        return Ok(());
    }
    Err(model.source_error(
        netc_syntax::Code::DataShape
            .error()
            .with_message(format!(
                "the train block's `augment` flips and crops images, but net `{}` takes {:?}",
                model.net().name,
                input.shape
            ))
            .with_labels(vec![netc_syntax::Label::primary((), input.span.range()).with_message("not an image")])
            .with_notes(vec!["help: declare the input as [channels, rows, cols], or remove `augment`".into()]),
    ))
}

/// A finished run read back from its folder: the net from the folder's copy of the source with
/// the run's `--set` values, the data folder it trained on, and its weights.
pub struct RecordedRun {
    pub model: Model,
    pub data: String,
    pub weights: std::path::PathBuf,
}

impl RecordedRun {
    pub fn read(folder: &netc_train::RunFolder) -> Result<RecordedRun, Error> {
        let record = folder.read_record().map_err(Error::Io)?;
        let source = crate::Source::read(&folder.source())?;
        let set: Vec<(String, String)> = record.provenance.set.into_iter().collect();
        let model = crate::model(&source, &set, Some(&record.net))?;
        Ok(RecordedRun { model, data: record.provenance.data, weights: folder.weights() })
    }
}

/// The test pass after the last epoch: evaluating saved weights draws the masks of layers that
/// sample in evaluation as the run's last test pass did, so it reproduces that epoch's figures.
pub(crate) fn final_test_pass(model: &Model) -> EvalPass {
    EvalPass { epoch: model.train().epochs, set: EvalSet::Test }
}

/// Test loss and error of saved weights. The file must be this net's: its checksum verified,
/// every parameter present with its shape and finite, the mean image if the recipe subtracts
/// one, and nothing else.
pub fn evaluate(
    model: &Model,
    data: &Data,
    weights: &std::path::Path,
    backend: &mut dyn Backend,
) -> Result<(f64, f64), Error> {
    data.check_fits(model)?;
    let shapes: Vec<(String, Vec<usize>)> =
        backend.params().iter().map(|p| (p.name.clone(), p.shape.clone())).collect();
    let recipe = netc_train::Recipe::of(model.train());
    let test = Data::samples(&data.set.test);
    let netc_train::checkpoint::SavedModel { params, stats, .. } =
        netc_train::checkpoint::load_model(weights, &shapes, recipe.needs(test.image_len)).map_err(Error::Io)?;
    netc_train::evaluate(backend, &params, &test, recipe, &stats, EVAL_BATCH, final_test_pass(model)).map_err(|e| {
        match e {
            StepError::NonFinite { layer, .. } => {
                Error::Io(format!("evaluation produced NaN or infinity in `{layer}`"))
            }
            StepError::Failed(message) => Error::Io(message),
        }
    })
}
