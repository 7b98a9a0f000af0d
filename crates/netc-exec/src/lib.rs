//! The fast executor of netc IR programs, the default for training and inference.
//!
//! [`Executor::new`] compiles a [`Program`] into steps: a GEMM's bias and activation are fused
//! into it, and every chain of elementwise instructions (activations, their derivatives,
//! mask selects, sums and products, per-channel biases and broadcast masks) becomes one
//! kernel that Cranelift compiles to SIMD machine code (`netc-jit`); [`describe`] prints the
//! result, as `netc ir --fused` shows it. The first run at a batch
//! size ([`Executor::prepare`]) resolves every shape and places every value, constant and
//! scratch buffer in one arena, reusing memory between values whose lifetimes do not overlap;
//! later runs at that size allocate nothing.
//!
//! Convolutions and matrix products run on a built-in packed SGEMM (AVX-512 or AVX2+FMA
//! microkernels, the fastest the CPU has, detected at run time, or portable code; the
//! environment variable `NETC_ISA=avx512|avx2|portable` or [`Executor::set_isa`] forces one,
//! and every path computes bitwise the same results), reading im2col matrices that are
//! written per chunk, in cache, directly in its panel layout; first layers (few input
//! channels) and depthwise convolutions run directly, and a max pooling leaves the position
//! of each maximum to its gradient. Pooling, reductions, depthwise convolutions, im2col and
//! the GEMM epilogues are plain loops that LLVM vectorises, compiled once per path so they run
//! at its vector width (the same operations in the same order, so the same bits).
//!
//! Work is split over examples and output rows in tasks whose boundaries depend only on the
//! shapes, and sums across tasks are added in task order, so results are bitwise identical
//! from run to run and for any thread count. Random ops reproduce `netc-interp` exactly, and
//! every op agrees with it to rounding.
//!
//! ```
//! use netc_exec::{ExecOptions, Executor, Feed};
//! use netc_ir::{grad, Mode};
//! use netc_lower::{init_params, lower, LowerOptions};
//!
//! let src = "net tiny {\n  input x: [4]\n  dense(3)\n  tanh\n  dense(2)\n  loss softmax_xent(classes=2)\n}";
//! let checked = netc_check::check(&netc_syntax::parse(src).unwrap(), &[]).unwrap();
//! let forward = lower(&checked.nets[0], LowerOptions { mode: Mode::Train, seed: 1 }).unwrap();
//! let program = grad(&forward).unwrap();
//! let params = init_params(&program, &netc_check::Init::Xavier, 1);
//!
//! let mut exec = Executor::new(&program, ExecOptions { threads: 2, ..ExecOptions::default() }).unwrap();
//! let data = [0.5, -1.0, 2.0, 0.0, 1.0, 1.0, -0.5, 0.25];
//! let labels = [1.0, 0.0];
//! let mut inputs: Vec<(&str, &[f32])> = vec![("x", &data), ("labels", &labels)];
//! inputs.extend(params.iter().map(|(name, t)| (name.as_str(), t.data())));
//! exec.run(&Feed { batch: 2, step: 0, inputs: &inputs }).unwrap();
//! assert!(exec.output("loss").unwrap()[0] > 0.0);
//! assert_eq!(exec.output("dense1.weight").unwrap().len(), 12);
//! ```

mod batch;
mod describe;
mod fuse;
mod gemm;
mod kernels;
mod memory;
mod par;
pub mod peak;
mod plan;
mod pool;
mod update;

use batch::BatchPlan;
use netc_ir::{Dim, Program, Source, ValueId};
use par::Par;
use plan::Compiled;
use pool::Pool;
use std::fmt;
use std::time::{Duration, Instant};

pub use describe::describe;
pub use gemm::Isa;
pub use update::Sgd;

/// The environment variable that forces a GEMM path: `avx512`, `avx2` or `portable`.
pub const ISA_VARIABLE: &str = "NETC_ISA";

