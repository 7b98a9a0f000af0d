//! Compiling a model to IR and running it: lowering with diagnostics, executors behind the
//! trainer's [`Backend`] trait, and training and evaluation on a named data set.

use crate::{Error, Model, Source};
use netc_check::Optimizer;
use netc_interp::{Feed, Interpreter, RunError};
use netc_ir::{Mode, Program, Tensor};
use netc_syntax::{Diagnostic, Label};
use netc_train::optimizer::Update;
use netc_train::{Backend, BatchResult, EpochMetrics, Event, Named, RunOptions, Samples, Slot, StepError, TrainError};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Lowers the model's net (forward program, in training or evaluation mode).
pub fn lower(model: &Model, mode: Mode) -> Result<Program, Error> {
    let options = netc_ir::LowerOptions { mode, seed: model.train().seed };
    netc_ir::lower(model.net(), options).map_err(|e| {
        model.source_error(
            Diagnostic::error()
                .with_code("E0600")
                .with_message(format!("cannot compile `{}`: {}", e.layer, e.message))
                .with_labels(vec![Label::primary((), e.span.range()).with_message("this layer")]),
        )
    })
}

/// The forward program and, with `grad`, its backward pass: the program that computes the
/// loss and the gradient of every parameter.
pub fn compile(model: &Model, mode: Mode, grad: bool) -> Result<Program, Error> {
    let forward = lower(model, mode)?;
    if !grad {
        return Ok(forward);
    }
    differentiate(model, &forward)
}

fn differentiate(model: &Model, forward: &Program) -> Result<Program, Error> {
    netc_ir::grad(forward).map_err(|e| Error::Internal(format!("cannot differentiate `{}`: {e}", model.net().name)))
}

/// The kernels the compiled executor runs, as `netc ir --fused` prints them.
pub fn fused_text(model: &Model, grad: bool) -> Result<String, Error> {
    let program = compile(model, Mode::Train, grad)?;
    netc_exec::describe(&program, Some(&model.source.text)).map_err(executor_error)
}

