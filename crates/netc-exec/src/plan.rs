//! Compilation of a program into steps: one step per instruction that does work, with cheap
//! fusions (bias and activation into the producing GEMM, an activation derivative into the
//! multiplication that consumes it). Everything here is independent of the batch size.

use netc_ir::{Conv, InputKind, Op, PoolKind, Program, UnaryFn, ValueId, Window};

/// What a step computes. Operands are the step's `args`, in the order given per variant.
/// This is the seam for a later JIT: it may replace runs of elementwise steps with its own.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kernel {
    /// `(step)`: Bernoulli(keep) mask keyed by (seed, stream, step counter).
    Bernoulli { keep: f64, seed: u64, stream: u64 },
    /// `(step)`: random part indices with exact counts.
    Parts { fracs: Vec<f64>, seed: u64, stream: u64 },
    /// `(x)`
    Unary(UnaryFn),
    /// `(a, b)`
    Binary(Binary),
    /// `(g, x)`: `g · f(x)`, a derivative map fused into the product that consumes it.
    MulUnary(UnaryFn),
    /// `(mask, a, b)`
    Select,
    /// `(x)`
    Broadcast { axes: Vec<usize> },
    /// `(x₀, x₁, ...)`
    Concat { axis: usize },
    /// `(x)`
    Slice { axis: usize, start: usize, len: usize },
    /// `(x)`
    ReduceSum { axes: Vec<usize> },
    /// `(x)`
    ReduceMax { axis: usize },
    /// `(x, g)`
    ReduceMaxBackward { axis: usize },
    /// `(a, b[, bias])`
    MatMul { trans_a: bool, trans_b: bool, epilogue: Epilogue },
    /// `(x, bias)`, optionally followed by an activation.
    BiasAdd { act: Option<UnaryFn> },
    /// `(x, w[, bias])`
    Conv { conv: Conv, epilogue: Epilogue },
    /// `(dy, w)`
    ConvData { conv: Conv },
    /// `(x, dy)`
    ConvFilter { conv: Conv },
    /// `(x)`
    Pool { kind: PoolKind, window: Window },
    /// `(x, dy)`
    MaxPoolBackward { window: Window },
    /// `(dy)`
    AvgPoolBackward { window: Window },
    /// `(logits, labels)`
    SoftmaxXent,
    /// `(logits, labels)`
    SoftmaxXentGrad,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binary {
    Add,
    Sub,
    Mul,
}

/// Work fused onto the end of a GEMM: a per-channel bias (the step's last operand), then an
/// activation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Epilogue {
    pub bias: bool,
    pub act: Option<UnaryFn>,
}

/// One unit of work producing the value `out`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Step {
    pub kernel: Kernel,
    pub args: Vec<ValueId>,
    pub out: ValueId,
    /// Values computed inside a fused step before `out`, in order (for non-finite checks):
    /// the raw GEMM result and the biased one, or the derivative map of a `MulUnary`.
    pub fused: Vec<ValueId>,
}

/// How a value comes to exist.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Origin {
    /// A data, labels or parameter input.
    Input,
    /// The step counter input.
    Counter,
    /// `Const` or `Fill`: written once per batch size.
    Constant,
    /// The same elements as another value (a reshape).
    Alias(ValueId),
    /// The result of a step.
    Step,
    /// Computed inside a fused step and never stored.
    Fused,
}

/// A data, labels or parameter input the caller feeds by name.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FedInput {
    pub name: String,
    pub value: ValueId,
}

/// A program compiled to steps.
#[derive(Clone, Debug)]
pub(crate) struct Compiled {
    pub steps: Vec<Step>,
    pub origins: Vec<Origin>,
    pub inputs: Vec<FedInput>,
    /// The step counter input, if the program reads it.
    pub counter: Option<ValueId>,
}

/// Readers of each value, counting program outputs as readers.
fn use_counts(program: &Program) -> Vec<usize> {
    let mut uses = vec![0; program.insts().len()];
    for inst in program.insts() {
        for a in &inst.args {
            uses[a.0] += 1;
        }
    }
    for o in program.outputs() {
        uses[o.value.0] += 1;
    }
    uses
}

/// The step an instruction would become, before it is placed.
type Plan = (Kernel, Vec<ValueId>, Vec<ValueId>);