/// How to execute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// Worker threads; 0 (the default) means one per available core. Results do not depend
    /// on it.
    pub threads: usize,
    /// The most bytes a batch size's buffers may take; a batch needing more is refused with
    /// [`ExecError::OverBudget`] before anything is allocated. `None`: no limit but the
    /// allocator's.
    pub memory_limit: Option<u64>,
}

/// The inputs of one run.
#[derive(Clone, Copy, Debug)]
pub struct Feed<'a> {
    /// The number of examples: the extent of the symbolic batch dimension `N`.
    pub batch: usize,
    /// The training-step counter, which keys per-step randomness (dropout, resampled masks).
    pub step: u64,
    /// Row-major values of the data, labels (class indices as `f32`) and parameter inputs, by
    /// input name (the data input's own name, `netc_ir::LABELS`, `layer.param`). Every such
    /// input must be given exactly once.
    pub inputs: &'a [(&'a str, &'a [f32])],
}

/// The position of a program output, for reading it without a search by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputSlot(usize);

/// Updates of held inputs inside [`Executor::update_held`].
pub struct HeldUpdates<'e> {
    program: &'e Program,
    compiled: &'e Compiled,
    code: &'e netc_jit::Code,
    held: &'e [bool],
    plan: &'e mut BatchPlan,
    par: Par,
}

impl HeldUpdates<'_> {
    /// One SGD-with-momentum step of held input `slot` in place, with output `gradient` of the
    /// last run as its gradient and `m` (kept by the caller) as its momentum, as
    /// [`Executor::sgd_update`] computes it.
    pub fn sgd(&mut self, sgd: Sgd, slot: usize, gradient: OutputSlot, m: &mut [f32]) -> Result<(), ExecError> {
        let input =
            self.compiled.inputs.get(slot).filter(|_| self.held[slot]).ok_or(ExecError::UnknownSlot { slot })?;
        let output = self.program.outputs().get(gradient.0).ok_or(ExecError::UnknownSlot { slot: gradient.0 })?;
        let (w, g) = self.plan.value_pair_mut(input.value, output.value).ok_or(ExecError::UnknownSlot { slot })?;
        compiled_sgd(self.compiled, self.code, self.par, sgd, w, m, g)
    }
}

/// The first value of a run that held a NaN or an infinity.
#[derive(Clone, Debug, PartialEq)]
pub struct NonFinite {
    pub value: ValueId,
    /// The op's mnemonic, as in the textual IR.
    pub op: &'static str,
    /// The layer the value came from, if known.
    pub source: Option<Source>,
}

/// The wall time of one step of a profiled run.
#[derive(Clone, Debug, PartialEq)]
pub struct StepTime {
    /// The kernel, e.g. `conv2d` (with any fused bias and activation) or `maxpool_bwd`.
    pub kernel: &'static str,
    /// The value the step produces.
    pub value: ValueId,
    pub seconds: f64,
}

