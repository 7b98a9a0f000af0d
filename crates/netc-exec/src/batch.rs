//! Everything that depends on the batch size: resolved shapes, kernel geometries, the arena
//! layout, and the loop that runs the steps.

use crate::fuse::MAX_POINTERS;
use crate::kernels::{conv, elementwise as ew, layout, matmul, pool, random, reduce, softmax};
use crate::memory::{as_bits, as_bits_mut, assign, Arena, Lifetime, Mem, Region};
use crate::par::{Par, Scratch, ELEMENTS_PER_TASK};
use crate::plan::{Compiled, Epilogue, Kernel, Origin};
use crate::ExecError;
use netc_ir::{Op, PoolKind, Program, ValueId};
use netc_jit::Code;

/// A step with its shapes resolved.
#[derive(Clone, Debug, PartialEq)]
enum Exec {
    Bernoulli {
        keep: f64,
        seed: u64,
        stream: u64,
    },
    Parts {
        seed: u64,
        stream: u64,
        counts: Vec<usize>,
    },
    Normal {
        seed: u64,
        stream: u64,
    },
    /// Fused kernel `kernel` over a `rows × inner` grid.
    Fused {
        kernel: usize,
        rows: usize,
        inner: usize,
    },
    Broadcast(layout::Broadcast),
    Concat(layout::Concat),
    Slice(layout::Slice),
    ReduceSum(reduce::Sum),
    ReduceMax(reduce::Max),
    ReduceMaxBackward(reduce::Max),
    MatMul(matmul::MatMul, Epilogue),
    Conv(conv::Plan, Epilogue),
    ConvPair(conv::Plan),
    ConvData(conv::Plan),
    ConvDataPair(conv::Plan),
    ConvFilter(conv::Plan),
    ConvFilterPair(conv::Plan),
    Pool(PoolKind, pool::Pool),
    MaxPoolBackward(pool::Pool),
    AvgPoolBackward(pool::Pool),
    SoftmaxXent {
        classes: usize,
    },
    SoftmaxXentGrad {
        classes: usize,
    },
}

impl Exec {
    /// The kernel's name, for profiles.
    fn name(&self) -> &'static str {
        match self {
            Exec::Bernoulli { .. } => "random_bernoulli",
            Exec::Parts { .. } => "random_parts",
            Exec::Normal { .. } => "random_normal",
            Exec::Fused { .. } => "fused",
            Exec::Broadcast(_) => "broadcast",
            Exec::Concat(_) => "concat",
            Exec::Slice(_) => "slice",
            Exec::ReduceSum(_) => "reduce_sum",
            Exec::ReduceMax(_) => "reduce_max",
            Exec::ReduceMaxBackward(_) => "reduce_max_bwd",
            Exec::MatMul(..) => "matmul",
            Exec::Conv(..) => "conv2d",
            Exec::ConvPair(_) => "conv2d_pair",
            Exec::ConvData(_) => "conv2d_bwd_data",
            Exec::ConvDataPair(_) => "conv2d_bwd_data_pair",
            Exec::ConvFilter(_) => "conv2d_bwd_filter",
            Exec::ConvFilterPair(_) => "conv2d_bwd_filter_pair",
            Exec::Pool(PoolKind::Max, _) => "maxpool",
            Exec::Pool(PoolKind::Avg, _) => "avgpool",
            Exec::MaxPoolBackward(_) => "maxpool_bwd",
            Exec::AvgPoolBackward(_) => "avgpool_bwd",
            Exec::SoftmaxXent { .. } => "softmax_xent",
            Exec::SoftmaxXentGrad { .. } => "softmax_xent_grad",
        }
    }
}

/// A step ready to run: its kernel and where its operands, result and scratch live.
#[derive(Clone, Debug, PartialEq)]
struct Planned {
    /// Index into `Compiled::steps`.
    step: usize,
    exec: Exec,
    args: Vec<Region>,
    out: Region,
    /// The memory of the step's further results (`Step::also`).
    also: Vec<Region>,
    scratch: Region,
    /// Memory a forward step leaves for a backward step (see [`shareable`]; empty if none).
    shared: Region,
}

/// The plan and memory of one batch size.
#[derive(Debug)]
pub(crate) struct BatchPlan {
    pub batch: usize,
    arena: Arena,
    steps: Vec<Planned>,
    /// Where each value lives (`None` for values computed inside fused steps).
    regions: Vec<Option<Region>>,
    /// Scratch of `RandomParts`: a permutation and its swap partners.
    perm: Vec<usize>,
    swaps: Vec<usize>,
}

