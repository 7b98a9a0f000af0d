//! Compilation of a program into steps: bias and activation fused into the GEMM that
//! produces their operand, elementwise chains fused into JIT kernels (`fuse.rs`), one step
//! per other instruction that does work. Everything here is independent of the batch size.

use crate::fuse::{fuse, Fused};
use crate::kernels::conv::Geom;
use netc_ir::{Conv, InputKind, Inst, Op, PoolKind, Program, UnaryFn, ValueId, Window};

/// What a step computes. Operands are the step's `args`, in the order given per variant.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kernel {
    /// `(step)`: Bernoulli(keep) mask keyed by (seed, stream, step counter).
    Bernoulli { keep: f64, seed: u64, stream: u64 },
    /// `(step)`: random part indices with exact counts.
    Parts { fracs: Vec<f64>, seed: u64, stream: u64 },
    /// `(step)`: standard normal numbers keyed by (seed, stream, step counter).
    Normal { seed: u64, stream: u64 },
    /// `(operands...)`: a fused elementwise kernel, compiled to machine code.
    Fused(Fused),
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
    /// `(x, w[, bias])`
    Conv { conv: Conv, epilogue: Epilogue },
    /// `(x₁, w₁, x₂, w₂)`: the sum of two depthwise convolutions of one geometry (ConvAct's
    /// halves), each summed from zero and then added, as the `add` of the two would. The two
    /// convolutions are the step's `fused` values.
    ConvPair { conv: Conv },
    /// `(dy, w)`
    ConvData { conv: Conv },
    /// `(dy, w₁, w₂)`: the data gradients of a pair of depthwise convolutions of one `dy` and
    /// one geometry, the second as the step's first `also` value.
    ConvDataPair { conv: Conv },
    /// `(x, dy)`; with `bias`, also the bias gradient (the sum of `dy` over all but the
    /// channel axis) as the step's first `also` value.
    ConvFilter { conv: Conv, bias: bool },
    /// `(x₁, x₂, dy)`: the filter gradients of a pair of depthwise convolutions of one `dy` and
    /// one geometry, the second as the step's first `also` value.
    ConvFilterPair { conv: Conv },
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

/// Work fused onto the end of a GEMM: a per-channel bias (the step's last operand), then an
/// activation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Epilogue {
    pub bias: bool,
    pub act: Option<UnaryFn>,
    /// Whether the step also stores the pre-activation (the biased product), as its first
    /// `also` value, for other readers such as the activation's derivative.
    pub keep_pre: bool,
}

/// One unit of work producing the value `out`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Step {
    pub kernel: Kernel,
    pub args: Vec<ValueId>,
    pub out: ValueId,
    /// Values a GEMM step computes before `out`, in order (for non-finite checks): the raw
    /// product and the biased one. (A fused kernel lists its own.)
    pub fused: Vec<ValueId>,
    /// Further values the step stores (a fused kernel's co-results), each in its own memory.
    pub also: Vec<ValueId>,
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
    /// A result of a step: its `out`, or one of its `also`.
    Step,
    /// Computed inside a fused step, or a broadcast only read through a layout: never stored.
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
    /// The distinct fused elementwise kernels, compiled together to machine code.
    pub kernels: Vec<netc_jit::Kernel>,
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

