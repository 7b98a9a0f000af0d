//! The two executors as training backends. Each owns its training and evaluation programs,
//! and from its training program the parameters' metadata and initial values.

use super::compile::{compile, executor_error, limited_executor};
use super::training::EVAL_BATCH;
use crate::{Error, Model};
use netc_check::{Init, Optimizer};
use netc_exec::{Executor, HeldUpdates, OutputSlot};
use netc_interp::{Feed, Interpreter, RunError};
use netc_ir::{Mode, Program, SignConstraint, Tensor};
use netc_train::optimizer::Update;
use netc_train::{Backend, BatchResult, Named, Param, Slot, StepError};

/// The recipe's initialisation of the parameters of a training program.
struct Initialiser {
    init: Init,
    seed: u64,
}

impl Initialiser {
    fn new(model: &Model) -> Initialiser {
        Initialiser { init: model.train().init, seed: model.train().seed }
    }

    fn params(&self, program: &Program) -> Vec<Named> {
        netc_lower::init_params(program, &self.init, self.seed)
    }
}

/// The reference interpreter as a training backend.
pub struct InterpBackend {
    train: Program,
    eval: Program,
    params: Vec<Param>,
    initialiser: Initialiser,
    interpreter: Interpreter,
    example_shape: Vec<usize>,
}

impl InterpBackend {
    pub fn new(model: &Model) -> Result<InterpBackend, Error> {
        let train = compile(model, Mode::Train, true)?;
        Ok(InterpBackend {
            params: Param::of_program(&train),
            eval: compile(model, Mode::Eval, false)?,
            train,
            initialiser: Initialiser::new(model),
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
                StepError::NonFinite { layer: source.name, span: syntax_span(source.span) }
            }
            other => StepError::Failed(other.to_string()),
        })
    }

    /// Loss and error count from a program's outputs.
    fn batch_result(outputs: &netc_interp::Outputs, labels: &[u8]) -> Result<BatchResult, StepError> {
        let output = |name: &str| {
            outputs.get(name).ok_or_else(|| StepError::Failed(format!("the program has no `{name}` output")))
        };
        let loss = output(netc_ir::LOSS)?.data()[0] as f64;
        Ok(BatchResult { loss, errors: count_errors(output(netc_ir::LOGITS)?.data(), labels) })
    }
}

impl Backend for InterpBackend {
    fn params(&self) -> &[Param] {
        &self.params
    }

    fn initial_params(&self) -> Vec<Named> {
        self.initialiser.params(&self.train)
    }

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
        for (grad, param) in grads.iter_mut().zip(&self.params) {
            let computed = outputs
                .get(&param.name)
                .ok_or_else(|| StepError::Failed(format!("no gradient for `{}`", param.name)))?;
            copy_gradient(grad, computed.data(), &param.name)?;
        }
        Self::batch_result(&outputs, labels)
    }

    fn evaluate(
        &mut self,
        params: &[Named],
        images: &[f32],
        labels: &[u8],
        key: u64,
    ) -> Result<BatchResult, StepError> {
        let outputs = self.run(&self.eval, params, images, labels, key)?;
        Self::batch_result(&outputs, labels)
    }

    fn scores(&mut self, params: &[Named], images: &[f32], count: usize, key: u64) -> Result<Vec<f32>, StepError> {
        let outputs = self.run(&self.eval, params, images, &vec![0; count], key)?;
        let logits =
            outputs.get(netc_ir::LOGITS).ok_or_else(|| StepError::Failed("the program has no logits".into()))?;
        Ok(logits.data().to_vec())
    }
}

/// The usage error of a step whose planned buffers (`planned` bytes) and the trainer's tensors
/// (`held` bytes) exceed `limit`.
fn over_budget(model: &Model, what: &str, batch: usize, planned: u64, held: u64, limit: u64) -> Error {
    use netc_check::Bytes;
    use netc_syntax::Code;
    let diagnostic = Code::TooMuchMemory
        .error()
        .with_message(format!(
            "{what} `{}` with batch {batch} needs {} of memory as planned, more than the limit of {}",
            model.net().name,
            Bytes(planned.saturating_add(held)),
            Bytes(limit)
        ))
        .with_notes(vec![
            format!(
                "note: the executor's buffers (activations, their gradients and workspace) {}, parameters, gradients and optimizer state {}",
                Bytes(planned),
                Bytes(held)
            ),
            "help: lower the batch (`--batch` or `batch` in the train block), make the net smaller, or raise the limit with --max-memory".into(),
        ]);
    Error::Usage { source: Some(model.source.clone()), diagnostics: vec![diagnostic] }
}