/// Why a program could not be run.
#[derive(Clone, Debug, PartialEq)]
pub enum ExecError {
    /// The thread pool could not be created.
    ThreadPool { message: String },
    /// A program input was not given.
    MissingInput { name: String },
    /// A given input is not an input of the program, or was given twice.
    UnexpectedInput { name: String },
    /// An input has the wrong number of values for the batch size.
    InputLength { name: String, expected: usize, got: usize },
    /// The batch size is 0 but the program's shapes involve it.
    EmptyBatch,
    /// The buffers of this batch size do not fit in memory.
    TooLarge { batch: usize },
    /// The buffers of this batch size (activations, their gradients and the kernels'
    /// workspace, as planned) would take `bytes`, more than the executor's `limit`.
    OverBudget { batch: usize, bytes: u64, limit: u64 },
    /// A label that is not a class index.
    BadLabel { example: usize, value: f32, classes: usize },
    /// An instruction no kernel can compute.
    Unsupported { value: ValueId, op: &'static str },
    /// Cranelift could not compile the fused kernels.
    Codegen { message: String },
    /// A parameter update's tensors differ in length.
    UpdateLengths { weights: usize, momentum: usize, gradient: usize },
    /// `NETC_ISA` names no GEMM path.
    UnknownIsa { name: String },
    /// The requested GEMM path needs instructions this CPU lacks.
    IsaUnavailable { isa: Isa },
    /// No input (or output) has this slot, or the input is not held.
    UnknownSlot { slot: usize },
    /// A held input's update needs a gradient, from a run after the input was given.
    NoRun,
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::ThreadPool { message } => write!(f, "cannot start the executor's threads: {message}"),
            ExecError::MissingInput { name } => write!(f, "no value given for input `{name}`"),
            ExecError::UnexpectedInput { name } => {
                write!(f, "`{name}` is not an input of the program, or is given twice")
            }
            ExecError::InputLength { name, expected, got } => {
                write!(f, "input `{name}` needs {expected} values for this batch size, got {got}")
            }
            ExecError::EmptyBatch => f.write_str("the batch is empty"),
            ExecError::TooLarge { batch } => write!(f, "the buffers for batch size {batch} do not fit in memory"),
            ExecError::OverBudget { batch, bytes, limit } => write!(
                f,
                "the buffers for batch size {batch} need {bytes} bytes, more than the memory limit of {limit} bytes"
            ),
            ExecError::BadLabel { example, value, classes } => {
                write!(f, "label {value} of example {example} is not a class index in 0..{classes}")
            }
            ExecError::Unsupported { value, op } => write!(f, "no kernel computes {op} %{}", value.0),
            ExecError::Codegen { message } => write!(f, "cannot compile the fused kernels: {message}"),
            ExecError::UpdateLengths { weights, momentum, gradient } => write!(
                f,
                "an update needs equally long tensors: {weights} weights, {momentum} momenta, {gradient} gradients"
            ),
            ExecError::UnknownIsa { name } => {
                let known: Vec<&str> = Isa::ALL.iter().map(|isa| isa.name()).collect();
                write!(f, "{ISA_VARIABLE}={name:?} names no GEMM path (known: {})", known.join(", "))
            }
            ExecError::IsaUnavailable { isa } => write!(f, "this CPU cannot run the {isa} GEMM path"),
            ExecError::UnknownSlot { slot } => write!(f, "slot {slot} is no held input or output of the program"),
            ExecError::NoRun => f.write_str("no run since the held inputs were given: there is no gradient to apply"),
        }
    }
}

impl std::error::Error for ExecError {}

/// Batch sizes whose plans (and memory) are kept; more are rebuilt on demand.
const KEPT_PLANS: usize = 4;

/// How long [`Executor::new`] took, by stage.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CompileTimes {
    /// Fusion and step planning.
    pub fusion: Duration,
    /// Cranelift code generation for the fused kernels.
    pub machine_code: Duration,
}

/// A compiled program with its thread pool and the memory of the batch sizes it has run.
pub struct Executor {
    program: Program,
    compiled: Compiled,
    code: netc_jit::Code,
    times: CompileTimes,
    /// `None` with one thread: steps then run on the caller's thread.
    pool: Option<Pool>,
    threads: usize,
    memory_limit: Option<u64>,
    /// The GEMM path, one the CPU supports.
    isa: Isa,
    /// Prepared batch sizes, the most recently used last.
    plans: Vec<BatchPlan>,
    /// The step counter of the last successful run, whose plan is last in `plans`.
    last_run: Option<u64>,
    /// Per input slot, whether the executor holds its values ([`Executor::hold`]): the most
    /// recently used plan has the current ones.
    held: Vec<bool>,
    /// Held values given before any plan existed, for the first plan.
    pending: Vec<Option<Vec<f32>>>,
    /// Whether held inputs changed since the last run (its outputs stay readable, but a re-run
    /// would not reproduce them).
    held_changed: bool,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("program", &self.program.name())
            .field("steps", &self.compiled.steps.len())
            .field("kernels", &self.code.len())
            .field("threads", &self.threads)
            .field("isa", &self.isa)
            .field("batch_sizes", &self.plans.iter().map(|p| p.batch).collect::<Vec<_>>())
            .finish()
    }
}