/// A compiler stage and how long it took.
pub type StageTime = (&'static str, Duration);

/// Compiles one net of `source` from text to machine code for the compiled executor (the
/// training program with `grad`), timing each stage: parse, check, IR, autodiff, fusion,
/// machine code.
pub fn stage_times(
    source: &Source,
    set: &[(String, String)],
    net: Option<&str>,
    grad: bool,
) -> Result<Vec<StageTime>, Error> {
    let mut times = Vec::new();
    let start = Instant::now();
    let file = crate::parse(source)?;
    times.push(("parse", start.elapsed()));
    let start = Instant::now();
    let model = crate::pick_net(source, crate::check_file(source, &file, set)?, net)?;
    times.push(("check", start.elapsed()));
    let start = Instant::now();
    let mut program = lower(&model, Mode::Train)?;
    times.push(("IR", start.elapsed()));
    if grad {
        let start = Instant::now();
        program = differentiate(&model, &program)?;
        times.push(("autodiff", start.elapsed()));
    }
    let compiled = executor(&program, 1)?.compile_times();
    times.push(("fusion", compiled.fusion));
    times.push(("machine code", compiled.machine_code));
    Ok(times)
}

fn executor(program: &Program, threads: usize) -> Result<netc_exec::Executor, Error> {
    netc_exec::Executor::new(program, netc_exec::ExecOptions { threads }).map_err(executor_error)
}

fn executor_error(e: netc_exec::ExecError) -> Error {
    Error::Io(format!("cannot start the executor: {e}"))
}

/// The textual IR `netc ir` prints.
pub fn ir_text(model: &Model, grad: bool) -> Result<String, Error> {
    let program = compile(model, Mode::Train, grad)?;
    let text = program.display_with_source(&model.source.text).to_string();
    Ok(text)
}

/// `netc summary`: the checker's table of layers, then the fixed, seeded choice of units of
/// every layer that has one (as lowering draws it): which units are NegLUs, min units,
/// inhibitory, and so on. Each part but a layer's first is listed, its units compressed into
/// ranges (`3, 17, 41-43`).
pub fn summary(model: &Model) -> String {
    let mut out = netc_check::summary(model.net());
    let choices = netc_ir::all_fixed_units(model.net(), model.train().seed);
    if !choices.is_empty() {
        out.push_str(&format!("fixed units (seed {}):\n", model.train().seed));
    }
    for choice in &choices {
        let total = choice.part_of.len();
        let per = if choice.shape.len() > 1 { " (per position)" } else { "" };
        for (part, name) in choice.parts.iter().enumerate().skip(1) {
            let units = choice.units_of(part);
            let listed = if units.is_empty() { "none".to_string() } else { ranges(&units) };
            out.push_str(&format!("  {}: {} of {total} units{per} {name}: {listed}\n", choice.layer, units.len()));
        }
    }
    out
}

/// Increasing indices as a list with runs of three or more shown as ranges: `3, 17, 41-43`.
fn ranges(sorted: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut start = 0;
    while start < sorted.len() {
        let mut end = start;
        while end + 1 < sorted.len() && sorted[end + 1] == sorted[end] + 1 {
            end += 1;
        }
        match end - start {
            0 => parts.push(sorted[start].to_string()),
            1 => parts.extend([sorted[start].to_string(), sorted[end].to_string()]),
            _ => parts.push(format!("{}-{}", sorted[start], sorted[end])),
        }
        start = end + 1;
    }
    parts.join(", ")
}

/// Fresh parameters for the model, by its `train` block's `init` and seed.
pub fn init_params(model: &Model, program: &Program) -> Vec<Named> {
    netc_ir::init_params(program, &model.train().init, model.train().seed)
}

/// The reference interpreter as a training backend.
pub struct InterpBackend {
    train: Program,
    eval: Program,
    interpreter: Interpreter,
    example_shape: Vec<usize>,
}

impl InterpBackend {
    pub fn new(model: &Model) -> Result<InterpBackend, Error> {
        Ok(InterpBackend {
            train: compile(model, Mode::Train, true)?,
            eval: compile(model, Mode::Eval, false)?,
            interpreter: Interpreter::default(),
            example_shape: model.net().input.shape.clone(),
        })
    }

    /// The training program (forward and backward).
    pub fn train_program(&self) -> &Program {
        &self.train
    }

    fn run(
        &self,
        program: &Program,
        params: &[Named],
        images: &[f32],
        labels: &[u8],
        step: u64,
    ) -> Result<netc_interp::Outputs, StepError> {
        let mut shape = vec![labels.len()];
        shape.extend_from_slice(&self.example_shape);
        let failed = |e: netc_ir::TensorSizeError| StepError::Failed(e.to_string());
        let data = Tensor::new(shape, images.to_vec()).map_err(failed)?;
        let labels = Tensor::new(vec![labels.len()], labels.iter().map(|&l| f32::from(l)).collect()).map_err(failed)?;
        let feed = Feed { data: Some(&data), labels: Some(&labels), step, params };
        self.interpreter.run(program, &feed).map_err(|e| match e {
            RunError::NonFinite { source: Some(source), .. } => {
                StepError::NonFinite { layer: source.name, span: source.span }
            }
            other => StepError::Failed(other.to_string()),
        })
    }
}

/// Loss and error count from a program's outputs.
fn batch_result(outputs: &netc_interp::Outputs, labels: &[u8]) -> Result<BatchResult, StepError> {
    let missing = |name: &str| StepError::Failed(format!("the program has no `{name}` output"));
    let loss = outputs.get(netc_ir::LOSS).ok_or_else(|| missing(netc_ir::LOSS))?.data()[0] as f64;
    let logits = outputs.get(netc_ir::LOGITS).ok_or_else(|| missing(netc_ir::LOGITS))?;
    Ok(BatchResult { loss, errors: count_errors(logits.data(), labels) })
}

/// Copies each parameter's gradient, an output named like the parameter, into `grads`, and
/// tells whether every gradient is finite.
fn copy_gradients<'a>(
    params: &[Named],
    grads: &mut [Vec<f32>],
    output: impl Fn(&str) -> Option<&'a [f32]>,
) -> Result<bool, StepError> {
    // Checked chunk by chunk while each is in cache: a second pass would read it all again.
    const CHUNK: usize = 4096;
    let mut finite = true;
    for (grad, (name, _)) in grads.iter_mut().zip(params) {
        let computed = output(name).ok_or_else(|| StepError::Failed(format!("no gradient for `{name}`")))?;
        if grad.len() != computed.len() {
            return Err(StepError::Failed(format!("the gradient of `{name}` has the wrong length")));
        }
        for (dst, src) in grad.chunks_mut(CHUNK).zip(computed.chunks(CHUNK)) {
            dst.copy_from_slice(src);
            finite &= src.iter().fold(true, |ok, g| ok & g.is_finite());
        }
    }
    Ok(finite)
}