/// What a check run found: the first value in program order holding a NaN or infinity.
pub(crate) type Checker = Option<ValueId>;

fn checked_product(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// The value whose memory `v` uses: a reshape shares its operand's.
fn storage_root(origins: &[Origin], mut v: ValueId) -> ValueId {
    while let Origin::Alias(of) = origins[v.0] {
        v = of;
    }
    v
}

/// Which values are constant once the steps on constants alone have run, and which steps
/// those are: they run once, at planning (a broadcast fixed mask, say). Random and
/// scratch-using kernels are left to the run.
fn fold_constant_steps(compiled: &Compiled) -> (Vec<bool>, Vec<bool>) {
    let origins = &compiled.origins;
    let mut constant: Vec<bool> = origins.iter().map(|o| *o == Origin::Constant).collect();
    let mut folded = vec![false; compiled.steps.len()];
    for (s, step) in compiled.steps.iter().enumerate() {
        let foldable = !matches!(
            step.kernel,
            Kernel::Bernoulli { .. }
                | Kernel::Parts { .. }
                | Kernel::Normal { .. }
                | Kernel::Conv { .. }
                | Kernel::ConvPair { .. }
                | Kernel::ConvData { .. }
                | Kernel::ConvDataPair { .. }
                | Kernel::ConvFilter { .. }
                | Kernel::ConvFilterPair { .. }
        );
        if foldable && step.args.iter().all(|&a| constant[storage_root(origins, a).0]) {
            folded[s] = true;
            for v in std::iter::once(step.out).chain(step.also.iter().copied()) {
                constant[v.0] = true;
            }
        }
    }
    (constant, folded)
}

/// Each value's first and last use, in positions of `order` (the steps that run); inputs and
/// constants live throughout, outputs to the end.
fn lifetimes(program: &Program, compiled: &Compiled, order: &[usize], constant: &[bool]) -> (Vec<usize>, Vec<usize>) {
    let origins = &compiled.origins;
    let end = order.len();
    let mut first = vec![usize::MAX; origins.len()];
    let mut last = vec![0usize; origins.len()];
    for (v, origin) in origins.iter().enumerate() {
        if matches!(origin, Origin::Input | Origin::Counter) || constant[v] {
            first[v] = 0;
            last[v] = end;
        }
    }
    for (pos, &s) in order.iter().enumerate() {
        let step = &compiled.steps[s];
        for v in std::iter::once(step.out).chain(step.also.iter().copied()) {
            first[v.0] = first[v.0].min(pos);
            last[v.0] = last[v.0].max(pos);
        }
        for &a in &step.args {
            let r = storage_root(origins, a);
            last[r.0] = last[r.0].max(pos);
        }
    }
    for o in program.outputs() {
        last[storage_root(origins, o.value).0] = end;
    }
    (first, last)
}

/// Elements a forward step can leave to backward step `backward` of the same input: a max
/// pooling the positions of its maxima to its gradient.
fn shareable(forward: &Exec, backward: &Exec) -> Option<usize> {
    match (forward, backward) {
        (Exec::Pool(PoolKind::Max, fwd), Exec::MaxPoolBackward(bwd)) if fwd == bwd => {
            Some(bwd.planes * bwd.ho * bwd.wo)
        }
        _ => None,
    }
}

/// Pairs each backward step with a forward step of the same input that can leave it memory
/// (see [`shareable`]): (forward position, backward position, elements).
fn share_forward_memory(compiled: &Compiled, order: &[usize], execs: &[Exec]) -> Vec<(usize, usize, usize)> {
    let root = |v: ValueId| storage_root(&compiled.origins, v);
    let mut shares: Vec<(usize, usize, usize)> = Vec::new();
    for (b_pos, &b) in order.iter().enumerate() {
        let Some(&first) = compiled.steps[b].args.first() else { continue };
        let x = root(first);
        let found = order[..b_pos].iter().enumerate().find_map(|(f_pos, &f)| {
            let same_input = compiled.steps[f].args.first().is_some_and(|&a| root(a) == x);
            let free = !shares.iter().any(|s| s.0 == f_pos);
            shareable(&execs[f], &execs[b]).filter(|_| same_input && free).map(|len| (f_pos, len))
        });
        if let Some((f_pos, len)) = found {
            shares.push((f_pos, b_pos, len));
        }
    }
    shares
}

/// Where everything lives in the arena: the offset of each stored value's item, each memory
/// shared by a forward and a backward step, each running step's scratch, and the arena's size.
struct Placement {
    offsets: Vec<usize>,
    total: usize,
    /// The item of each value that has storage of its own.
    item_of: Vec<Option<usize>>,
    share_items: Vec<usize>,
    scratch_items: Vec<Option<(usize, usize)>>,
}

fn place(
    compiled: &Compiled,
    order: &[usize],
    lifetimes: &(Vec<usize>, Vec<usize>),
    lens: &[usize],
    shares: &[(usize, usize, usize)],
    scratch_lens: &[usize],
) -> Placement {
    let origins = &compiled.origins;
    let (first, last) = lifetimes;
    let mut items = Vec::new();
    let mut item_of = vec![None; origins.len()];
    for v in 0..origins.len() {
        if first[v] != usize::MAX && storage_root(origins, ValueId(v)).0 == v && origins[v] != Origin::Fused {
            item_of[v] = Some(items.len());
            items.push(Lifetime { first: first[v], last: last[v].max(first[v]), len: lens[v] });
        }
    }
    let share_items: Vec<usize> = shares
        .iter()
        .map(|&(first, last, len)| {
            items.push(Lifetime { first, last, len });
            items.len() - 1
        })
        .collect();
    let scratch_items: Vec<Option<(usize, usize)>> = order
        .iter()
        .enumerate()
        .map(|(pos, &s)| {
            (scratch_lens[s] > 0).then(|| {
                items.push(Lifetime { first: pos, last: pos, len: scratch_lens[s] });
                (items.len() - 1, scratch_lens[s])
            })
        })
        .collect();
    let (offsets, total) = assign(&items);
    Placement { offsets, total, item_of, share_items, scratch_items }
}

/// Writes every constant and fill into its place in the arena.
fn write_constants(program: &Program, origins: &[Origin], regions: &[Option<Region>], arena: &mut Arena) {
    for (v, inst) in program.insts().iter().enumerate() {
        let Some(r) = regions[v].filter(|_| origins[v] == Origin::Constant) else { continue };
        let Some(dst) = arena.get_mut(r) else { continue };
        match &inst.op {
            Op::Const(t) => dst.copy_from_slice(t.data()),
            Op::Fill { value, .. } => dst.fill(*value),
            _ => {}
        }
    }
}

impl BatchPlan {
    pub fn new(
        program: &Program,
        compiled: &Compiled,
        code: &Code,
        batch: usize,
        threads: usize,
        memory_limit: Option<u64>,
    ) -> Result<BatchPlan, ExecError> {
        let insts = program.insts();
        let too_large = || ExecError::TooLarge { batch };
        let dims: Vec<Vec<usize>> = insts.iter().map(|i| i.shape.resolve(batch)).collect();
        let lens: Vec<usize> =
            dims.iter().map(|d| checked_product(d).ok_or_else(too_large)).collect::<Result<_, _>>()?;
        let origins = &compiled.origins;

        let (constant, folded) = fold_constant_steps(compiled);
        let order: Vec<usize> = (0..compiled.steps.len()).filter(|&s| !folded[s]).collect();
        let lifetimes = lifetimes(program, compiled, &order, &constant);
        let execs: Vec<Exec> =
            compiled.steps.iter().map(|step| resolve(&step.kernel, &step.args, step.out, &dims, &lens)).collect();
        let shares = share_forward_memory(compiled, &order, &execs);
        let scratch_lens: Vec<usize> = execs.iter().map(|e| scratch_len(e, threads)).collect();
        let placement = place(compiled, &order, &lifetimes, &lens, &shares, &scratch_lens);

        let regions: Vec<Option<Region>> = (0..insts.len())
            .map(|v| {
                let item = placement.item_of[storage_root(origins, ValueId(v)).0];
                item.map(|i| Region { off: placement.offsets[i], len: lens[v] })
            })
            .collect();
        let region = |v: ValueId| regions[v.0].unwrap_or_default();
        let planned = |s: usize, scratch: Region| Planned {
            step: s,
            exec: execs[s].clone(),
            args: compiled.steps[s].args.iter().map(|&a| region(a)).collect(),
            out: region(compiled.steps[s].out),
            also: compiled.steps[s].also.iter().map(|&v| region(v)).collect(),
            scratch,
            shared: Region::default(),
        };
        let parts_len = execs
            .iter()
            .zip(&compiled.steps)
            .filter(|(e, _)| matches!(e, Exec::Parts { .. }))
            .map(|(_, s)| lens[s.out.0]);
        let parts_len = parts_len.max().unwrap_or(0);
        // Refused on the plan's own figure (the arena and the masks' permutation scratch)
        // before anything is allocated.
        let scratch_bytes = parts_len.saturating_mul(2 * std::mem::size_of::<usize>());
        let bytes = placement.total.saturating_mul(std::mem::size_of::<f32>()).saturating_add(scratch_bytes);
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        if let Some(limit) = memory_limit.filter(|&limit| bytes > limit) {
            return Err(ExecError::OverBudget { batch, bytes, limit });
        }
        let mut arena = Arena::try_new(placement.total).ok_or_else(too_large)?;

        // Constants, then the folded steps in program order (on this thread; they use no
        // scratch).
        write_constants(program, origins, &regions, &mut arena);
        for s in (0..compiled.steps.len()).filter(|&s| folded[s]) {
            let mut env =
                Env { code, kernels: &compiled.kernels, counter: 0, perm: &mut [], swaps: &mut [], check: None };
            execute(&planned(s, Region::default()), &compiled.steps[s], arena.mem(), Par::new(1), &mut env)?;
        }
        let mut steps: Vec<Planned> = order
            .iter()
            .zip(&placement.scratch_items)
            .map(|(&s, item)| {
                let scratch = item.map_or(Region::default(), |(i, len)| Region { off: placement.offsets[i], len });
                planned(s, scratch)
            })
            .collect();
        for (&(forward, backward, len), &item) in shares.iter().zip(&placement.share_items) {
            let shared = Region { off: placement.offsets[item], len };
            steps[forward].shared = shared;
            steps[backward].shared = shared;
        }
        Ok(BatchPlan { batch, arena, steps, regions, perm: vec![0; parts_len], swaps: vec![0; parts_len] })
    }

    /// The memory of value `v`, if it is stored.
    pub fn value(&self, v: ValueId) -> Option<&[f32]> {
        self.regions.get(v.0).copied().flatten().and_then(|r| self.arena.get(r))
    }

    /// Writable memory of an input value.
    pub fn value_mut(&mut self, v: ValueId) -> Option<&mut [f32]> {
        self.regions.get(v.0).copied().flatten().and_then(|r| self.arena.get_mut(r))
    }

    /// Writable memory of value `w` together with the memory of another value `g`, or `None`
    /// if either is not stored or they overlap (an input and a result never do).
    pub fn value_pair_mut(&mut self, w: ValueId, g: ValueId) -> Option<(&mut [f32], &[f32])> {
        let (rw, rg) = (self.regions.get(w.0).copied().flatten()?, self.regions.get(g.0).copied().flatten()?);
        let disjoint = rw.off + rw.len <= rg.off || rg.off + rg.len <= rw.off;
        if !disjoint || self.arena.get(rw).is_none() || self.arena.get(rg).is_none() {
            return None;
        }
        let mem = self.arena.mem();
        // SAFETY: both regions are inside the arena (checked above) and disjoint, and `self` is
        // borrowed mutably for as long as the slices live.
        Some(unsafe { (mem.get_mut(rw), mem.get(rg)) })
    }

    /// The kernel name and result of each step, in run order.
    pub fn steps<'a>(&'a self, compiled: &'a Compiled) -> impl Iterator<Item = (&'static str, ValueId)> + 'a {
        self.steps.iter().map(|p| (p.exec.name(), compiled.steps[p.step].out))
    }

    /// Runs every step (inputs must be in place). With `check`, also finds the first value
    /// in program order holding a NaN or infinity, including inputs and constants. With
    /// `times` (one slot per step), records each step's wall time in seconds.
    pub fn run(
        &mut self,
        compiled: &Compiled,
        code: &Code,
        par: Par,
        counter: u64,
        check: Option<&mut Checker>,
        mut times: Option<&mut [f64]>,
    ) -> Result<(), ExecError> {
        let mem = self.arena.mem();
        let mut env =
            Env { code, kernels: &compiled.kernels, counter, perm: &mut self.perm, swaps: &mut self.swaps, check };
        if let Some(found) = env.check.as_deref_mut() {
            for (v, origin) in compiled.origins.iter().enumerate() {
                if let (Origin::Input | Origin::Constant, Some(r)) = (origin, self.regions[v]) {
                    // SAFETY: nothing else accesses the arena during this read.
                    note(found, ValueId(v), unsafe { mem.get(r) });
                }
            }
        }
        for (i, p) in self.steps.iter().enumerate() {
            let start = times.is_some().then(std::time::Instant::now);
            execute(p, &compiled.steps[p.step], mem, par, &mut env)?;
            if let (Some(times), Some(start)) = (times.as_deref_mut(), start) {
                if let Some(t) = times.get_mut(i) {
                    *t = start.elapsed().as_secs_f64();
                }
            }
        }
        Ok(())
    }
}