impl Executor {
    /// Compiles `program`. Nothing depends on the batch size yet. The GEMM path is the one
    /// `NETC_ISA` names, or else the fastest the CPU has.
    pub fn new(program: &Program, options: ExecOptions) -> Result<Executor, ExecError> {
        let program = &program.clone().without_gradient_markers();
        let isa = isa_from_env()?;
        let threads = match options.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pool = if threads > 1 { Some(Pool::new(threads)?) } else { None };
        let start = Instant::now();
        let compiled = compile(program)?;
        let compiled_inputs = compiled.inputs.len();
        let fusion = start.elapsed();
        let start = Instant::now();
        let mut kernels = compiled.kernels.clone();
        kernels.push(update::sgd_kernel());
        let code = netc_jit::compile(&kernels).map_err(|e| ExecError::Codegen { message: e.0 })?;
        let times = CompileTimes { fusion, machine_code: start.elapsed() };
        Ok(Executor {
            program: program.clone(),
            compiled,
            code,
            times,
            pool,
            threads,
            memory_limit: options.memory_limit,
            isa,
            plans: Vec::with_capacity(KEPT_PLANS),
            last_run: None,
            held: vec![false; compiled_inputs],
            pending: vec![None; compiled_inputs],
            held_changed: false,
        })
    }

    /// The program this executor runs.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// One SGD-with-momentum step of a parameter tensor `w` with momentum `m` and gradient
    /// `g`, as compiled code over the executor's threads.
    pub fn sgd_update(&mut self, sgd: Sgd, w: &mut [f32], m: &mut [f32], g: &[f32]) -> Result<(), ExecError> {
        let Executor { compiled, code, pool, threads, isa, .. } = self;
        sgd_on_pool(compiled, code, pool.as_ref(), Par::new(*threads).with_isa(*isa), sgd, w, m, g)
    }

    /// How long compilation took.
    pub fn compile_times(&self) -> CompileTimes {
        self.times
    }

    /// The number of worker threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The GEMM path the executor runs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Runs later steps on GEMM path `isa`, if the CPU supports it. Results do not change.
    pub fn set_isa(&mut self, isa: Isa) -> Result<(), ExecError> {
        if !isa.is_available() {
            return Err(ExecError::IsaUnavailable { isa });
        }
        self.isa = isa;
        Ok(())
    }

    /// Plans the shapes and memory of batch size `batch`, if not done yet; [`Executor::run`]
    /// does it on first use of a batch size. The last few batch sizes stay prepared.
    pub fn prepare(&mut self, batch: usize) -> Result<(), ExecError> {
        if batch == 0 && self.program.insts().iter().any(|i| i.shape.dims().contains(&Dim::Batch)) {
            return Err(ExecError::EmptyBatch);
        }
        match self.plans.iter().position(|p| p.batch == batch) {
            Some(i) if i + 1 == self.plans.len() => {}
            Some(i) => {
                // Moving within the reserved capacity does not allocate.
                let mut plan = self.plans.remove(i);
                self.carry_held(&mut plan);
                self.plans.push(plan);
                self.last_run = None;
            }
            None => {
                let mut plan =
                    BatchPlan::new(&self.program, &self.compiled, &self.code, batch, self.threads, self.memory_limit)?;
                self.carry_held(&mut plan);
                if self.plans.len() == KEPT_PLANS {
                    self.plans.remove(0);
                }
                self.plans.push(plan);
                self.last_run = None;
            }
        }
        Ok(())
    }

    /// Copies the held inputs' current values (from the most recently used plan, or those given
    /// before any plan existed) into `plan`, which is about to become the current one.
    fn carry_held(&self, plan: &mut BatchPlan) {
        for (slot, input) in self.compiled.inputs.iter().enumerate().filter(|(slot, _)| self.held[*slot]) {
            let current = match self.plans.last() {
                Some(previous) => previous.value(input.value),
                None => self.pending[slot].as_deref(),
            };
            if let (Some(src), Some(dst)) = (current, plan.value_mut(input.value)) {
                dst.copy_from_slice(src);
            }
        }
    }