/// Examples whose highest score (the first, on ties) is not their label.
pub fn count_errors(logits: &[f32], labels: &[u8]) -> usize {
    let classes = logits.len() / labels.len().max(1);
    logits
        .chunks_exact(classes.max(1))
        .zip(labels)
        .filter(|(scores, &label)| {
            let best = scores.iter().enumerate().fold(0, |best, (i, &s)| if s > scores[best] { i } else { best });
            best != usize::from(label)
        })
        .count()
}

impl Backend for InterpBackend {
    fn train_step(
        &mut self,
        params: &[Named],
        images: &[f32],
        labels: &[u8],
        step: u64,
        grads: &mut [Vec<f32>],
    ) -> Result<BatchResult, StepError> {
        let outputs = self.run(&self.train, params, images, labels, step)?;
        // The interpreter checks every value it computes, so the gradients are finite here.
        copy_gradients(params, grads, |name| outputs.get(name).map(Tensor::data))?;
        batch_result(&outputs, labels)
    }

    fn evaluate(&mut self, params: &[Named], images: &[f32], labels: &[u8]) -> Result<BatchResult, StepError> {
        let outputs = self.run(&self.eval, params, images, labels, 0)?;
        batch_result(&outputs, labels)
    }
}

/// The compiled executor (planned memory, GEMM kernels, threads) as a training backend; the
/// default for training and inference.
pub struct ExecBackend {
    train: netc_exec::Executor,
    eval: netc_exec::Executor,
    data_input: String,
    labels: Vec<f32>,
}

impl ExecBackend {
    /// `threads` 0 means one per core; results do not depend on it.
    pub fn new(model: &Model, threads: usize) -> Result<ExecBackend, Error> {
        Ok(ExecBackend {
            train: executor(&compile(model, Mode::Train, true)?, threads)?,
            eval: executor(&compile(model, Mode::Eval, false)?, threads)?,
            data_input: model.net().input.name.clone(),
            labels: Vec::new(),
        })
    }

    /// Runs one batch and reads its loss and errors; on a non-finite loss, finds the layer.
    fn run(
        executor: &mut netc_exec::Executor,
        data_input: &str,
        labels_f32: &mut Vec<f32>,
        params: &[Named],
        images: &[f32],
        labels: &[u8],
        step: u64,
    ) -> Result<BatchResult, StepError> {
        labels_f32.clear();
        labels_f32.extend(labels.iter().map(|&l| f32::from(l)));
        let mut inputs: Vec<(&str, &[f32])> = Vec::with_capacity(params.len() + 2);
        inputs.push((data_input, images));
        inputs.push((netc_ir::LABELS, labels_f32));
        inputs.extend(params.iter().map(|(name, t)| (name.as_str(), t.data())));
        let feed = netc_exec::Feed { batch: labels.len(), step, inputs: &inputs };
        executor.run(&feed).map_err(|e| StepError::Failed(e.to_string()))?;
        let output = |name: &str| executor.output(name).ok_or_else(|| StepError::Failed(format!("no `{name}` output")));
        let loss = output(netc_ir::LOSS)?[0] as f64;
        let errors = count_errors(output(netc_ir::LOGITS)?, labels);
        if !loss.is_finite() {
            if let Some(source) = executor.first_non_finite().and_then(|nf| nf.source) {
                return Err(StepError::NonFinite { layer: source.name, span: source.span });
            }
        }
        Ok(BatchResult { loss, errors })
    }
}