/// Run-time context of the steps.
struct Env<'a> {
    code: &'a Code,
    kernels: &'a [netc_jit::Kernel],
    counter: u64,
    perm: &'a mut [usize],
    swaps: &'a mut [usize],
    check: Option<&'a mut Checker>,
}

/// The base pointers of a fused kernel's operands and result.
struct Pointers([*mut f32; MAX_POINTERS]);

// SAFETY: tasks use the pointers for disjoint parts of the result (see `run_fused`) and only
// read the operands.
unsafe impl Sync for Pointers {}

impl Pointers {
    /// The first `count`; a method so closures capture the `Sync` wrapper, not the array.
    fn first(&self, count: usize) -> &[*mut f32] {
        &self.0[..count]
    }
}

/// Runs fused kernel `kernel` over its grid in tasks of whole rows, or of columns when the
/// grid is one row; every element's value is independent of the split.
fn run_fused(code: &Code, kernel: usize, pointers: &Pointers, count: usize, rows: usize, inner: usize, par: Par) {
    // SAFETY (both calls): the planner gives each result memory no operand or other result
    // occupies, each pointer covers its value's whole grid in the layout the kernel reads it
    // in, and the tasks write disjoint rows or columns.
    if rows == 1 {
        par.tasks(inner.div_ceil(ELEMENTS_PER_TASK), |t| {
            let start = t * ELEMENTS_PER_TASK;
            unsafe {
                code.run(kernel, pointers.first(count), 0..1, inner, start..(start + ELEMENTS_PER_TASK).min(inner))
            }
        });
    } else {
        let per_task = (ELEMENTS_PER_TASK / inner).max(1);
        par.tasks(rows.div_ceil(per_task), |t| {
            let start = t * per_task;
            unsafe { code.run(kernel, pointers.first(count), start..(start + per_task).min(rows), inner, 0..inner) }
        });
    }
}