pub(crate) fn compile(program: &Program) -> Compiled {
    let insts = program.insts();
    let uses = use_counts(program);
    // Plans in program order; a consumer may take over the plan of a single-use producer,
    // which then has no step of its own.
    let mut plans: Vec<Option<Plan>> = vec![None; insts.len()];
    let mut absorbed = vec![false; insts.len()];
    for (i, inst) in insts.iter().enumerate() {
        let mut take = |v: ValueId, wanted: &dyn Fn(&Kernel) -> bool| -> Option<Plan> {
            let fits = uses[v.0] == 1 && plans[v.0].as_ref().is_some_and(|p| wanted(&p.0));
            if !fits {
                return None;
            }
            absorbed[v.0] = true;
            plans[v.0].take().map(|(kernel, args, mut fused)| {
                fused.push(v);
                (kernel, args, fused)
            })
        };
        let fused = match &inst.op {
            Op::BiasAdd => take(inst.args[0], &|k| gemm_epilogue(k).is_some_and(|e| !e.bias && e.act.is_none())).map(
                |(mut kernel, mut args, fused)| {
                    if let Some(e) = gemm_epilogue_mut(&mut kernel) {
                        e.bias = true;
                    }
                    args.push(inst.args[1]);
                    (kernel, args, fused)
                },
            ),
            Op::Unary(f) => {
                let open = |k: &Kernel| match k {
                    Kernel::BiasAdd { act } => act.is_none(),
                    _ => gemm_epilogue(k).is_some_and(|e| e.act.is_none()),
                };
                take(inst.args[0], &open).map(|(mut kernel, args, fused)| {
                    match &mut kernel {
                        Kernel::BiasAdd { act } => *act = Some(*f),
                        other => {
                            if let Some(e) = gemm_epilogue_mut(other) {
                                e.act = Some(*f);
                            }
                        }
                    }
                    (kernel, args, fused)
                })
            }
            Op::Mul => {
                let is_map = |k: &Kernel| matches!(k, Kernel::Unary(_));
                let (a, b) = (inst.args[0], inst.args[1]);
                let taken = take(b, &is_map).map(|p| (a, p)).or_else(|| take(a, &is_map).map(|p| (b, p)));
                taken.and_then(|(g, (kernel, args, fused))| match kernel {
                    Kernel::Unary(f) => Some((Kernel::MulUnary(f), vec![g, args[0]], fused)),
                    _ => None,
                })
            }
            _ => None,
        };
        plans[i] = match fused {
            Some(plan) => Some(plan),
            None => plain_kernel(&inst.op).map(|kernel| (kernel, inst.args.clone(), Vec::new())),
        };
    }

    let mut steps = Vec::new();
    let mut origins = Vec::with_capacity(insts.len());
    let mut inputs = Vec::new();
    let mut counter = None;
    for (i, inst) in insts.iter().enumerate() {
        let out = ValueId(i);
        let origin = match (&inst.op, plans[i].take()) {
            _ if absorbed[i] => Origin::Fused,
            (_, Some((kernel, args, fused))) => {
                steps.push(Step { kernel, args, out, fused });
                Origin::Step
            }
            (Op::Input(input), None) if input.kind == InputKind::Step => {
                counter = Some(out);
                Origin::Counter
            }
            (Op::Input(input), None) => {
                inputs.push(FedInput { name: input.name.clone(), value: out });
                Origin::Input
            }
            (Op::Reshape { .. }, None) => Origin::Alias(inst.args[0]),
            (_, None) => Origin::Constant,
        };
        origins.push(origin);
    }
    Compiled { steps, origins, inputs, counter }
}

fn gemm_epilogue(kernel: &Kernel) -> Option<&Epilogue> {
    match kernel {
        Kernel::Conv { epilogue, .. } | Kernel::MatMul { epilogue, .. } => Some(epilogue),
        _ => None,
    }
}

fn gemm_epilogue_mut(kernel: &mut Kernel) -> Option<&mut Epilogue> {
    match kernel {
        Kernel::Conv { epilogue, .. } | Kernel::MatMul { epilogue, .. } => Some(epilogue),
        _ => None,
    }
}

/// The kernel of an instruction on its own; `None` for inputs, constants and reshapes, which
/// need no step.
fn plain_kernel(op: &Op) -> Option<Kernel> {
    Some(match op {
        Op::RandomBernoulli { keep, key, .. } => {
            Kernel::Bernoulli { keep: *keep, seed: key.seed, stream: netc_ir::rng::stream(&key.stream) }
        }
        Op::RandomParts { fracs, key, .. } => {
            Kernel::Parts { fracs: fracs.clone(), seed: key.seed, stream: netc_ir::rng::stream(&key.stream) }
        }
        Op::Unary(f) => Kernel::Unary(*f),
        Op::Add => Kernel::Binary(Binary::Add),
        Op::Sub => Kernel::Binary(Binary::Sub),
        Op::Mul => Kernel::Binary(Binary::Mul),
        Op::Select => Kernel::Select,
        Op::Broadcast { axes, .. } => Kernel::Broadcast { axes: axes.clone() },
        Op::Concat { axis } => Kernel::Concat { axis: *axis },
        Op::Slice { axis, start, len } => Kernel::Slice { axis: *axis, start: *start, len: *len },
        Op::ReduceSum { axes } => Kernel::ReduceSum { axes: axes.clone() },
        Op::ReduceMax { axis } => Kernel::ReduceMax { axis: *axis },
        Op::ReduceMaxBackward { axis } => Kernel::ReduceMaxBackward { axis: *axis },
        Op::MatMul { trans_a, trans_b } => {
            Kernel::MatMul { trans_a: *trans_a, trans_b: *trans_b, epilogue: Epilogue::default() }
        }
        Op::BiasAdd => Kernel::BiasAdd { act: None },
        Op::Conv2d(conv) => Kernel::Conv { conv: *conv, epilogue: Epilogue::default() },
        Op::Conv2dBackwardData { conv, .. } => Kernel::ConvData { conv: *conv },
        Op::Conv2dBackwardFilter { conv, .. } => Kernel::ConvFilter { conv: *conv },
        Op::Pool { kind, window } => Kernel::Pool { kind: *kind, window: *window },
        Op::MaxPoolBackward(window) => Kernel::MaxPoolBackward { window: *window },
        Op::AvgPoolBackward { window, .. } => Kernel::AvgPoolBackward { window: *window },
        Op::SoftmaxXent => Kernel::SoftmaxXent,
        Op::SoftmaxXentGrad => Kernel::SoftmaxXentGrad,
        Op::Input(_) | Op::Const(_) | Op::Fill { .. } | Op::Reshape { .. } => return None,
    })
}
