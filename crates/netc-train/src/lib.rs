//! The netc runtime: trains a checked net on a data set with any executor that implements
//! [`Backend`], writing metrics, weights and resumable checkpoints into a run folder.
//!
//! A run folder ([`RunFolder`], which owns the file names) holds `metrics.csv`,
//! `model.safetensors` (parameters by layer name, plus the mean image when the recipe subtracts
//! it), `checkpoint.safetensors` (everything `--resume` needs), `run.json` (the [`RunRecord`]:
//! the resolved configuration, the net's fingerprint and the data's checksums), a copy of the
//! `.net` source and `run.lock`, locked while a process trains into the folder. Every file is
//! replaced atomically after each epoch; every safetensors file carries a checksum of its
//! tensors, verified on load.

pub mod augment;
pub mod checkpoint;
pub mod folder;
pub mod optimizer;
pub mod parallel;
pub mod preprocess;
pub mod tensorboard;
pub mod values;

pub use checkpoint::{write_text, Named, State, WithinEpoch};
pub use folder::{LockError, Mismatch, Provenance, RunFolder, RunLock, RunRecord};
pub use optimizer::Slot;
pub use preprocess::{Needs, Recipe, Statistics};
pub use values::{OwnedValues, Values};

use netc_check::{Net, TrainConfig};
use netc_ir::{ParamInfo, SignConstraint};
use netc_syntax::Span;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// A learned parameter as a backend's training program reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// `layer.param`.
    pub name: String,
    pub shape: Vec<usize>,
    /// Its multipliers, initialisation and sign constraint.
    pub info: ParamInfo,
}

impl Param {
    /// The parameters `program` reads, in order.
    pub fn of_program(program: &netc_ir::Program) -> Vec<Param> {
        program
            .params()
            .into_iter()
            .map(|p| Param { name: p.name.to_string(), shape: p.shape, info: p.info.clone() })
            .collect()
    }
}

/// Executes a net's forward and backward passes. Gradients are of the mean loss over the batch.
/// A backend owns its programs, so it also says what its parameters are and how they start.
pub trait Backend {
    /// The parameters of the training program, in the order every other method uses.
    fn params(&self) -> &[Param];

    /// Fresh values of every parameter, by the recipe's initialisation and seed.
    fn initial_params(&self) -> Vec<Named>;

    /// Forward and backward over one batch; writes the gradient of every parameter (in the
    /// order of [`Backend::params`]) into `grads`. `step` keys per-step randomness (dropout,
    /// resampled masks).
    fn train_step(
        &mut self,
        params: &[Named],
        images: &[f32],
        labels: &[u8],
        step: u64,
        grads: &mut [Vec<f32>],
    ) -> Result<BatchResult, StepError>;

    /// Forward pass in evaluation mode. `key` ([`EvalPass::key`]) keys the masks of layers that
    /// sample in evaluation (`eval=sample`).
    fn evaluate(&mut self, params: &[Named], images: &[f32], labels: &[u8], key: u64)
        -> Result<BatchResult, StepError>;

    /// Forward pass in evaluation mode over `count` examples: every example's class scores (the
    /// input of the loss's softmax), example after example. `key` as for [`Backend::evaluate`].
    fn scores(&mut self, params: &[Named], images: &[f32], count: usize, key: u64) -> Result<Vec<f32>, StepError>;

    /// Applies one optimizer step to every parameter (in the net's order) given its gradient.
    /// The default is the reference, [`optimizer::Update::apply`]; a backend may compute the same
    /// formulas faster.
    fn update(
        &mut self,
        update: &optimizer::Update<'_>,
        params: &mut [Named],
        grads: &[Vec<f32>],
        slots: &mut [Slot],
    ) -> Result<(), StepError> {
        update.apply(params, grads, slots);
        Ok(())
    }

    /// A whole training step with the parameters kept inside the backend, if it can (`None`
    /// otherwise: the trainer then calls [`Backend::train_step`] and [`Backend::update`]):
    /// forward and backward over the batch, then, only if the loss and every gradient are
    /// finite, `update` applied in place and each parameter with a sign constraint projected
    /// onto it (`signs`, in parameter order). With `take`, the backend first takes `params` as
    /// the current values; otherwise it keeps its own, which [`Backend::read_params`] copies
    /// back. The results must be bitwise those of the two-call path.
    #[allow(clippy::too_many_arguments)]
    fn held_step(
        &mut self,
        _take: Option<&[Named]>,
        _images: &[f32],
        _labels: &[u8],
        _step: u64,
        _update: &optimizer::Update<'_>,
        _slots: &mut [Slot],
        _signs: &[Option<SignConstraint>],
    ) -> Option<Result<BatchResult, StepError>> {
        None
    }

    /// Copies the parameters kept by [`Backend::held_step`] into `params`.
    fn read_params(&mut self, _params: &mut [Named]) {}
}

/// Mean loss and number of misclassified examples of one batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchResult {
    pub loss: f64,
    pub errors: usize,
}

/// Why a backend could not run a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum StepError {
    /// A value became NaN or infinite; `layer` produced the first one.
    NonFinite { layer: String, span: Span },
    /// Anything else, described.
    Failed(String),
}