/// Records `v` if `data` is not all finite and `v` comes before what was found so far.
fn note(found: &mut Checker, v: ValueId, data: &[f32]) {
    if found.is_none_or(|f| v < f) && !data.iter().all(|x| x.is_finite()) {
        *found = Some(v);
    }
}

/// Kernel geometry for the resolved shapes.
fn resolve(kernel: &Kernel, args: &[ValueId], out: ValueId, dims: &[Vec<usize>], lens: &[usize]) -> Exec {
    let d = |i: usize| dims[args[i].0].as_slice();
    let y = dims[out.0].as_slice();
    let pool_geom = |x: &[usize], y: &[usize], window: netc_ir::Window| pool::Pool {
        planes: x[0] * x[1],
        h: x[2],
        w: x[3],
        ho: y[2],
        wo: y[3],
        kh: window.kernel[0],
        kw: window.kernel[1],
        stride: window.stride,
        pad_top: window.pad.top,
        pad_left: window.pad.left,
    };
    match kernel {
        Kernel::Bernoulli { keep, seed, stream } => Exec::Bernoulli { keep: *keep, seed: *seed, stream: *stream },
        Kernel::Normal { seed, stream } => Exec::Normal { seed: *seed, stream: *stream },
        Kernel::Parts { fracs, seed, stream } => {
            Exec::Parts { seed: *seed, stream: *stream, counts: netc_ir::rng::part_counts(fracs, lens[out.0]) }
        }
        Kernel::Fused(f) => {
            let total = lens[out.0];
            let inner = f.inner.unwrap_or(total).max(1);
            Exec::Fused { kernel: f.kernel, rows: total / inner, inner }
        }
        Kernel::Broadcast { axes } => Exec::Broadcast(layout::Broadcast::new(d(0), y, axes)),
        Kernel::Concat { axis } => {
            let extents: Vec<usize> = args.iter().map(|a| dims[a.0][*axis]).collect();
            Exec::Concat(layout::Concat::new(y, *axis, &extents))
        }
        Kernel::Slice { axis, start, len } => Exec::Slice(layout::Slice::new(d(0), *axis, *start, *len)),
        Kernel::ReduceSum { axes } => Exec::ReduceSum(reduce::Sum::new(d(0), axes)),
        Kernel::ReduceMax { axis } => Exec::ReduceMax(reduce::Max::new(d(0), *axis)),
        Kernel::ReduceMaxBackward { axis } => Exec::ReduceMaxBackward(reduce::Max::new(d(0), *axis)),
        Kernel::MatMul { trans_a, trans_b, epilogue } => {
            Exec::MatMul(matmul::MatMul::new(d(0), d(1), *trans_a, *trans_b), *epilogue)
        }
        Kernel::Conv { conv, epilogue } => Exec::Conv(conv::Geom::new(d(0), d(1), y, *conv).forward_plan(), *epilogue),
        Kernel::ConvPair { conv } => Exec::ConvPair(conv::Geom::new(d(0), d(1), y, *conv).forward_plan()),
        Kernel::ConvData { conv } => Exec::ConvData(conv::Geom::new(y, d(1), d(0), *conv).data_plan()),
        Kernel::ConvDataPair { conv } => Exec::ConvDataPair(conv::Geom::new(y, d(1), d(0), *conv).data_plan()),
        Kernel::ConvFilter { conv, bias } => Exec::ConvFilter(conv::Geom::new(d(0), y, d(1), *conv).filter_plan(*bias)),
        Kernel::ConvFilterPair { conv } => {
            Exec::ConvFilterPair(conv::Geom::new(d(0), y, d(2), *conv).filter_plan(false))
        }
        Kernel::Pool { kind, window } => Exec::Pool(*kind, pool_geom(d(0), y, *window)),
        Kernel::MaxPoolBackward { window } => Exec::MaxPoolBackward(pool_geom(d(0), d(1), *window)),
        Kernel::AvgPoolBackward { window } => Exec::AvgPoolBackward(pool_geom(y, d(0), *window)),
        Kernel::SoftmaxXent => Exec::SoftmaxXent { classes: d(0).get(1).copied().unwrap_or(1) },
        Kernel::SoftmaxXentGrad => Exec::SoftmaxXentGrad { classes: d(0).get(1).copied().unwrap_or(1) },
    }
}