impl Backend for ExecBackend {
    fn train_step(
        &mut self,
        params: &[Named],
        images: &[f32],
        labels: &[u8],
        step: u64,
        grads: &mut [Vec<f32>],
    ) -> Result<BatchResult, StepError> {
        let result = Self::run(&mut self.train, &self.data_input, &mut self.labels, params, images, labels, step)?;
        let finite = copy_gradients(params, grads, |name| self.train.output(name))?;
        // A ReLU turns a NaN into 0, so a diverging layer can leave the loss finite: check the
        // gradients too, and name the layer that produced the first non-finite value.
        if !finite {
            if let Some(source) = self.train.first_non_finite().and_then(|nf| nf.source) {
                return Err(StepError::NonFinite { layer: source.name, span: source.span });
            }
        }
        Ok(result)
    }

    fn evaluate(&mut self, params: &[Named], images: &[f32], labels: &[u8]) -> Result<BatchResult, StepError> {
        Self::run(&mut self.eval, &self.data_input, &mut self.labels, params, images, labels, 0)
    }

    /// SGD runs as a compiled kernel over the executor's threads; Adam uses the reference.
    fn update(
        &mut self,
        update: &Update<'_>,
        params: &mut [Named],
        grads: &[Vec<f32>],
        slots: &mut [Slot],
    ) -> Result<(), StepError> {
        let Optimizer::Sgd { momentum, weight_decay, .. } = *update.optimizer else {
            update.apply(params, grads, slots);
            return Ok(());
        };
        for (((p, g), slot), &(lr_mult, wd_mult)) in params.iter_mut().zip(grads).zip(slots).zip(update.mults) {
            let sgd = netc_exec::Sgd {
                lr: (update.lr * lr_mult) as f32,
                momentum: momentum as f32,
                weight_decay: (weight_decay * wd_mult) as f32,
            };
            self.train.sgd_update(sgd, p.1.data_mut(), &mut slot.m, g).map_err(|e| StepError::Failed(e.to_string()))?;
        }
        Ok(())
    }
}

/// Where the data comes from.
#[derive(Clone, Debug)]
pub struct DataRequest {
    /// A data set name (`mnist`) or a folder.
    pub name: String,
    /// Looked in first (`--data-dir`).
    pub dir: Option<PathBuf>,
}

/// A loaded data set and the facts a run records about it.
pub struct Data {
    pub mnist: netc_data::Mnist,
    pub folder: PathBuf,
}

impl Data {
    pub fn load(request: &DataRequest) -> Result<Data, Error> {
        let folder = netc_data::locate(&request.name, request.dir.as_deref()).map_err(|e| Error::Io(e.to_string()))?;
        let mnist = netc_data::Mnist::load(&folder).map_err(|e| Error::Io(e.to_string()))?;
        // By name the data must be the canonical MNIST; a folder may hold any data in its format.
        if netc_data::KNOWN_DATASETS.contains(&request.name.as_str()) {
            mnist.verify_checksums().map_err(|e| Error::Io(e.to_string()))?;
        }
        Ok(Data { mnist, folder })
    }

    fn samples(set: &netc_data::Dataset) -> Samples<'_> {
        Samples { images: &set.images, labels: &set.labels, image_len: set.image_len() }
    }

    /// Whether `model` can read this data: its input must be one image, its classes the labels'.
    pub fn check_fits(&self, model: &Model) -> Result<(), Error> {
        let net = model.net();
        let set = &self.mnist.train;
        let (rows, cols) = (set.rows, set.cols);
        if net.input.shape != [1, rows, cols] && net.input.shape != [rows * cols] {
            return Err(model.source_error(
                Diagnostic::error()
                    .with_code("E0700")
                    .with_message(format!(
                        "the data set's images are [1, {rows}, {cols}], but net `{}` takes {:?}",
                        net.name, net.input.shape
                    ))
                    .with_labels(vec![Label::primary((), net.input.span.range()).with_message("declared here")])
                    .with_notes(vec![format!("help: declare `input {}: [1, {rows}, {cols}]`", net.input.name)]),
            ));
        }
        if net.loss.classes != set.classes {
            return Err(model.source_error(
                Diagnostic::error()
                    .with_code("E0701")
                    .with_message(format!(
                        "the data set has {} classes, but the loss has {}",
                        set.classes, net.loss.classes
                    ))
                    .with_labels(vec![Label::primary((), net.loss.span.range()).with_message("this loss")]),
            ));
        }
        Ok(())
    }
}