/// Examples (`count × image_len` values: bytes 0–255 or floats) and their labels.
#[derive(Clone, Copy, Debug)]
pub struct Samples<'a> {
    pub images: Values<'a>,
    pub labels: &'a [u8],
    pub image_len: usize,
}

impl Samples<'_> {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The first `n` samples (all of them if there are fewer).
    pub fn take(&self, n: usize) -> Self {
        let n = n.min(self.len());
        Samples {
            images: self.images.slice(0..n * self.image_len),
            labels: &self.labels[..n],
            image_len: self.image_len,
        }
    }
}

/// The training images the clean training error is measured on: [`CLEAN_SUBSET`] of them
/// (all, if there are fewer), a subset drawn from the seed and kept in data-set order.
struct CleanSet {
    images: OwnedValues,
    labels: Vec<u8>,
    image_len: usize,
}

impl CleanSet {
    fn draw(set: &Samples, seed: u64) -> CleanSet {
        let key = netc_ir::rng::Key::new(seed, &netc_ir::RandomStream::CleanSubset, 0);
        let mut chosen: Vec<usize> = key.permutation(set.len()).into_iter().take(CLEAN_SUBSET).collect();
        chosen.sort_unstable();
        CleanSet::gather(set, &chosen)
    }

    /// The examples `chosen` of `set`, in that order.
    fn gather(set: &Samples, chosen: &[usize]) -> CleanSet {
        let len = set.image_len;
        CleanSet {
            images: OwnedValues::gather(set.images, chosen.iter().map(|&i| i * len..(i + 1) * len)),
            labels: chosen.iter().map(|&i| set.labels[i]).collect(),
            image_len: set.image_len,
        }
    }

    fn samples(&self) -> Samples<'_> {
        Samples { images: self.images.view(), labels: &self.labels, image_len: self.image_len }
    }
}

/// One epoch's line of `metrics.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    /// Counted from 1.
    pub epoch: usize,
    pub train_loss: f64,
    pub train_error: f64,
    pub test_loss: f64,
    pub test_error: f64,
    pub seconds: f64,
    pub images_per_sec: f64,
    /// Loss and error in evaluation mode, after the epoch, on [`CLEAN_SUBSET`] training
    /// images chosen from the seed (`train_error` is the running error of the training passes,
    /// under dropout and resampled masks). `None` in files written before netc recorded them.
    pub clean: Option<CleanErrors>,
    /// Loss and error on the held-out validation examples, when the run holds some out.
    pub validation: Option<CleanErrors>,
}

/// The evaluation-mode loss and error on the clean training subset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CleanErrors {
    pub loss: f64,
    pub error: f64,
}

/// How many training images the clean training error is measured on (all, if there are fewer).
pub const CLEAN_SUBSET: usize = 10_000;

pub const METRICS_HEADER: &str =
    "epoch,train_loss,train_error,test_loss,test_error,seconds,images_per_sec,clean_train_loss,clean_train_error";

/// The header of runs with a validation split: the validation loss and error appended.
pub const METRICS_HEADER_WITH_VALIDATION: &str = "epoch,train_loss,train_error,test_loss,test_error,seconds,images_per_sec,clean_train_loss,clean_train_error,val_loss,val_error";

/// The header of files written before the clean training error was recorded.
const METRICS_HEADER_WITHOUT_CLEAN: &str = "epoch,train_loss,train_error,test_loss,test_error,seconds,images_per_sec";

impl EpochMetrics {
    fn csv_row(&self) -> String {
        format!(
            // Shortest round-tripping form, so a resumed run reads back exactly what it wrote.
            "{},{},{},{},{},{:.3},{:.1},{},{}",
            self.epoch,
            self.train_loss,
            self.train_error,
            self.test_loss,
            self.test_error,
            self.seconds,
            self.images_per_sec,
            self.clean.map_or(String::new(), |c| c.loss.to_string()),
            self.clean.map_or(String::new(), |c| c.error.to_string()),
        ) + &self.validation.map_or(String::new(), |v| format!(",{},{}", v.loss, v.error))
    }

    /// The row's values as TensorBoard scalars, tagged `epoch/<metrics.csv column>`.
    fn tensorboard_scalars(&self) -> Vec<(&'static str, f64)> {
        let mut scalars = vec![
            ("epoch/train_loss", self.train_loss),
            ("epoch/train_error", self.train_error),
            ("epoch/test_loss", self.test_loss),
            ("epoch/test_error", self.test_error),
            ("epoch/seconds", self.seconds),
            ("epoch/images_per_sec", self.images_per_sec),
        ];
        if let Some(clean) = self.clean {
            scalars.extend([("epoch/clean_train_loss", clean.loss), ("epoch/clean_train_error", clean.error)]);
        }
        if let Some(validation) = self.validation {
            scalars.extend([("epoch/val_loss", validation.loss), ("epoch/val_error", validation.error)]);
        }
        scalars
    }
}

/// What the training loop reports as it goes.
#[derive(Debug)]
pub enum Event<'a> {
    Step { epoch: usize, batch: usize, batches: usize, loss: f64, images_per_sec: f64 },
    Epoch(&'a EpochMetrics),
}