/// Scratch elements a step needs with `threads` workers.
fn scratch_len(exec: &Exec, threads: usize) -> usize {
    match exec {
        Exec::Conv(plan, _) | Exec::ConvPair(plan) | Exec::ConvData(plan) | Exec::ConvDataPair(plan) => {
            plan.worker_scratch() * threads
        }
        Exec::ConvFilter(plan) | Exec::ConvFilterPair(plan) => {
            conv::filter_partials_len(plan) + plan.worker_scratch() * threads
        }
        Exec::MatMul(mm, _) => mm.scratch_len(threads),
        _ => 0,
    }
}

/// Runs one step. With a checker in `env`, fused steps run phase by phase so that every value
/// they compute can be checked.
fn execute(p: &Planned, step: &crate::plan::Step, mem: Mem, par: Par, env: &mut Env<'_>) -> Result<(), ExecError> {
    // SAFETY (every `mem.get`/`get_mut` below): the planner gives a step's result and scratch
    // memory that none of the step's operands occupies (their lifetimes all include this
    // step), operands are only read, and the result is borrowed mutably once.
    let arg = |i: usize| unsafe { mem.get(p.args[i]) };
    let out = unsafe { mem.get_mut(p.out) };
    // A GEMM epilogue's kept pre-activation: a result of the step in memory of its own.
    let kept_pre = |e: &Epilogue| p.also.first().filter(|_| e.keep_pre).map(|&r| unsafe { mem.get_mut(r) });
    let checking = env.check.is_some();
    // Values of the phases of a fused step, in order; the last is the step's result.
    let mut values = step.fused.iter().copied().chain(std::iter::once(step.out));
    let mut phase = |env: &mut Env<'_>, data: &[f32]| {
        if let (Some(found), Some(v)) = (env.check.as_deref_mut(), values.next()) {
            note(found, v, data);
        }
    };
    match &p.exec {
        Exec::Bernoulli { keep, seed, stream } => {
            let key = netc_ir::rng::Key { seed: *seed, stream: *stream, step: env.counter };
            random::bernoulli(par, key, *keep, out);
        }
        Exec::Normal { seed, stream } => {
            let key = netc_ir::rng::Key { seed: *seed, stream: *stream, step: env.counter };
            random::normal(par, key, out);
        }
        Exec::Parts { seed, stream, counts } => {
            let key = netc_ir::rng::Key { seed: *seed, stream: *stream, step: env.counter };
            let n = out.len();
            random::parts(par, key, counts, &mut env.perm[..n], &mut env.swaps[..n], out);
        }
        Exec::Fused { kernel, rows, inner } => {
            let mut pointers = Pointers([std::ptr::null_mut(); MAX_POINTERS]);
            for (slot, &r) in pointers.0.iter_mut().zip(&p.args) {
                *slot = mem.ptr(r);
            }
            pointers.0[p.args.len()] = out.as_mut_ptr();
            for (slot, &r) in pointers.0[p.args.len() + 1..].iter_mut().zip(&p.also) {
                *slot = mem.ptr(r);
            }
            run_fused(env.code, *kernel, &pointers, p.args.len() + 1 + p.also.len(), *rows, *inner, par);
            // Values inside the kernel never reach memory: recompute them to check them.
            if let (Some(found), Kernel::Fused(fused)) = (env.check.as_deref_mut(), &step.kernel) {
                let operands: Vec<&[f32]> = (0..p.args.len()).map(arg).collect();
                let values = env.kernels[*kernel].evaluate(&operands, *rows, *inner);
                for (v, data) in fused.values.iter().zip(&values) {
                    if let Some(v) = v {
                        note(found, *v, data);
                    }
                }
            }
        }
        Exec::Broadcast(b) => b.run(arg(0), out),
        Exec::Concat(c) => {
            // Concatenations have few operands; a fixed array avoids allocating per run.
            let mut parts: [&[f32]; 16] = [&[]; 16];
            if p.args.len() <= parts.len() {
                for (i, part) in parts.iter_mut().enumerate().take(p.args.len()) {
                    *part = arg(i);
                }
                c.run(&parts[..p.args.len()], out);
            } else {
                let parts: Vec<&[f32]> = (0..p.args.len()).map(arg).collect();
                c.run(&parts, out);
            }
        }
        Exec::Slice(s) => s.run(arg(0), out),
        Exec::ReduceSum(s) => s.run(par, arg(0), out),
        Exec::ReduceMax(m) => m.forward(arg(0), out),
        Exec::ReduceMaxBackward(m) => m.backward(arg(0), arg(1), out),
        Exec::MatMul(mm, e) => {
            // SAFETY: the step's scratch and kept pre-activation are disjoint from its operands
            // and result, and from each other.
            let scratch = unsafe { mem.get_mut(p.scratch) };
            let pre = kept_pre(e);
            let bias = e.bias.then(|| arg(2));
            if checking {
                mm.run(par, arg(0), arg(1), None, None, out, None, scratch);
                epilogue_phases(par, *e, bias, 1, out, pre, env, &mut phase);
            } else {
                mm.run(par, arg(0), arg(1), bias, e.act, out, pre, scratch);
            }
        }
        Exec::Conv(plan, e) => {
            // SAFETY: as for the product.
            let scratch = Scratch::new(unsafe { mem.get_mut(p.scratch) }, par.threads());
            let pre = kept_pre(e);
            let bias = e.bias.then(|| arg(2));
            if checking {
                conv::forward(par, plan, arg(0), arg(1), None, None, out, None, &scratch);
                epilogue_phases(par, *e, bias, plan.geom.ho * plan.geom.wo, out, pre, env, &mut phase);
            } else {
                conv::forward(par, plan, arg(0), arg(1), bias, e.act, out, pre, &scratch);
            }
        }
        Exec::ConvPair(plan) => {
            // SAFETY: as for the product.
            let scratch = Scratch::new(unsafe { mem.get_mut(p.scratch) }, par.threads());
            let (first, second) = ((arg(0), arg(1)), (arg(2), arg(3)));
            if checking {
                // Each convolution on its own, to check it, before the sum overwrites it.
                for (x, w) in [first, second] {
                    conv::forward(par, plan, x, w, None, None, out, None, &scratch);
                    phase(env, out);
                }
            }
            conv::forward_pair(par, plan, first, second, out, &scratch);
        }
        Exec::ConvData(plan) => {
            // SAFETY: as above.
            let scratch = Scratch::new(unsafe { mem.get_mut(p.scratch) }, par.threads());
            conv::backward_data(par, plan, arg(0), arg(1), out, &scratch);
        }
        Exec::ConvFilter(plan) => {
            // SAFETY: as above; the partials and the per-worker parts do not overlap.
            let all = unsafe { mem.get_mut(p.scratch) };
            let (partials, workers) = all.split_at_mut(conv::filter_partials_len(plan));
            let workers = Scratch::new(workers, par.threads());
            // SAFETY: the bias gradient is a result of this step, in memory of its own.
            let db = p.also.first().filter(|_| plan.bias).map(|&r| unsafe { mem.get_mut(r) });
            conv::backward_filter(par, plan, arg(0), arg(1), out, db, partials, &workers);
            note_also(env, step, p, mem);
        }
        Exec::ConvDataPair(plan) => {
            // SAFETY: as above; the second gradient is a result of this step, in memory of its own.
            let scratch = Scratch::new(unsafe { mem.get_mut(p.scratch) }, par.threads());
            let second = unsafe { mem.get_mut(p.also[0]) };
            conv::backward_data_pair(par, plan, arg(0), (arg(1), arg(2)), (out, second), &scratch);
            note_also(env, step, p, mem);
        }
        Exec::ConvFilterPair(plan) => {
            // SAFETY: as for the data gradients (one task: no partials).
            let scratch = Scratch::new(unsafe { mem.get_mut(p.scratch) }, par.threads());
            let second = unsafe { mem.get_mut(p.also[0]) };
            conv::backward_filter_pair(par, plan, (arg(0), arg(1)), arg(2), (out, second), &scratch);
            note_also(env, step, p, mem);
        }
        Exec::Pool(PoolKind::Max, g) => {
            // SAFETY: the maxima's positions live from this step to the gradient's, so they
            // are disjoint from this step's operand and result.
            let argmax = (p.shared.len > 0).then(|| as_bits_mut(unsafe { mem.get_mut(p.shared) }));
            g.max(par, arg(0), out, argmax);
        }
        Exec::Pool(PoolKind::Avg, g) => g.avg(par, arg(0), out),
        Exec::MaxPoolBackward(g) => {
            // SAFETY: as for the forward pooling; here they are only read.
            let recorded = (p.shared.len > 0).then(|| as_bits(unsafe { mem.get(p.shared) }));
            g.max_backward(par, arg(0), arg(1), out, recorded);
        }
        Exec::AvgPoolBackward(g) => g.avg_backward(par, arg(0), out),
        Exec::SoftmaxXent { classes } => softmax::xent(arg(0), arg(1), *classes, out)?,
        Exec::SoftmaxXentGrad { classes } => softmax::xent_grad(arg(0), arg(1), *classes, out)?,
    }
    phase(env, out);
    Ok(())
}