/// Copies a computed gradient into the trainer's buffer and tells whether it is finite.
fn copy_gradient(grad: &mut [f32], computed: &[f32], name: &str) -> Result<bool, StepError> {
    // Checked chunk by chunk while each is in cache: a second pass would read it all again.
    const CHUNK: usize = 4096;
    if grad.len() != computed.len() {
        return Err(StepError::Failed(format!("the gradient of `{name}` has the wrong length")));
    }
    let mut finite = true;
    for (dst, src) in grad.chunks_mut(CHUNK).zip(computed.chunks(CHUNK)) {
        dst.copy_from_slice(src);
        finite &= src.iter().fold(true, |ok, g| ok & g.is_finite());
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

/// What feeds one input slot of an executor.
#[derive(Clone, Copy, Debug)]
enum Binding {
    Data,
    Labels,
    /// The parameter at this position of [`Backend::params`].
    Param(usize),
}

/// An executor with its input slots and output slots resolved once by name.
struct Bound {
    executor: Executor,
    inputs: Vec<Binding>,
    loss: OutputSlot,
    logits: OutputSlot,
}

impl Bound {
    fn new(executor: Executor, model: &Model, params: &[Param]) -> Result<Bound, Error> {
        let data = &model.net().input.name;
        let inputs = executor
            .input_names()
            .map(|name| match name {
                _ if name == data => Ok(Binding::Data),
                netc_ir::LABELS => Ok(Binding::Labels),
                _ => params
                    .iter()
                    .position(|p| p.name == name)
                    .map(Binding::Param)
                    .ok_or_else(|| Error::Internal(format!("program input `{name}` is not a parameter"))),
            })
            .collect::<Result<_, _>>()?;
        let output = |name: &str| {
            executor.output_slot(name).ok_or_else(|| Error::Internal(format!("the program has no `{name}` output")))
        };
        Ok(Bound { loss: output(netc_ir::LOSS)?, logits: output(netc_ir::LOGITS)?, inputs, executor })
    }

    /// Runs one batch and reads its loss and errors; on a non-finite loss, finds the layer.
    fn run(
        &mut self,
        params: &[Named],
        images: &[f32],
        labels: &[u8],
        labels_f32: &[f32],
        step: u64,
    ) -> Result<BatchResult, StepError> {
        let Bound { executor, inputs, .. } = self;
        let value = |slot: usize| match inputs[slot] {
            Binding::Data => images,
            Binding::Labels => labels_f32,
            Binding::Param(i) => params.get(i).map_or(&[][..], |(_, t)| t.data()),
        };
        executor.run_slots(labels.len(), step, value).map_err(|e| StepError::Failed(e.to_string()))?;
        let output = |slot| executor.output_at(slot).ok_or_else(|| StepError::Failed("no output after a run".into()));
        let loss = output(self.loss)?[0] as f64;
        let errors = count_errors(output(self.logits)?, labels);
        if !loss.is_finite() {
            name_divergence(&mut self.executor)?;
        }
        Ok(BatchResult { loss, errors })
    }
}

/// The compiled executor (planned memory, GEMM kernels, threads) as a training backend; the
/// default for training and inference.
pub struct ExecBackend {
    train: Bound,
    eval: Bound,
    params: Vec<Param>,
    /// The output slot of each parameter's gradient, in parameter order.
    gradients: Vec<OutputSlot>,
    /// The training executor's input slot of each parameter, in parameter order: where it
    /// keeps them for [`Backend::held_step`].
    param_slots: Vec<usize>,
    initialiser: Initialiser,
    labels: Vec<f32>,
}

impl ExecBackend {
    /// `threads` 0 means one per core; results do not depend on it.
    pub fn new(model: &Model, threads: usize) -> Result<ExecBackend, Error> {
        Self::build(model, threads, None)
    }

    /// [`ExecBackend::new`] within a memory budget of `limit` bytes for the whole step: the
    /// evaluation batch, and with `training` the training batch, are planned now, and a plan
    /// whose buffers do not fit in what the parameters, their gradients and the optimizer's
    /// state leave of `limit` is refused (a usage error with the figures) before it allocates.
    pub fn with_memory_limit(model: &Model, threads: usize, limit: u64, training: bool) -> Result<ExecBackend, Error> {
        let config = model.train();
        let step = netc_check::Step::Train { batch: config.batch, optimizer: &config.optimizer };
        let held = netc_check::StepMemory::of(model.net(), step);
        let trainer = held.parameters.saturating_add(held.gradients).saturating_add(held.optimizer_state);
        let mut backend = Self::build(model, threads, Some(limit.saturating_sub(trainer)))?;
        let mut plans = vec![(&mut backend.eval.executor, EVAL_BATCH, "evaluating")];
        if training {
            plans.insert(0, (&mut backend.train.executor, config.batch, "training"));
        }
        for (executor, batch, what) in plans {
            executor.prepare(batch).map_err(|e| match e {
                netc_exec::ExecError::OverBudget { bytes, .. } => {
                    over_budget(model, what, batch, bytes, trainer, limit)
                }
                other => executor_error(other),
            })?;
        }
        Ok(backend)
    }

    fn build(model: &Model, threads: usize, memory_limit: Option<u64>) -> Result<ExecBackend, Error> {
        let executor = |program: &Program| limited_executor(program, threads, memory_limit);
        let train = executor(&compile(model, Mode::Train, true)?)?;
        let params = Param::of_program(train.program());
        let gradients = params
            .iter()
            .map(|p| train.output_slot(&p.name).ok_or_else(|| Error::Internal(format!("no gradient for `{}`", p.name))))
            .collect::<Result<_, _>>()?;
        let eval = executor(&compile(model, Mode::Eval, false)?)?;
        let train = Bound::new(train, model, &params)?;
        let param_slots = (0..params.len())
            .map(|i| {
                let slot = train.inputs.iter().position(|b| matches!(b, Binding::Param(p) if *p == i));
                slot.ok_or_else(|| Error::Internal(format!("`{}` is no input of the program", params[i].name)))
            })
            .collect::<Result<_, _>>()?;
        Ok(ExecBackend {
            train,
            eval: Bound::new(eval, model, &params)?,
            gradients,
            param_slots,
            params,
            initialiser: Initialiser::new(model),
            labels: Vec::with_capacity(model.train().batch),
        })
    }

    /// The labels as the programs read them, in a buffer kept between steps.
    fn set_labels(&mut self, labels: &[u8]) {
        self.labels.clear();
        self.labels.extend(labels.iter().map(|&l| f32::from(l)));
    }
}

impl Backend for ExecBackend {
    fn params(&self) -> &[Param] {
        &self.params
    }

    fn initial_params(&self) -> Vec<Named> {
        self.initialiser.params(self.train.executor.program())
    }

    fn train_step(
        &mut self,
        params: &[Named],
        images: &[f32],
        labels: &[u8],
        step: u64,
        grads: &mut [Vec<f32>],
    ) -> Result<BatchResult, StepError> {
        self.set_labels(labels);
        let result = self.train.run(params, images, labels, &self.labels, step)?;
        let mut finite = true;
        for ((grad, &slot), param) in grads.iter_mut().zip(&self.gradients).zip(&self.params) {
            let computed = self
                .train
                .executor
                .output_at(slot)
                .ok_or_else(|| StepError::Failed(format!("no gradient for `{}`", param.name)))?;
            finite &= copy_gradient(grad, computed, &param.name)?;
        }
        // A ReLU turns a NaN into 0, so a diverging layer can leave the loss finite: check the
        // gradients too, and name the layer that produced the first non-finite value.
        if !finite {
            name_divergence(&mut self.train.executor)?;
        }
        Ok(result)
    }

    fn evaluate(
        &mut self,
        params: &[Named],
        images: &[f32],
        labels: &[u8],
        key: u64,
    ) -> Result<BatchResult, StepError> {
        self.set_labels(labels);
        self.eval.run(params, images, labels, &self.labels, key)
    }

    fn scores(&mut self, params: &[Named], images: &[f32], count: usize, key: u64) -> Result<Vec<f32>, StepError> {
        let labels = vec![0; count];
        self.set_labels(&labels);
        self.eval.run(params, images, &labels, &self.labels, key)?;
        let logits = self.eval.executor.output_at(self.eval.logits);
        logits.map(<[f32]>::to_vec).ok_or_else(|| StepError::Failed("no output after a run".into()))
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
            let sgd = sgd_of(update, (momentum, weight_decay), (lr_mult, wd_mult));
            let executor = &mut self.train.executor;
            executor.sgd_update(sgd, p.1.data_mut(), &mut slot.m, g).map_err(|e| StepError::Failed(e.to_string()))?;
        }
        Ok(())
    }

    /// With SGD the parameters stay in the training executor's memory: a step copies none in
    /// and no gradient out, and the compiled update writes them in place.
    fn held_step(
        &mut self,
        take: Option<&[Named]>,
        images: &[f32],
        labels: &[u8],
        step: u64,
        update: &Update<'_>,
        slots: &mut [Slot],
        signs: &[Option<SignConstraint>],
    ) -> Option<Result<BatchResult, StepError>> {
        let Optimizer::Sgd { momentum, weight_decay, .. } = *update.optimizer else { return None };
        Some(self.sgd_held_step(take, images, labels, step, update, (momentum, weight_decay), slots, signs))
    }

    fn read_params(&mut self, params: &mut [Named]) {
        for (&slot, (_, tensor)) in self.param_slots.iter().zip(params) {
            if let Some(held) = self.train.executor.held(slot) {
                tensor.data_mut().copy_from_slice(held);
            }
        }
    }
}

impl ExecBackend {
    #[allow(clippy::too_many_arguments)]
    fn sgd_held_step(
        &mut self,
        take: Option<&[Named]>,
        images: &[f32],
        labels: &[u8],
        step: u64,
        update: &Update<'_>,
        (momentum, weight_decay): (f64, f64),
        slots: &mut [Slot],
        signs: &[Option<SignConstraint>],
    ) -> Result<BatchResult, StepError> {
        let failed = |e: netc_exec::ExecError| StepError::Failed(e.to_string());
        for (&slot, (_, tensor)) in self.param_slots.iter().zip(take.unwrap_or_default()) {
            self.train.executor.hold(slot, tensor.data()).map_err(failed)?;
        }
        self.set_labels(labels);
        // The held parameters are not asked for.
        let result = self.train.run(&[], images, labels, &self.labels, step)?;
        if !result.loss.is_finite() {
            return Ok(result);
        }
        let executor = &mut self.train.executor;
        let finite = self.gradients.iter().all(|&g| executor.output_at(g).is_some_and(all_finite));
        // As `train_step`: a ReLU can turn a NaN into 0 and leave the loss finite.
        if !finite {
            name_divergence(executor)?;
        }
        let params = self.param_slots.iter().zip(&self.gradients).zip(slots).zip(update.mults);
        let steps = |held: &mut HeldUpdates<'_>| {
            for (((&slot, &gradient), state), &mults) in params {
                held.sgd(sgd_of(update, (momentum, weight_decay), mults), slot, gradient, &mut state.m)?;
            }
            Ok(())
        };
        executor.update_held(steps).and_then(|done| done).map_err(failed)?;
        // Dale's principle by projection, as the trainer does it for unheld parameters.
        for (&slot, sign) in self.param_slots.iter().zip(signs) {
            if let (Some(sign), Some(values)) = (sign, executor.held_mut(slot)) {
                sign.project(values);
            }
        }
        Ok(result)
    }
}