/// Where a run writes and how much of the data it uses.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub out: RunFolder,
    /// Continue from the folder's checkpoint; the run must be the one the folder records.
    pub resume: bool,
    /// Use only the first N training / test examples (quick experiments and tests).
    pub limit_train: Option<usize>,
    pub limit_test: Option<usize>,
    /// Hold out this fraction of the training examples (0 < f < 1), drawn from the seed, and
    /// report their loss and error after every epoch.
    pub validation: Option<f64>,
    /// Where the run comes from, recorded in run.json.
    pub provenance: Provenance,
}

/// What a caller may ask of a run besides [`RunOptions`]: both off by default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Controls<'a> {
    /// Once set (by a signal handler, say), the run finishes its current step, writes a
    /// checkpoint that holds its position within the epoch and returns
    /// [`TrainError::Interrupted`].
    pub stop: Option<&'a AtomicBool>,
    /// Write TensorBoard events ([`tensorboard`]) into the run folder: every epoch's metrics,
    /// and the training loss of every this many steps.
    pub tensorboard_every: Option<u64>,
    /// Share every batch's gradient over several processes ([`parallel`]); only rank 0 writes
    /// the run folder. Without it, one process trains alone as it always has.
    pub parallel: Option<parallel::DataParallel<'a>>,
}

/// Where an interrupted run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    /// The epoch it was in, counted from 1.
    pub epoch: usize,
    /// The batches of that epoch it had trained (0: it stopped before the epoch began), and how
    /// many the epoch has.
    pub batch: usize,
    pub batches: usize,
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.batch {
            0 => write!(f, "after epoch {}", self.epoch - 1),
            batch => write!(f, "in epoch {}, after batch {batch} of {}", self.epoch, self.batches),
        }
    }
}

/// Where and how a run diverged: the first NaN or infinity came from `layer`.
#[derive(Clone, Debug, PartialEq)]
pub struct Divergence {
    /// Counted from 1.
    pub epoch: usize,
    pub step: u64,
    pub layer: String,
    /// The layer's statement in the source.
    pub span: Span,
}

/// Why training stopped early.
#[derive(Debug)]
pub enum TrainError {
    /// A file could not be read or written, a checkpoint does not fit the net, or the
    /// executor failed.
    Io(String),
    /// A loss or activation became NaN or infinite. The last good checkpoint is kept.
    Diverged(Divergence),
    /// `--resume` of a folder that records a different run.
    ResumeMismatch { folder: RunFolder, mismatch: Mismatch },
    /// Another process is training into the folder.
    Locked { folder: RunFolder, pid: Option<u32> },
    /// A fresh run into a folder that already holds one.
    Occupied { folder: RunFolder },
    /// [`Controls::stop`] was set: the folder's checkpoint holds the position.
    Interrupted { folder: RunFolder, at: Stopped },
    /// A resume with fewer epochs than the checkpoint has started: its weights have trained
    /// on part of an epoch the run would not have.
    EpochsTooFew { folder: RunFolder, epoch: usize, epochs: usize },
    /// A batch shared over `processes` in a number of chunks outside `processes..=batch`.
    Chunks { batch: usize, processes: usize, chunks: usize },
}

impl std::fmt::Display for TrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainError::Io(message) => f.write_str(message),
            TrainError::Diverged(Divergence { epoch, step, layer, .. }) => write!(
                f,
                "training diverged in epoch {epoch} at step {step}: the first non-finite value came from layer `{layer}`"
            ),
            TrainError::ResumeMismatch { folder, mismatch } => write!(
                f,
                "cannot resume {}: its {} is {}, but this run's is {}",
                folder.dir().display(),
                mismatch.what,
                mismatch.recorded,
                mismatch.requested
            ),
            TrainError::Occupied { folder } => write!(f, "{} already holds a run", folder.dir().display()),
            TrainError::Interrupted { folder, at } => {
                write!(f, "training interrupted {at}; the checkpoint in {} holds the position", folder.dir().display())
            }
            TrainError::EpochsTooFew { folder, epoch, epochs } => write!(
                f,
                "cannot resume {} for {epochs} epochs: its checkpoint is part-way through epoch {epoch}",
                folder.dir().display()
            ),
            TrainError::Chunks { batch, processes, chunks } => write!(
                f,
                "a batch of {batch} shared by {processes} processes needs between {processes} and {batch} gradient \
                 chunks, not {chunks}"
            ),
            TrainError::Locked { folder, pid } => {
                let holder = pid.map_or("another process".to_string(), |pid| format!("process {pid}"));
                write!(
                    f,
                    "{} is in use: {holder} is training into it (it holds {})",
                    folder.dir().display(),
                    folder.lock_file().display()
                )
            }
        }
    }
}

impl std::error::Error for TrainError {}

impl From<String> for TrainError {
    fn from(message: String) -> Self {
        TrainError::Io(message)
    }
}

/// The parameter names and shapes of a net, in order.
pub fn param_shapes(net: &Net) -> Vec<(String, Vec<usize>)> {
    net.parameters().into_iter().map(|(name, spec)| (name, spec.shape)).collect()
}