/// The code of the diagnostic [`train`] returns when a run diverges.
pub const DIVERGED: &str = "E0800";

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

/// What `run.json` records about a run's origin: the source file, the data folder and the
/// checksum of every data file, and the `--set` overrides.
pub fn provenance(file: &std::path::Path, data: &Data, set: &[(String, String)]) -> Vec<(String, String)> {
    let mut facts = vec![
        ("source".to_string(), file.display().to_string()),
        ("data".to_string(), data.folder.display().to_string()),
    ];
    facts.extend(data.mnist.checksums.iter().map(|c| (format!("sha256:{}", c.name), c.sha256.clone())));
    facts.extend(set.iter().map(|(k, v)| (format!("set:{k}"), v.clone())));
    facts
}

/// Trains `model` on `data` with `backend`, writing the run folder `options.out`.
pub fn train(
    model: &Model,
    data: &Data,
    backend: &mut dyn Backend,
    init: &dyn Fn() -> Vec<Named>,
    options: &RunOptions,
    on_event: &mut dyn FnMut(Event),
) -> Result<Vec<EpochMetrics>, Error> {
    data.check_fits(model)?;
    let job = netc_train::Job {
        net: model.net(),
        config: model.train(),
        source: &model.source.text,
        train: Data::samples(&data.mnist.train),
        test: Data::samples(&data.mnist.test),
    };
    netc_train::train(&job, backend, init, options, on_event).map_err(|e| match e {
        TrainError::Io(message) => Error::Io(message),
        TrainError::Diverged { epoch, step, layer, span } => model.source_error(
            Diagnostic::error()
                .with_code(DIVERGED)
                .with_message(format!("training diverged in epoch {epoch}, step {step}"))
                .with_labels(vec![Label::primary((), span.range())
                    .with_message(format!("`{layer}` produced the first NaN or infinity"))])
                .with_notes(vec![
                    "note: the last good checkpoint is kept in the run folder".into(),
                    "help: lower the learning rate, or check the initialisation".into(),
                ]),
        ),
    })
}

/// Test loss and error of saved weights.
pub fn evaluate(
    model: &Model,
    data: &Data,
    weights: &std::path::Path,
    backend: &mut dyn Backend,
) -> Result<(f64, f64), Error> {
    data.check_fits(model)?;
    let (tensors, _) = netc_train::checkpoint::load(weights).map_err(Error::Io)?;
    let mut by_name: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
    let params = netc_train::checkpoint::take_params(weights, &mut by_name, &netc_train::param_shapes(model.net()))
        .map_err(Error::Io)?;
    let mean = by_name.remove(netc_train::checkpoint::MEAN_IMAGE).map(Tensor::into_data);
    let preprocess = model.train().preprocess;
    if preprocess == netc_check::Preprocess::MeanImage && mean.is_none() {
        return Err(Error::Io(format!(
            "{}: the recipe subtracts the mean image, but the file holds no `{}`",
            weights.display(),
            netc_train::checkpoint::MEAN_IMAGE
        )));
    }
    netc_train::evaluate(backend, &params, &Data::samples(&data.mnist.test), preprocess, mean.as_deref(), 1000).map_err(
        |e| match e {
            StepError::NonFinite { layer, .. } => {
                Error::Io(format!("evaluation produced NaN or infinity in `{layer}`"))
            }
            StepError::Failed(message) => Error::Io(message),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn runs_of_three_or_more_units_become_ranges() {
        assert_eq!(ranges(&[3, 17, 41, 42, 43, 50, 51, 60]), "3, 17, 41-43, 50, 51, 60");
        assert_eq!(ranges(&[0, 1, 2, 3]), "0-3");
        assert_eq!(ranges(&[7]), "7");
    }
}