    /// Keeps the values of input slot `slot` (see [`Executor::input_names`]) inside the
    /// executor, in the memory of every batch size it prepares: later runs read them there and
    /// need them no more ([`Executor::run_slots`] does not ask for them, [`Executor::run`]
    /// takes them if given), and [`Executor::update_held`] updates them in place. Meant for
    /// parameters, so that a training step copies none in and no gradient out.
    pub fn hold(&mut self, slot: usize, values: &[f32]) -> Result<(), ExecError> {
        let input = self.compiled.inputs.get(slot).ok_or(ExecError::UnknownSlot { slot })?;
        self.held[slot] = true;
        self.last_run = None;
        match self.plans.last_mut() {
            Some(plan) => copy_input(plan, input, values),
            None => {
                let expected = self.program.insts()[input.value.0].shape.resolve(1).iter().product();
                if values.len() != expected {
                    return Err(ExecError::InputLength { name: input.name.clone(), expected, got: values.len() });
                }
                self.pending[slot] = Some(values.to_vec());
                Ok(())
            }
        }
    }

    /// The current values of held input `slot`, if it is held.
    pub fn held(&self, slot: usize) -> Option<&[f32]> {
        let input = self.compiled.inputs.get(slot).filter(|_| self.held[slot])?;
        match self.plans.last() {
            Some(plan) => plan.value(input.value),
            None => self.pending[slot].as_deref(),
        }
    }

    /// Writable values of held input `slot` (for a projection onto a constraint, say). The last
    /// run's outputs stay readable.
    pub fn held_mut(&mut self, slot: usize) -> Option<&mut [f32]> {
        let input = self.compiled.inputs.get(slot).filter(|_| self.held[slot])?;
        self.held_changed = true;
        match self.plans.last_mut() {
            Some(plan) => plan.value_mut(input.value),
            None => self.pending[slot].as_deref_mut(),
        }
    }

    /// Calls `f` on the executor's threads with [`HeldUpdates`], which update held inputs in
    /// place from the last run's outputs (which stay readable): any number of updates for one
    /// hand-over to the threads, which costs a wake-up each time.
    pub fn update_held<R: Send>(&mut self, f: impl FnOnce(&mut HeldUpdates<'_>) -> R + Send) -> Result<R, ExecError> {
        let Executor { program, plans, code, compiled, threads, isa, pool, held, last_run, .. } = self;
        let plan = plans.last_mut().filter(|_| last_run.is_some()).ok_or(ExecError::NoRun)?;
        let mut updates = HeldUpdates { program, compiled, code, held, plan, par: Par::new(*threads).with_isa(*isa) };
        let (mut f, mut result) = (Some(f), None);
        on_pool(pool.as_ref(), &mut || result = f.take().map(|f| f(&mut updates)));
        self.held_changed = true;
        result.ok_or(ExecError::NoRun)
    }

    /// Runs the program on one batch. Afterwards [`Executor::output`] reads the results.
    pub fn run(&mut self, feed: &Feed<'_>) -> Result<(), ExecError> {
        self.bind(feed)?;
        self.run_steps(feed.step, None, None)?;
        self.last_run = Some(feed.step);
        self.held_changed = false;
        Ok(())
    }

    /// The names of the program's fed inputs (data, labels, parameters), in slot order: the
    /// position [`Executor::run_slots`] asks each input's values by.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.compiled.inputs.iter().map(|input| input.name.as_str())
    }