/// The order of the training examples in `epoch`: a permutation drawn from the seed alone, so a
/// resumed run sees the same order as an uninterrupted one.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    netc_ir::rng::Key::new(seed, &netc_ir::RandomStream::Shuffle, epoch as u64).permutation(n)
}

/// Each example of `pixels` (`image_len` values each) through the recipe's preprocessing into `out`.
pub fn preprocess_all(
    recipe: Recipe,
    stats: &Statistics,
    pixels: Values,
    image_len: usize,
    out: &mut [f32],
    scratch: &mut Vec<f32>,
) {
    for (image, out) in pixels.chunks(image_len).zip(out.chunks_exact_mut(image_len.max(1))) {
        stats.apply(recipe, image, out, scratch);
    }
}

/// An evaluation pass: which set, after which epoch. Layers that sample in evaluation
/// (`eval=sample`) draw their masks for each batch of the pass from [`EvalPass::key`], so every
/// pass is reproducible and no two passes share masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalPass {
    /// The number of epochs trained before the pass.
    pub epoch: usize,
    pub set: EvalSet,
}

/// The set an evaluation pass reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalSet {
    Test,
    /// The seeded subset of the training set evaluated after each epoch.
    CleanTrain,
    Validation,
    /// Examples given to `netc predict`.
    Predict,
}

impl EvalPass {
    /// The key of the pass's batch `batch`: epoch, set and batch in disjoint bits.
    pub fn key(self, batch: usize) -> u64 {
        ((self.epoch as u64) << 34) | ((self.set as u64) << 32) | (batch as u64 & 0xffff_ffff)
    }
}

/// The batch evaluation passes run in.
pub const EVAL_BATCH: usize = 1000;

/// Evaluates `params` on `samples` in batches; returns the mean loss and the error rate.
pub fn evaluate(
    backend: &mut dyn Backend,
    params: &[Named],
    samples: &Samples,
    recipe: Recipe,
    stats: &Statistics,
    batch: usize,
    pass: EvalPass,
) -> Result<(f64, f64), StepError> {
    let (mut loss, mut errors) = (0.0, 0usize);
    let mut buffer = vec![0f32; batch * samples.image_len];
    let mut scratch = Vec::new();
    for (index, start) in (0..samples.len()).step_by(batch.max(1)).enumerate() {
        let end = (start + batch).min(samples.len());
        let images = &mut buffer[..(end - start) * samples.image_len];
        let pixels = samples.images.slice(start * samples.image_len..end * samples.image_len);
        preprocess_all(recipe, stats, pixels, samples.image_len, images, &mut scratch);
        let result = backend.evaluate(params, images, &samples.labels[start..end], pass.key(index))?;
        loss += result.loss * (end - start) as f64;
        errors += result.errors;
    }
    let n = samples.len().max(1) as f64;
    Ok((loss / n, errors as f64 / n))
}

/// What to train: the net, its recipe, its source text (copied into the run folder) and data.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    pub net: &'a Net,
    pub config: &'a TrainConfig,
    pub source: &'a str,
    pub train: Samples<'a>,
    pub test: Samples<'a>,
    /// One name per class, stored with the weights for prediction.
    pub class_names: &'a [String],
}

/// One training step as the trainer drives it: batch assembly, preprocessing, the backend's
/// forward and backward pass, the optimizer update, sign projection and the epoch's tally.
/// Its buffers are allocated once, so a step allocates nothing itself.
pub struct Stepper {
    images: Vec<f32>,
    /// The examples' `[channels, rows, cols]`, when they are images (augmentation needs it).
    image_shape: Option<[usize; 3]>,
    scratch: Vec<f32>,
    labels: Vec<u8>,
    grads: Vec<Vec<f32>>,
    mults: Vec<(f64, f64)>,
    signs: Vec<Option<SignConstraint>>,
    loss_span: Span,
    tally: Tally,
    /// After a shared step: whether any process asked to stop.
    agreed_stop: bool,
    exchange: parallel::Exchange,
    /// Whether the backend keeps the parameters ([`Backend::held_step`]): the state's copy is
    /// then current only after [`Stepper::sync_params`].
    held: bool,
}

/// The running sums of an epoch's training loss and errors.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    pub loss_sum: f64,
    pub errors: usize,
    pub seen: usize,
}

impl Stepper {
    /// Buffers for batches of up to `batch` examples of shape `image_shape`, for a backend with
    /// parameters `params`; `loss_span` is where a non-finite loss is reported.
    pub fn new(params: &[Param], batch: usize, image_shape: &[usize], loss_span: Span) -> Stepper {
        let image_len = image_shape.iter().product();
        Stepper {
            image_shape: <[usize; 3]>::try_from(image_shape).ok(),
            images: vec![0.0; batch * image_len],
            scratch: Vec::with_capacity(image_len),
            labels: vec![0; batch],
            grads: params.iter().map(|p| vec![0.0; p.shape.iter().product()]).collect(),
            mults: params.iter().map(|p| (p.info.lr_mult, p.info.wd_mult)).collect(),
            signs: params.iter().map(|p| p.info.sign.clone()).collect(),
            loss_span,
            tally: Tally::default(),
            agreed_stop: false,
            exchange: parallel::Exchange::default(),
            held: false,
        }
    }