/// The compiled update's hyper-parameters for one tensor: the step's rate and the optimizer's
/// momentum and decay, with the tensor's multipliers applied.
fn sgd_of(update: &Update<'_>, (momentum, weight_decay): (f64, f64), (lr_mult, wd_mult): (f64, f64)) -> netc_exec::Sgd {
    netc_exec::Sgd {
        lr: (update.lr * lr_mult) as f32,
        momentum: momentum as f32,
        weight_decay: (weight_decay * wd_mult) as f32,
    }
}

/// After a run with a non-finite result: the layer whose value first turned non-finite, as an
/// error, if the executor can tell.
fn name_divergence(executor: &mut Executor) -> Result<(), StepError> {
    match executor.first_non_finite().and_then(|nf| nf.source) {
        Some(source) => Err(StepError::NonFinite { layer: source.name, span: syntax_span(source.span) }),
        None => Ok(()),
    }
}

/// Whether every value is finite.
fn all_finite(values: &[f32]) -> bool {
    // Infinities and NaNs have every exponent bit set. Integer flags OR-ed along a chunk, with
    // no branch, vectorise; a bool fold does not.
    let non_finite = |v: &f32| u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000);
    values.chunks(4096).all(|chunk| chunk.iter().fold(0, |any, v| any | non_finite(v)) == 0)
}

/// The span of an IR value's source, for a diagnostic against the `.net` text.
fn syntax_span(span: netc_ir::Span) -> netc_syntax::Span {
    netc_syntax::Span::new(span.start, span.end)
}