/// Compiles `program`, or names an instruction no kernel can compute.
pub(crate) fn compile(program: &Program) -> Result<Compiled, ValueId> {
    let insts = program.insts();
    let uses = use_counts(program);
    // GEMM plans in program order; a bias or activation may take over the plan of the
    // single-use GEMM (with bias) it reads, which then has no step of its own.
    let mut plans: Vec<Option<Plan>> = vec![None; insts.len()];
    let mut absorbed = vec![false; insts.len()];
    for (i, inst) in insts.iter().enumerate() {
        let open = |kernel: &Kernel, op: &Op| match op {
            Op::BiasAdd => gemm_epilogue(kernel).is_some_and(|e| !e.bias && e.act.is_none()),
            Op::Unary(_) => gemm_epilogue(kernel).is_some_and(|e| e.act.is_none()),
            _ => false,
        };
        let producer = inst.args.first().copied();
        let fusable = producer.filter(|v| uses[v.0] == 1 && plans[v.0].as_ref().is_some_and(|p| open(&p.0, &inst.op)));
        plans[i] = match fusable.and_then(|v| plans[v.0].take().map(|p| (v, p))) {
            Some((v, (mut kernel, mut args, mut fused))) => {
                absorbed[v.0] = true;
                fused.push(v);
                if let Some(e) = gemm_epilogue_mut(&mut kernel) {
                    match inst.op {
                        Op::Unary(f) => e.act = Some(f),
                        _ => {
                            e.bias = true;
                            args.push(inst.args[1]);
                        }
                    }
                }
                Some((kernel, args, fused))
            }
            None => plain_kernel(&inst.op).map(|kernel| (kernel, inst.args.clone(), Vec::new())),
        };
    }
    let taken: Vec<bool> = (0..insts.len())
        .map(|i| absorbed[i] || plans[i].as_ref().is_some_and(|p| gemm_epilogue(&p.0).is_some() && !p.2.is_empty()))
        .collect();
    let mut fusion = fuse(program, &uses, &taken)?;
    for (i, root) in fusion.roots.iter_mut().enumerate() {
        if let Some(fused) = root.take() {
            plans[i] = Some((Kernel::Fused(fused.clone()), fused.operands, Vec::new()));
        }
    }

    let mut steps = Vec::new();
    let mut origins = Vec::with_capacity(insts.len());
    let mut inputs = Vec::new();
    let mut counter = None;
    for (i, inst) in insts.iter().enumerate() {
        let out = ValueId(i);
        let origin = match (&inst.op, plans[i].take()) {
            _ if absorbed[i] || fusion.unstored[i] => Origin::Fused,
            _ if fusion.co_results[i] => Origin::Step,
            (_, Some((kernel, args, fused))) => {
                let also = match &kernel {
                    Kernel::Fused(f) => f.also.clone(),
                    _ => Vec::new(),
                };
                steps.push(Step { kernel, args, out, fused, also });
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
    fuse_bias_gradients(program, &mut steps);
    fuse_shared_activations(program, &mut steps);
    fuse_convolution_pairs(program, &uses, &mut steps, &mut origins);
    fuse_gradient_pairs(program, &mut steps);
    let kernels = drop_unused_kernels(&mut steps, fusion.kernels);
    Ok(Compiled { steps, kernels, origins, inputs, counter })
}

/// Moves each convolution's bias gradient (a sum of `dy` over the examples and positions)
/// into the filter gradient of the same `dy`, which reads `dy` anyway: one pass over it
/// instead of two. Only when no step between them reads the bias gradient.
fn fuse_bias_gradients(program: &Program, steps: &mut Vec<Step>) {
    let insts = program.insts();
    let mut s = 0;
    while s < steps.len() {
        let step = &steps[s];
        // Steps without operands (a constant) are not sums of anything.
        let Some(&dy) = step.args.first() else {
            s += 1;
            continue;
        };
        let bias_sum =
            matches!(&step.kernel, Kernel::ReduceSum { axes } if axes == &[0, 2, 3]) && insts[dy.0].shape.rank() == 4;
        let db = step.out;
        let filter = bias_sum.then(|| {
            let later = s + 1..steps.len();
            later.into_iter().find(|&f| {
                matches!(steps[f].kernel, Kernel::ConvFilter { bias: false, .. }) && steps[f].args.get(1) == Some(&dy)
            })
        });
        let Some(Some(f)) = filter else {
            s += 1;
            continue;
        };
        if steps[s + 1..f].iter().any(|between| between.args.contains(&db)) {
            s += 1;
            continue;
        }
        if let Kernel::ConvFilter { bias, .. } = &mut steps[f].kernel {
            *bias = true;
        }
        steps[f].also.push(db);
        steps.remove(s);
    }
}

/// Moves an activation of a GEMM's result that has other readers (in training, the
/// activation's derivative reads the pre-activation) from its own fused kernel into the GEMM's
/// epilogue, which then stores both: one pass over the product while it is in cache instead
/// of a second pass through memory. (A result with one reader took its activation in
/// `compile` already.)
fn fuse_shared_activations(program: &Program, steps: &mut Vec<Step>) {
    let insts = program.insts();
    let mut s = 0;
    while s < steps.len() {
        let out = steps[s].out;
        let lone_unary = match (lone_instruction(insts, &steps[s]), &insts[out.0].op) {
            (Some([pre]), Op::Unary(act)) if insts[out.0].shape == insts[pre.0].shape => Some((*act, *pre)),
            _ => None,
        };
        let gemm = lone_unary.and_then(|(act, pre)| {
            let open = |step: &Step| {
                step.out == pre && step.also.is_empty() && gemm_epilogue(&step.kernel).is_some_and(|e| e.act.is_none())
            };
            steps[..s].iter().position(open).map(|g| (g, act, pre))
        });
        let Some((g, act, pre)) = gemm else {
            s += 1;
            continue;
        };
        let step = &mut steps[g];
        if let Some(e) = gemm_epilogue_mut(&mut step.kernel) {
            e.act = Some(act);
            e.keep_pre = true;
        }
        step.fused.push(pre);
        step.also.push(pre);
        step.out = out;
        steps.remove(s);
    }
}

/// The operands of a fused step that computes its own instruction and nothing else, straight
/// from that instruction's operands.
fn lone_instruction<'s>(insts: &[Inst], step: &'s Step) -> Option<&'s [ValueId]> {
    let Kernel::Fused(f) = &step.kernel else { return None };
    let lone = f.also.is_empty() && f.values.iter().flatten().count() == 1 && insts[step.out.0].args == f.operands;
    lone.then_some(&f.operands)
}

/// The geometry of a convolution of `x` by `w` giving `y`, if it is depthwise. (Depthwise does
/// not depend on the batch size.)
fn depthwise_geom(insts: &[Inst], x: ValueId, w: ValueId, y: ValueId, conv: Conv) -> Option<Geom> {
    let dims = |v: ValueId| insts[v.0].shape.resolve(1);
    Some(Geom::new(&dims(x), &dims(w), &dims(y), conv)).filter(Geom::depthwise)
}

/// Turns the sum of two depthwise convolutions of one geometry, read by nothing else, into
/// one step: a pass over the two inputs that writes the sum, instead of two convolutions
/// writing their results and an addition reading them back.
fn fuse_convolution_pairs(program: &Program, uses: &[usize], steps: &mut Vec<Step>, origins: &mut [Origin]) {
    let insts = program.insts();
    // The step computing `v` when it is a plain depthwise convolution read only once.
    let depthwise = |steps: &[Step], v: ValueId| {
        let at = steps.iter().position(|s| s.out == v)?;
        let step = &steps[at];
        let Kernel::Conv { conv, epilogue } = step.kernel else { return None };
        let single = uses[v.0] == 1 && step.also.is_empty() && epilogue == Epilogue::default();
        let geom = depthwise_geom(insts, step.args[0], step.args[1], v, conv).filter(|_| single)?;
        Some((at, conv, geom))
    };
    let mut s = 0;
    while s < steps.len() {
        let sum = match (lone_instruction(insts, &steps[s]), &insts[steps[s].out.0].op) {
            (Some(&[a, b]), Op::Add) => Some((a, b)),
            _ => None,
        };
        let pair = sum.and_then(|(a, b)| Some((depthwise(steps, a)?, depthwise(steps, b)?)));
        // One geometry includes one stride, padding and grouping.
        let Some(((first, conv, _), (second, ..))) = pair.filter(|(a, b)| a.2 == b.2) else {
            s += 1;
            continue;
        };
        let (a, b) = (steps[first].out, steps[second].out);
        let (later, earlier) = (first.max(second), first.min(second));
        let args = [steps[first].args.clone(), steps[second].args.clone()].concat();
        steps[later] =
            Step { kernel: Kernel::ConvPair { conv }, args, out: steps[s].out, fused: vec![a, b], also: Vec::new() };
        origins[a.0] = Origin::Fused;
        origins[b.0] = Origin::Fused;
        // The sum comes after both convolutions, so removing it first keeps `earlier` valid.
        steps.remove(s);
        steps.remove(earlier);
        s -= 1;
    }
}

/// A depthwise data or filter gradient step without a bias gradient.
struct Gradient {
    filter: bool,
    conv: Conv,
    dy: ValueId,
    /// The filter (data gradient) or the input (filter gradient).
    other: ValueId,
    geom: Geom,
}

impl Gradient {
    fn of(insts: &[Inst], step: &Step) -> Option<Gradient> {
        let (filter, conv, dy, other, (x, w)) = match step.kernel {
            Kernel::ConvData { conv } => (false, conv, step.args[0], step.args[1], (step.out, step.args[1])),
            Kernel::ConvFilter { conv, bias: false } => {
                (true, conv, step.args[1], step.args[0], (step.args[0], step.out))
            }
            _ => return None,
        };
        let geom = depthwise_geom(insts, x, w, dy, conv).filter(|_| step.also.is_empty())?;
        Some(Gradient { filter, conv, dy, other, geom })
    }

    /// Whether `other` is the same kind of gradient of the same `dy` and geometry.
    fn pairs_with(&self, other: &Gradient) -> bool {
        (self.filter, self.dy, self.geom) == (other.filter, other.dy, other.geom)
    }
}

/// Merges two depthwise data gradients, or two depthwise filter gradients, of one `dy` and
/// one geometry (ConvAct's halves in the backward pass) into one step that reads `dy` once.
/// The merged step runs where the first did, so the second's other operand must exist by then.
fn fuse_gradient_pairs(program: &Program, steps: &mut Vec<Step>) {
    let insts = program.insts();
    let mut s = 0;
    while s < steps.len() {
        let Some(first) = Gradient::of(insts, &steps[s]) else {
            s += 1;
            continue;
        };
        let partner = (s + 1..steps.len())
            .find_map(|t| Gradient::of(insts, &steps[t]).filter(|g| first.pairs_with(g)).map(|g| (t, g.other)));
        let made_since = |t: usize, v: ValueId| steps[s..t].iter().any(|st| st.out == v || st.also.contains(&v));
        let Some((t, other)) = partner.filter(|&(t, other)| !made_since(t, other)) else {
            s += 1;
            continue;
        };
        let second = steps.remove(t);
        let Gradient { filter, conv, dy, other: mine, .. } = first;
        let step = &mut steps[s];
        (step.kernel, step.args) = if filter {
            (Kernel::ConvFilterPair { conv }, vec![mine, other, dy])
        } else {
            (Kernel::ConvDataPair { conv }, vec![dy, mine, other])
        };
        step.also.push(second.out);
        s += 1;
    }
}

/// Drops the compiled kernels no step runs any more and numbers the rest in order of use.
fn drop_unused_kernels(steps: &mut [Step], kernels: Vec<netc_jit::Kernel>) -> Vec<netc_jit::Kernel> {
    let mut renumbered = vec![None; kernels.len()];
    let mut order = Vec::new();
    for step in steps {
        if let Kernel::Fused(f) = &mut step.kernel {
            f.kernel = *renumbered[f.kernel].get_or_insert_with(|| {
                order.push(f.kernel);
                order.len() - 1
            });
        }
    }
    let mut kernels: Vec<Option<netc_jit::Kernel>> = kernels.into_iter().map(Some).collect();
    order.into_iter().filter_map(|k| kernels[k].take()).collect()
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
/// need no step, and for elementwise ops, which the fusion pass puts in kernels.
fn plain_kernel(op: &Op) -> Option<Kernel> {
    Some(match op {
        Op::RandomBernoulli { keep, key, .. } => {
            Kernel::Bernoulli { keep: *keep, seed: key.seed, stream: key.stream.id() }
        }
        Op::RandomParts { fracs, key, .. } => {
            Kernel::Parts { fracs: fracs.clone(), seed: key.seed, stream: key.stream.id() }
        }
        Op::RandomNormal { key, .. } => Kernel::Normal { seed: key.seed, stream: key.stream.id() },
        Op::Broadcast { axes, .. } => Kernel::Broadcast { axes: axes.clone() },
        Op::Concat { axis } => Kernel::Concat { axis: *axis },
        Op::Slice { axis, start, len } => Kernel::Slice { axis: *axis, start: *start, len: *len },
        Op::ReduceSum { axes } => Kernel::ReduceSum { axes: axes.clone() },
        Op::ReduceMax { axis } => Kernel::ReduceMax { axis: *axis },
        Op::ReduceMaxBackward { axis } => Kernel::ReduceMaxBackward { axis: *axis },
        Op::MatMul { trans_a, trans_b } => {
            Kernel::MatMul { trans_a: *trans_a, trans_b: *trans_b, epilogue: Epilogue::default() }
        }
        Op::Conv2d(conv) => Kernel::Conv { conv: *conv, epilogue: Epilogue::default() },
        Op::Conv2dBackwardData { conv, .. } => Kernel::ConvData { conv: *conv },
        Op::Conv2dBackwardFilter { conv, .. } => Kernel::ConvFilter { conv: *conv, bias: false },
        Op::Pool { kind, window } => Kernel::Pool { kind: *kind, window: *window },
        Op::MaxPoolBackward(window) => Kernel::MaxPoolBackward { window: *window },
        Op::AvgPoolBackward { window, .. } => Kernel::AvgPoolBackward { window: *window },
        Op::SoftmaxXent => Kernel::SoftmaxXent,
        Op::SoftmaxXentGrad => Kernel::SoftmaxXentGrad,
        Op::Input(_) | Op::Const(_) | Op::Fill { .. } | Op::Reshape { .. } => return None,
        Op::Unary(_) | Op::Add | Op::Sub | Op::Mul | Op::Binary(_) | Op::Select | Op::BiasAdd => return None,
        // `Executor::new` and `describe` remove the gradient markers before planning.
        Op::StopGradient | Op::CustomGrad => return None,
    })
}