    /// Makes `state.params` current again if the backend keeps them (before evaluating or
    /// saving). The backend keeps its copy.
    pub fn sync_params(&self, backend: &mut dyn Backend, state: &mut State) {
        if self.held {
            backend.read_params(&mut state.params);
        }
    }

    /// Trains on the examples `chunk` of `samples` (at most the batch size) at rate `lr`, with the
    /// batch's gradient shared over `parallel`'s processes when given; `stop` is this process's
    /// wish to stop, which [`Stepper::agreed_stop`] then combines with every other process's.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        &mut self,
        backend: &mut dyn Backend,
        config: &TrainConfig,
        state: &mut State,
        samples: &Samples,
        chunk: &[usize],
        lr: f64,
        parallel: Option<parallel::DataParallel>,
        stop: bool,
    ) -> Result<BatchResult, StepError> {
        let (n, image_len) = (chunk.len(), samples.image_len);
        for (slot, &index) in chunk.iter().enumerate() {
            let image = samples.images.slice(index * image_len..(index + 1) * image_len);
            let out = &mut self.images[slot * image_len..][..image_len];
            state.stats.apply(Recipe::of(config), image, out, &mut self.scratch);
            if let (true, Some(shape)) = (config.augment != netc_check::Augment::default(), self.image_shape) {
                let key = augment::step_key(config.seed, state.step);
                augment::augment_example(config.augment, shape, &key, slot, out, &mut self.scratch);
            }
            self.labels[slot] = samples.labels[index];
        }
        let (images, labels) = (&self.images[..n * image_len], &self.labels[..n]);
        // The update of this step (its `t` counts steps from 1).
        let update = optimizer::Update { optimizer: &config.optimizer, lr, t: state.step + 1, mults: &self.mults };
        if parallel.is_none() {
            let take = (!self.held).then_some(&state.params[..]);
            let held = backend.held_step(take, images, labels, state.step, &update, &mut state.slots, &self.signs);
            if let Some(result) = held {
                self.held = true;
                let result = result?;
                if !result.loss.is_finite() {
                    return Err(StepError::NonFinite { layer: netc_ir::LOSS.into(), span: self.loss_span });
                }
                state.step += 1;
                self.count(result, n);
                return Ok(result);
            }
        }
        let result = match parallel {
            None => backend.train_step(&state.params, images, labels, state.step, &mut self.grads),
            Some(parallel) => {
                let shared = parallel::shared_step(
                    parallel,
                    &mut self.exchange,
                    backend,
                    &state.params,
                    images,
                    labels,
                    state.step,
                    stop,
                    &mut self.grads,
                )
                .map_err(StepError::Failed)?;
                self.agreed_stop = shared.stop;
                shared.result
            }
        }?;
        if !result.loss.is_finite() {
            return Err(StepError::NonFinite { layer: netc_ir::LOSS.into(), span: self.loss_span });
        }
        state.step += 1;
        backend.update(&update, &mut state.params, &self.grads, &mut state.slots)?;
        // Dale's principle by projection: a weight that crossed zero stops at zero.
        for (p, sign) in state.params.iter_mut().zip(&self.signs) {
            if let Some(sign) = sign {
                sign.project(p.1.data_mut());
            }
        }
        self.count(result, n);
        Ok(result)
    }

    /// Adds a step of `n` examples to the epoch's tally.
    fn count(&mut self, result: BatchResult, n: usize) {
        self.tally.loss_sum += result.loss * n as f64;
        self.tally.errors += result.errors;
        self.tally.seen += n;
    }

    /// Whether the last shared step found that some process asked to stop.
    pub fn agreed_stop(&self) -> bool {
        self.agreed_stop
    }

    /// The epoch's sums so far.
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// The epoch's sums, starting the next epoch's from zero.
    pub fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    /// Continues an epoch whose first batches gave `tally`.
    pub fn resume_tally(&mut self, tally: Tally) {
        self.tally = tally;
    }
}