    /// Runs the program on one batch of `batch` examples at step `step`, with the values of
    /// input slot `i` given by `input(i)`. A caller resolves names to slots once
    /// ([`Executor::input_names`]), so a run neither searches by name nor allocates.
    pub fn run_slots<'v>(
        &mut self,
        batch: usize,
        step: u64,
        input: impl Fn(usize) -> &'v [f32],
    ) -> Result<(), ExecError> {
        self.last_run = None;
        self.prepare(batch)?;
        let Executor { compiled, plans, held, .. } = self;
        if let Some(plan) = plans.last_mut() {
            for (slot, fed) in compiled.inputs.iter().enumerate().filter(|(slot, _)| !held[*slot]) {
                copy_input(plan, fed, input(slot))?;
            }
            copy_step(compiled, plan, step);
        }
        self.run_steps(step, None, None)?;
        self.last_run = Some(step);
        self.held_changed = false;
        Ok(())
    }

    /// The values of output `name` (row-major, batch dimension resolved) of the last
    /// successful run, or `None` if there is no such output or no run yet.
    pub fn output(&self, name: &str) -> Option<&[f32]> {
        self.output_at(self.output_slot(name)?)
    }

    /// Where output `name` is, for [`Executor::output_at`].
    pub fn output_slot(&self, name: &str) -> Option<OutputSlot> {
        self.program.outputs().iter().position(|o| o.name == name).map(OutputSlot)
    }

    /// The values of an output of the last successful run, by its slot.
    pub fn output_at(&self, slot: OutputSlot) -> Option<&[f32]> {
        self.last_run?;
        let output = self.program.outputs().get(slot.0)?;
        self.plans.last()?.value(output.value)
    }

    /// Runs like [`Executor::run`] and returns the wall time of every step, in run order
    /// (unlike `run`, this allocates the result).
    pub fn profile(&mut self, feed: &Feed<'_>) -> Result<Vec<StepTime>, ExecError> {
        self.bind(feed)?;
        let mut times: Vec<StepTime> = match self.plans.last() {
            Some(plan) => {
                plan.steps(&self.compiled).map(|(kernel, value)| StepTime { kernel, value, seconds: 0.0 }).collect()
            }
            None => Vec::new(),
        };
        let mut seconds = vec![0.0; times.len()];
        self.run_steps(feed.step, None, Some(&mut seconds))?;
        self.last_run = Some(feed.step);
        self.held_changed = false;
        for (t, s) in times.iter_mut().zip(seconds) {
            t.seconds = s;
        }
        Ok(times)
    }

    /// Re-runs the last successful run checking every value, and returns the first value in
    /// program order that holds a NaN or an infinity (inputs and constants included), as the
    /// reference interpreter would report it. The inputs are still in place and every kernel
    /// is deterministic, so the re-run recomputes exactly the same values. Meant for after a
    /// non-finite loss, to tell which layer diverged; it costs about one more run.
    pub fn first_non_finite(&mut self) -> Option<NonFinite> {
        let counter = self.last_run.filter(|_| !self.held_changed)?;
        let mut found = None;
        // The same run succeeded before, so it cannot fail now.
        self.run_steps(counter, Some(&mut found), None).ok()?;
        let value = found?;
        let op = self.program.insts().get(value.0)?.op.name();
        Some(NonFinite { value, op, source: self.program.source_of(value).cloned() })
    }

    /// Prepares the feed's batch size and copies the feed into its plan.
    fn bind(&mut self, feed: &Feed<'_>) -> Result<(), ExecError> {
        self.last_run = None;
        self.prepare(feed.batch)?;
        let Executor { compiled, plans, held, .. } = self;
        match plans.last_mut() {
            Some(plan) => bind_inputs(compiled, plan, feed, held),
            None => Ok(()),
        }
    }

    /// Runs the steps of the most recently used plan on the executor's threads.
    fn run_steps(
        &mut self,
        counter: u64,
        check: Option<&mut Option<ValueId>>,
        times: Option<&mut [f64]>,
    ) -> Result<(), ExecError> {
        let Executor { compiled, code, pool, plans, threads, isa, .. } = self;
        let Some(plan) = plans.last_mut() else { return Ok(()) };
        let par = Par::new(*threads).with_isa(*isa);
        let (mut check, mut times) = (check, times);
        let mut outcome = Ok(());
        on_pool(pool.as_ref(), &mut || outcome = plan.run(compiled, code, par, counter, check.take(), times.take()));
        outcome
    }
}