/// Notes the further results of a step for the checker, after the step wrote them.
fn note_also(env: &mut Env<'_>, step: &crate::plan::Step, p: &Planned, mem: Mem) {
    if let Some(found) = env.check.as_deref_mut() {
        for (&v, &r) in step.also.iter().zip(&p.also) {
            // SAFETY: written by the step; nothing else accesses it now.
            note(found, v, unsafe { mem.get(r) });
        }
    }
}

/// The bias and activation of a GEMM step applied in place one after the other, noting each
/// intermediate value; the caller notes the last. `inner` elements share a bias; `pre`
/// receives the value before the activation.
#[allow(clippy::too_many_arguments)]
fn epilogue_phases(
    par: Par,
    e: Epilogue,
    bias: Option<&[f32]>,
    inner: usize,
    out: &mut [f32],
    pre: Option<&mut [f32]>,
    env: &mut Env<'_>,
    phase: &mut impl FnMut(&mut Env<'_>, &[f32]),
) {
    if let Some(bias) = bias {
        phase(env, out);
        ew::bias_in_place(par, bias, inner, out);
    }
    if let Some(pre) = pre {
        pre.copy_from_slice(out);
    }
    if e.act.is_some() {
        phase(env, out);
        ew::act_in_place(par, e.act, out);
    }
}