/// Trains `job.net` by `job.config` with `backend` and writes the run folder, holding its lock
/// throughout. A fresh run starts from the backend's initial parameters, in a folder without a
/// checkpoint; a resumed one from the folder's checkpoint, after checking that the folder
/// records the same run. Returns every
/// epoch's metrics.
///
/// A weight with a sign constraint (Dale's principle, [`netc_ir::SignConstraint`]) is projected
/// after every optimizer step: elements of the wrong sign are set to 0.
pub fn train(
    job: &Job,
    backend: &mut dyn Backend,
    options: &RunOptions,
    controls: Controls,
    on_event: &mut dyn FnMut(Event),
) -> Result<Vec<EpochMetrics>, TrainError> {
    let Job { net, config, source, train: train_set, test: test_set, class_names } = *job;
    let train_set = options.limit_train.map_or(train_set, |n| train_set.take(n));
    let split = options.validation.map(|fraction| ValidationSplit::draw(&train_set, fraction, config.seed));
    let train_set = split.as_ref().map_or(train_set, |s| s.train.samples());
    let clean_set = CleanSet::draw(&train_set, config.seed);
    let test_set = options.limit_test.map_or(test_set, |n| test_set.take(n));
    let folder = &options.out;
    let writes = controls.parallel.is_none_or(|p| p.writes());
    if let Some(p) = controls.parallel {
        if p.chunks < p.group.size() || p.chunks > config.batch.max(1) {
            return Err(TrainError::Chunks { batch: config.batch, processes: p.group.size(), chunks: p.chunks });
        }
    }
    let _lock = match writes {
        true => Some(folder.lock().map_err(|e| match e {
            LockError::Held { pid, .. } => TrainError::Locked { folder: folder.clone(), pid },
            LockError::Io(message) => TrainError::Io(message),
        })?),
        false => None,
    };
    let mut record = RunRecord::new(net, config, (options.limit_train, options.limit_test), options.provenance.clone());
    record.validation = options.validation;
    record.grad_chunks = controls.parallel.map_or(1, |p| p.chunks);
    let shapes: Vec<(String, Vec<usize>)> =
        backend.params().iter().map(|p| (p.name.clone(), p.shape.clone())).collect();
    let recipe = Recipe::of(config);
    let needs = recipe.needs(train_set.image_len);

    if writes && !options.resume && folder.has_checkpoint() {
        return Err(TrainError::Occupied { folder: folder.clone() });
    }
    let mut state = if options.resume {
        if let Some(mismatch) = folder.read_record()?.resume_mismatch(&record) {
            return Err(TrainError::ResumeMismatch { folder: folder.clone(), mismatch });
        }
        checkpoint::load_state(&folder.checkpoint(), &shapes, needs)?
    } else {
        let params = backend.initial_params();
        let slots = params.iter().map(|(_, p)| Slot::new(&config.optimizer, p.len())).collect();
        let stats = Statistics::learn(recipe, &train_set, &test_set);
        State { params, slots, epoch: 0, step: 0, stats, within: WithinEpoch::default() }
    };
    let batches = train_set.len().div_ceil(config.batch.max(1));
    check_position(folder, &state, config, batches)?;
    let mut history = if options.resume { read_metrics(&folder.metrics())? } else { Vec::new() };
    history.truncate(state.epoch);
    if writes {
        checkpoint::write_text(&folder.source(), source)?;
        folder.write_record(&record)?;
    }
    let mut events = match controls.tensorboard_every {
        _ if !writes => None,
        Some(_) if options.resume => Some(tensorboard::EventWriter::resume(&folder.events(), state.epoch, state.step)?),
        Some(_) => Some(tensorboard::EventWriter::create(&folder.events())?),
        None => None,
    };
    let stop_requested = || controls.stop.is_some_and(|stop| stop.load(Ordering::Relaxed));
    // Processes that share batches stop together, at the step where any of them asked to.
    let stop_agreed = |stepper: &Stepper| match controls.parallel {
        Some(_) => stepper.agreed_stop(),
        None => stop_requested(),
    };

    let mut stepper = Stepper::new(backend.params(), config.batch, &net.input.shape, net.loss.span);
    for epoch in state.epoch..config.epochs {
        let started = Instant::now();
        // Zero at an epoch's start; an interrupted epoch's first batches otherwise.
        let done = std::mem::take(&mut state.within);
        stepper.resume_tally(done.tally);
        let seconds_so_far = || done.seconds + started.elapsed().as_secs_f64();
        let lr = config.lr_at(epoch);
        let order = epoch_order(train_set.len(), config.seed, epoch);
        for (batch, chunk) in order.chunks(config.batch.max(1)).enumerate().skip(done.batches) {
            let result = stepper
                .step(backend, config, &mut state, &train_set, chunk, lr, controls.parallel, stop_requested())
                .map_err(|e| step_failed(e, epoch + 1, state.step))?;
            on_event(Event::Step {
                epoch: epoch + 1,
                batch: batch + 1,
                batches,
                loss: result.loss,
                images_per_sec: stepper.tally().seen as f64 / seconds_so_far().max(1e-9),
            });
            if let (Some(events), Some(every)) = (&mut events, controls.tensorboard_every) {
                if state.step % every.max(1) == 0 {
                    let step = i64::try_from(state.step).unwrap_or(i64::MAX);
                    events.scalars(step, &[(tensorboard::STEP_LOSS_TAG, result.loss)])?;
                }
            }
            // After the epoch's last batch the epoch's own files are written instead.
            if stop_agreed(&stepper) && batch + 1 < batches {
                state.within = WithinEpoch { batches: batch + 1, tally: stepper.tally(), seconds: seconds_so_far() };
                if let Some(events) = &events {
                    events.sync()?;
                }
                if writes {
                    stepper.sync_params(backend, &mut state);
                    save_checkpoint(folder, &state, net, class_names)?;
                }
                let at = Stopped { epoch: epoch + 1, batch: batch + 1, batches };
                return Err(TrainError::Interrupted { folder: folder.clone(), at });
            }
        }
        let seconds = seconds_so_far();
        stepper.sync_params(backend, &mut state);
        let pass = |set| EvalPass { epoch: epoch + 1, set };
        let (test_loss, test_error) =
            evaluate(backend, &state.params, &test_set, recipe, &state.stats, EVAL_BATCH, pass(EvalSet::Test))
                .map_err(|e| step_failed(e, epoch + 1, state.step))?;
        let clean = clean_set.samples();
        let (loss, error) =
            evaluate(backend, &state.params, &clean, recipe, &state.stats, EVAL_BATCH, pass(EvalSet::CleanTrain))
                .map_err(|e| step_failed(e, epoch + 1, state.step))?;
        let validation = match &split {
            Some(split) => {
                let held_out = split.validation.samples();
                let (loss, error) = evaluate(
                    backend,
                    &state.params,
                    &held_out,
                    recipe,
                    &state.stats,
                    EVAL_BATCH,
                    pass(EvalSet::Validation),
                )
                .map_err(|e| step_failed(e, epoch + 1, state.step))?;
                Some(CleanErrors { loss, error })
            }
            None => None,
        };
        let Tally { loss_sum, errors, seen } = stepper.take_tally();
        let metrics = EpochMetrics {
            epoch: epoch + 1,
            train_loss: loss_sum / seen.max(1) as f64,
            train_error: errors as f64 / seen.max(1) as f64,
            test_loss,
            test_error,
            seconds,
            images_per_sec: seen as f64 / seconds.max(1e-9),
            clean: Some(CleanErrors { loss, error }),
            validation,
        };
        state.epoch = epoch + 1;
        history.push(metrics.clone());
        if let Some(events) = &mut events {
            events.scalars(metrics.epoch as i64, &metrics.tensorboard_scalars())?;
            events.sync()?;
        }
        if writes {
            save_run(folder, &state, &history, net, class_names)?;
        }
        on_event(Event::Epoch(&metrics));
        if stop_agreed(&stepper) && state.epoch < config.epochs {
            let at = Stopped { epoch: state.epoch + 1, batch: 0, batches };
            return Err(TrainError::Interrupted { folder: folder.clone(), at });
        }
    }
    Ok(history)
}