/// The compiled SGD update of `w`, `m`, `g` over the executor's threads.
#[allow(clippy::too_many_arguments)]
fn sgd_on_pool(
    compiled: &Compiled,
    code: &netc_jit::Code,
    pool: Option<&Pool>,
    par: Par,
    sgd: Sgd,
    w: &mut [f32],
    m: &mut [f32],
    g: &[f32],
) -> Result<(), ExecError> {
    let mut outcome = Ok(());
    on_pool(pool, &mut || outcome = compiled_sgd(compiled, code, par, sgd, w, m, g));
    outcome
}

/// The compiled SGD update of `w`, `m`, `g`, which must be equally long, on this thread (and
/// the pool it is on).
#[allow(clippy::too_many_arguments)]
fn compiled_sgd(
    compiled: &Compiled,
    code: &netc_jit::Code,
    par: Par,
    sgd: Sgd,
    w: &mut [f32],
    m: &mut [f32],
    g: &[f32],
) -> Result<(), ExecError> {
    if w.len() != m.len() || w.len() != g.len() {
        return Err(ExecError::UpdateLengths { weights: w.len(), momentum: m.len(), gradient: g.len() });
    }
    // The update kernel follows the program's kernels.
    update::run_sgd(code, compiled.kernels.len(), par, sgd, w, m, g);
    Ok(())
}

/// Runs `f` on the pool's threads, or here without a pool.
fn on_pool(pool: Option<&Pool>, f: &mut (dyn FnMut() + Send + '_)) {
    match pool {
        Some(pool) => pool.run(f),
        None => f(),
    }
}

/// The GEMM path `NETC_ISA` forces, or the fastest available one if it is unset.
fn isa_from_env() -> Result<Isa, ExecError> {
    let Some(value) = std::env::var_os(ISA_VARIABLE) else { return Ok(Isa::best()) };
    let name = value.to_string_lossy();
    let isa = Isa::from_name(name.trim()).ok_or_else(|| ExecError::UnknownIsa { name: name.to_string() })?;
    if !isa.is_available() {
        return Err(ExecError::IsaUnavailable { isa });
    }
    Ok(isa)
}

/// The program's steps, or the instruction that has no kernel.
fn compile(program: &Program) -> Result<Compiled, ExecError> {
    plan::compile(program).map_err(|value| {
        let op = program.insts().get(value.0).map_or("an instruction", |i| i.op.name());
        ExecError::Unsupported { value, op }
    })
}

/// Copies the fed values into the plan's input buffers and the step counter into its own.
fn bind_inputs(compiled: &Compiled, plan: &mut BatchPlan, feed: &Feed<'_>, held: &[bool]) -> Result<(), ExecError> {
    for (i, (name, _)) in feed.inputs.iter().enumerate() {
        let known = compiled.inputs.iter().any(|input| input.name == *name);
        if !known || feed.inputs[..i].iter().any(|(earlier, _)| earlier == name) {
            return Err(ExecError::UnexpectedInput { name: name.to_string() });
        }
    }
    for (input, &held) in compiled.inputs.iter().zip(held) {
        let given = feed.inputs.iter().find(|(name, _)| *name == input.name).map(|(_, values)| *values);
        match (given, held) {
            (Some(values), _) => copy_input(plan, input, values)?,
            (None, true) => {}
            (None, false) => return Err(ExecError::MissingInput { name: input.name.clone() }),
        }
    }
    copy_step(compiled, plan, feed.step);
    Ok(())
}

fn copy_input(plan: &mut BatchPlan, input: &plan::FedInput, values: &[f32]) -> Result<(), ExecError> {
    let dst = plan.value_mut(input.value).ok_or_else(|| ExecError::MissingInput { name: input.name.clone() })?;
    if dst.len() != values.len() {
        return Err(ExecError::InputLength { name: input.name.clone(), expected: dst.len(), got: values.len() });
    }
    dst.copy_from_slice(values);
    Ok(())
}

fn copy_step(compiled: &Compiled, plan: &mut BatchPlan, step: u64) {
    if let Some(counter) = compiled.counter {
        if let Some(dst) = plan.value_mut(counter) {
            dst.fill(step as f32);
        }
    }
}