/// Refuses a checkpoint part-way through an epoch that this run cannot continue: one past the
/// run's last epoch, or at a batch the epoch does not have.
fn check_position(folder: &RunFolder, state: &State, config: &TrainConfig, batches: usize) -> Result<(), TrainError> {
    let within = state.within;
    if within.batches == 0 {
        return Ok(());
    }
    // The epoch part-way through, counted from 1 (a damaged count saturates rather than wraps).
    let epoch = state.epoch.saturating_add(1);
    if state.epoch >= config.epochs {
        return Err(TrainError::EpochsTooFew { folder: folder.clone(), epoch, epochs: config.epochs });
    }
    if within.batches >= batches || within.tally.seen != within.batches * config.batch {
        return Err(TrainError::Io(format!(
            "{}: the checkpoint is after batch {} of epoch {} ({} examples), which does not fit this run's {batches} batches of {}",
            folder.checkpoint().display(),
            within.batches,
            epoch,
            within.tally.seen,
            config.batch
        )));
    }
    Ok(())
}

/// A training set split into the examples trained on and those held out, drawn from the seed.
struct ValidationSplit {
    train: CleanSet,
    validation: CleanSet,
}

impl ValidationSplit {
    /// `fraction` of `set` (rounded, at least one and leaving at least one) held out.
    fn draw(set: &Samples, fraction: f64, seed: u64) -> ValidationSplit {
        let key = netc_ir::rng::Key::new(seed, &netc_ir::RandomStream::Validation, 0);
        let order = key.permutation(set.len());
        let held = ((set.len() as f64 * fraction).round() as usize).clamp(1, set.len().saturating_sub(1).max(1));
        let (mut validation, mut train) = (order[..held].to_vec(), order[held..].to_vec());
        validation.sort_unstable();
        train.sort_unstable();
        ValidationSplit { train: CleanSet::gather(set, &train), validation: CleanSet::gather(set, &validation) }
    }
}

fn step_failed(error: StepError, epoch: usize, step: u64) -> TrainError {
    match error {
        StepError::NonFinite { layer, span } => TrainError::Diverged(Divergence { epoch, step, layer, span }),
        StepError::Failed(message) => TrainError::Io(message),
    }
}

/// Writes the epoch's files: the checkpoint last, so a run resumed after a kill mid-way finds
/// metrics and weights at least as new as the checkpoint and rewrites them consistently.
fn save_run(
    folder: &RunFolder,
    state: &State,
    history: &[EpochMetrics],
    net: &Net,
    class_names: &[String],
) -> Result<(), String> {
    let with_validation = history.iter().any(|m| m.validation.is_some());
    let mut csv = String::from(if with_validation { METRICS_HEADER_WITH_VALIDATION } else { METRICS_HEADER });
    for m in history {
        let _ = write!(csv, "\n{}", m.csv_row());
    }
    csv.push('\n');
    checkpoint::write_text(&folder.metrics(), &csv)?;
    checkpoint::save_model(&folder.weights(), state, metadata(state, net, class_names))?;
    save_checkpoint(folder, state, net, class_names)
}

/// Writes the checkpoint alone: the run's metrics and weights stay those of its last finished
/// epoch.
fn save_checkpoint(folder: &RunFolder, state: &State, net: &Net, class_names: &[String]) -> Result<(), String> {
    checkpoint::save_state(&folder.checkpoint(), state, metadata(state, net, class_names))
}

/// The metadata facts of the weights and the checkpoint.
fn metadata(state: &State, net: &Net, class_names: &[String]) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("net".to_string(), net.name.clone()),
        ("epoch".to_string(), state.epoch.to_string()),
        (checkpoint::CLASS_NAMES.to_string(), checkpoint::encode_class_names(class_names)),
    ])
}

/// The rows of a run folder's `metrics.csv`.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bad = |line: usize| format!("{}:{line}: not a metrics row", path.display());
    let header = text.lines().next();
    if header != Some(METRICS_HEADER)
        && header != Some(METRICS_HEADER_WITHOUT_CLEAN)
        && header != Some(METRICS_HEADER_WITH_VALIDATION)
    {
        return Err(format!("{}: not a netc metrics file (expected the header `{METRICS_HEADER}`)", path.display()));
    }
    text.lines()
        .skip(1)
        .enumerate()
        .map(|(i, line)| {
            let mut fields: Vec<&str> = line.split(',').collect();
            let number = |f: &str| f.parse::<f64>().map_err(|_| bad(i + 2));
            let validation = match fields.len() {
                11 => {
                    let error = fields.pop().unwrap_or_default();
                    let loss = fields.pop().unwrap_or_default();
                    Some(CleanErrors { loss: number(loss)?, error: number(error)? })
                }
                _ => None,
            };
            let (first, clean) = match fields[..] {
                [ref first @ .., "", ""] if first.len() == 7 => (first, None),
                [ref first @ .., loss, error] if first.len() == 7 => {
                    (first, Some(CleanErrors { loss: number(loss)?, error: number(error)? }))
                }
                ref first if first.len() == 7 => (first, None),
                _ => return Err(bad(i + 2)),
            };
            let v: Vec<f64> = first.iter().map(|f| number(f)).collect::<Result<_, _>>()?;
            let [epoch, train_loss, train_error, test_loss, test_error, seconds, images_per_sec] = v[..] else {
                return Err(bad(i + 2));
            };
            Ok(EpochMetrics {
                epoch: epoch as usize,
                train_loss,
                train_error,
                test_loss,
                test_error,
                seconds,
                images_per_sec,
                clean,
                validation,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clean_subset_is_a_seeded_sorted_sample_of_distinct_images() {
        let images: Vec<u8> = (0..12_000u32).flat_map(|i| [(i % 251) as u8, (i / 251) as u8]).collect();
        let labels: Vec<u8> = (0..12_000u32).map(|i| (i % 10) as u8).collect();
        let set = Samples { images: Values::Bytes(&images), labels: &labels, image_len: 2 };
        let clean = CleanSet::draw(&set, 3);
        assert_eq!(clean.labels.len(), CLEAN_SUBSET);
        let OwnedValues::Bytes(chosen_images) = &clean.images else { panic!("bytes stay bytes") };
        let index = |k: usize| usize::from(chosen_images[2 * k]) + 251 * usize::from(chosen_images[2 * k + 1]);
        let chosen: Vec<usize> = (0..CLEAN_SUBSET).map(index).collect();
        assert!(chosen.windows(2).all(|w| w[0] < w[1]), "distinct, in data-set order");
        assert!(chosen.iter().zip(&clean.labels).all(|(&i, &l)| labels[i] == l), "labels follow their images");
        assert_eq!(CleanSet::draw(&set, 3).images, clean.images);
        assert_ne!(CleanSet::draw(&set, 4).images, clean.images);
        // Fewer images than the subset: all of them.
        assert_eq!(CleanSet::draw(&set.take(500), 3).labels, labels[..500]);
    }

    #[test]
    fn metrics_without_the_clean_columns_still_read() {
        let dir = std::env::temp_dir().join(format!("netc-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let old = dir.join("old.csv");
        std::fs::write(&old, format!("{METRICS_HEADER_WITHOUT_CLEAN}\n1,0.5,0.1,0.4,0.09,1.000,100.0\n")).unwrap();
        let rows = read_metrics(&old).unwrap();
        assert_eq!((rows[0].test_error, rows[0].clean), (0.09, None));
        let new = dir.join("new.csv");
        let mut row = rows[0].clone();
        row.clean = Some(CleanErrors { loss: 0.25, error: 0.0625 });
        std::fs::write(&new, format!("{METRICS_HEADER}\n{}\n{}\n", rows[0].csv_row(), row.csv_row())).unwrap();
        let back = read_metrics(&new).unwrap();
        assert_eq!(back, vec![rows[0].clone(), row]);
        std::fs::write(&new, format!("{METRICS_HEADER}\n1,0.5,0.1,0.4,0.09,1.000,100.0,0.2\n")).unwrap();
        assert!(read_metrics(&new).is_err(), "a row with one clean column is malformed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
