//! The fusion pass: chains of elementwise instructions become one JIT-compiled kernel each.
//!
//! An elementwise value read by exactly one instruction of the same shape, which is itself
//! elementwise, is computed inside that reader's kernel and never stored. Each remaining
//! elementwise instruction roots a kernel: a [`netc_jit::Kernel`] whose operands are the
//! stored values the chain reads. A per-channel bias, a broadcast mask or a fill is read in a
//! broadcast layout instead of being materialised, when all of a kernel's broadcasts agree on
//! the grid (see `netc_jit::Layout`). Bias and activation right after a GEMM are fused into
//! the GEMM instead (see `plan.rs`); they never reach this pass.
//!
//! A kernel may store more than one value. An elementwise value that must be stored (it has
//! readers outside kernels, or too many to recompute it for) is computed as a second result of
//! a later kernel of its shape that reads it or reads the same operands, when nothing reads it
//! before that kernel runs: a unit's backward pass then reads `x` and `dy` once for the input
//! gradient and the elementwise part of its parameter's gradient, and a Swish's stored
//! `sigmoid(βx)` comes out of the same kernel as its output.

use netc_ir::{Dim, Inst, Op, Program, Shape, ValueId};
use netc_jit::{Kernel, Layout, Node, NodeId};

/// The most pointers (operands and the result) a fused kernel takes; the executor passes them
/// in a fixed array so running a kernel does not allocate.
pub(crate) const MAX_POINTERS: usize = 16;

/// How many kernels after a stored elementwise value the pass looks for one to compute it in.
/// Bounded so that the pass stays linear on nets of many thousands of layers.
const HOST_SEARCH: usize = 16;

/// The most instructions on any path from a kernel's root down through the instructions fused
/// into it. Building a kernel recurses once per instruction on such a path, and a net may chain
/// tens of thousands of elementwise layers; a longer chain is cut into kernels of this depth.
pub(crate) const MAX_CHAIN_DEPTH: usize = 256;

/// A fused kernel as a step.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Fused {
    /// Index into [`Fusion::kernels`].
    pub kernel: usize,
    /// The grid's width; `None` makes the whole tensor one row.
    pub inner: Option<usize>,
    /// The value each operand reads.
    pub operands: Vec<ValueId>,
    /// The instruction each node computes, where it is one.
    pub values: Vec<Option<ValueId>>,
    /// Values stored besides the root's, in the order of the kernel's outputs after the first.
    pub also: Vec<ValueId>,
}

/// The outcome of the pass.
#[derive(Debug)]
pub(crate) struct Fusion {
    /// The distinct kernels.
    pub kernels: Vec<Kernel>,
    /// The kernel each instruction roots.
    pub roots: Vec<Option<Fused>>,
    /// Instructions computed inside another instruction's kernel, and broadcasts only ever
    /// read through a layout: neither is stored.
    pub unstored: Vec<bool>,
    /// Stored values computed as a further result of another root's kernel.
    pub co_results: Vec<bool>,
}

/// Whether the pass puts `op` in a kernel: every elementwise op does.
fn is_elementwise(op: &Op) -> bool {
    matches!(op, Op::Unary(_) | Op::Add | Op::Sub | Op::Mul | Op::Binary(_) | Op::Select | Op::BiasAdd)
}

/// Whether recomputing `op` in every kernel that reads it costs less than storing and loading
/// it: single vector instructions, no call back into Rust.
fn cheap(op: &Op) -> bool {
    use netc_ir::{BinaryFn, UnaryFn};
    match op {
        Op::Add | Op::Sub | Op::Mul | Op::Select => true,
        Op::Binary(f) => !matches!(f, BinaryFn::Pow | BinaryFn::Div),
        Op::Unary(f) => matches!(
            f,
            UnaryFn::Relu
                | UnaryFn::Scale { .. }
                | UnaryFn::Abs
                | UnaryFn::Sign
                | UnaryFn::ReluDeriv
                | UnaryFn::Equal { .. }
        ),
        _ => false,
    }
}

/// The pass. `uses` counts each value's readers (program outputs included); `taken` marks the
/// instructions already fused into a GEMM. Fails with an instruction no kernel can compute (a
/// bias over a shape whose trailing extents are not fixed).
pub(crate) fn fuse(program: &Program, uses: &[usize], taken: &[bool]) -> Result<Fusion, ValueId> {
    let insts = program.insts();
    let mut outputs = vec![false; insts.len()];
    for o in program.outputs() {
        outputs[o.value.0] = true;
    }
    let candidate = |v: usize| !taken[v] && is_elementwise(&insts[v].op);
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); insts.len()];
    for (i, inst) in insts.iter().enumerate() {
        for a in &inst.args {
            if readers[a.0].last() != Some(&i) {
                readers[a.0].push(i);
            }
        }
    }
    // A value is computed inside its readers' kernels when they are all elementwise over its
    // shape: the one reader's, or, for a cheap function, each reader's again. Recomputing a
    // `min(x, 0)` where the backward pass needs it reads `x` instead of a stored copy, so the
    // unit's forward pass stays one kernel (a PReLU's `alpha` gradient reads it).
    let mut inlined: Vec<bool> = (0..insts.len())
        .map(|v| {
            let fits = |&r: &usize| candidate(r) && insts[r].shape == insts[v].shape;
            let shared_ok = uses[v] == readers[v].len() && (uses[v] == 1 || cheap(&insts[v].op));
            !outputs[v] && candidate(v) && !readers[v].is_empty() && shared_ok && readers[v].iter().all(fits)
        })
        .collect();
    cut_deep_chains(insts, &mut inlined);

    // A chain whose broadcasts disagree on the grid, or that reads too many values, is cut
    // where that happens: the cut instruction roots a kernel of its own, built before the
    // chain that read it is built again. A cut changes only the chain it was found in, so
    // every other kernel stays as it was built.
    let mut chains: Vec<Option<Chain>> = (0..insts.len()).map(|_| None).collect();
    for first in 0..insts.len() {
        if !candidate(first) || inlined[first] {
            continue;
        }
        let mut pending = vec![first];
        while let Some(&root) = pending.last() {
            let mut chain = Chain::new(program, root);
            match chain.translate(&inlined, ValueId(root)) {
                Ok(out) => {
                    chain.kernel.outputs.push(out);
                    chains[root] = Some(chain);
                    pending.pop();
                }
                // Cutting makes progress: it turns an inlined instruction into a root.
                Err(Misfit::Cut(cut)) if inlined[cut.0] => {
                    inlined[cut.0] = false;
                    pending.push(cut.0);
                }
                Err(Misfit::Cut(v) | Misfit::Unsupported(v)) => return Err(v),
                Err(Misfit::Full) => return Err(ValueId(root)),
            }
        }
    }

    let co_results = host_co_results(program, &inlined, &readers, &mut chains);

    // Kernels are numbered in the order of their roots.
    let mut kernels: Vec<Kernel> = Vec::new();
    let mut roots = vec![None; insts.len()];
    // Whether each broadcast is read element by element by some kernel (so it must be stored).
    let mut read_full = vec![false; insts.len()];
    for (root, chain) in chains.into_iter().enumerate() {
        let Some(chain) = chain else { continue };
        for b in &chain.full_reads {
            read_full[b.0] = true;
        }
        let kernel = match kernels.iter().position(|k| *k == chain.kernel) {
            Some(k) => k,
            None => {
                kernels.push(chain.kernel);
                kernels.len() - 1
            }
        };
        roots[root] = Some(Fused {
            kernel,
            inner: chain.grid,
            operands: chain.operands.iter().map(|o| o.0).collect(),
            values: chain.values,
            also: chain.hosted,
        });
    }
    // A broadcast needs no memory when every reader is a fused kernel reading it through a
    // layout. (Counting layout reads against uses is not enough: a kernel that recomputes a
    // forward value reads the broadcast again, so another kernel's element-wise read could go
    // unnoticed.)
    let unstored = (0..insts.len())
        .map(|v| {
            let broadcast = matches!(insts[v].op, Op::Broadcast { .. });
            let all_fused = !outputs[v] && !readers[v].is_empty() && readers[v].iter().all(|&r| candidate(r));
            inlined[v] || (broadcast && all_fused && !read_full[v])
        })
        .collect();
    Ok(Fusion { kernels, roots, unstored, co_results })
}

/// Moves the chain of every root that a later kernel can also compute into that kernel, as a
/// further result (see the module's documentation), and marks those roots. A root's host is
/// the first of the next [`HOST_SEARCH`] roots, up to the root's first reader, that has its
/// shape and a grid it can share, reads it or one of its operands, and has pointers to spare;
/// a host is not itself moved.
fn host_co_results<'a>(
    program: &'a Program,
    inlined: &[bool],
    readers: &[Vec<usize>],
    chains: &mut [Option<Chain<'a>>],
) -> Vec<bool> {
    let insts = program.insts();
    let roots: Vec<usize> = (0..chains.len()).filter(|&r| chains[r].is_some()).collect();
    let mut moved = vec![false; chains.len()];
    let mut hosts = vec![false; chains.len()];
    for (i, &guest) in roots.iter().enumerate() {
        if hosts[guest] {
            continue;
        }
        // Readers are listed in program order; a program output is read after every step.
        let first_reader = readers[guest].first().copied().unwrap_or(usize::MAX);
        let Some(guest_chain) = chains[guest].as_ref() else { continue };
        let (guest_grid, guest_operands) = (guest_chain.grid, guest_chain.operands.clone());
        for &host in roots[i + 1..].iter().take(HOST_SEARCH) {
            if host > first_reader {
                break;
            }
            let Some(host_chain) = chains[host].as_ref() else { continue };
            let related = host_chain.operands.iter().any(|o| o.0 .0 == guest || guest_operands.contains(o));
            let grids_agree = guest_grid.is_none() || host_chain.grid.is_none() || guest_grid == host_chain.grid;
            if moved[host] || insts[host].shape != insts[guest].shape || !related || !grids_agree {
                continue;
            }
            let mut guests = host_chain.hosted.clone();
            guests.push(ValueId(guest));
            if let Some(merged) = Chain::with_co_results(program, inlined, host, guests) {
                chains[host] = Some(merged);
                chains[guest] = None;
                moved[guest] = true;
                hosts[host] = true;
                break;
            }
        }
    }
    moved
}

/// Makes every inlined instruction that would sit [`MAX_CHAIN_DEPTH`] instructions below its
/// kernel's root a root itself, so that no chain is deeper than that. One pass in program
/// order: an instruction's depth is one more than the deepest inlined instruction it reads.
fn cut_deep_chains(insts: &[Inst], inlined: &mut [bool]) {
    let mut depth = vec![0usize; insts.len()];
    for (v, inst) in insts.iter().enumerate() {
        let below = inst.args.iter().filter(|a| inlined[a.0]).map(|a| depth[a.0]).max().unwrap_or(0);
        depth[v] = below + 1;
        if inlined[v] && depth[v] >= MAX_CHAIN_DEPTH {
            inlined[v] = false;
        }
    }
}

/// One kernel being built from the chain ending in `root`.
struct Chain<'a> {
    program: &'a Program,
    root: usize,
    /// The grid width the broadcasts read so far require.
    grid: Option<usize>,
    kernel: Kernel,
    /// The value and layout of each operand.
    operands: Vec<(ValueId, Layout)>,
    values: Vec<Option<ValueId>>,
    /// Broadcast instructions read element by element (where no layout fits the grid).
    full_reads: Vec<ValueId>,
    /// The node of each operand or constant read so far, so each is read once.
    leaves: Vec<(Node, NodeId)>,
    /// Stored values this kernel computes as further results, after the root's.
    hosted: Vec<ValueId>,
}

/// Why a chain does not fit one kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Misfit {
    /// Its operands would exceed [`MAX_POINTERS`]; the nearest inlined instruction on the way
    /// to the root must be cut.
    Full,
    /// This inlined instruction must root a kernel of its own.
    Cut(ValueId),
    /// No kernel computes this instruction.
    Unsupported(ValueId),
}

impl<'a> Chain<'a> {
    fn new(program: &'a Program, root: usize) -> Chain<'a> {
        Chain {
            program,
            root,
            grid: None,
            kernel: Kernel::default(),
            operands: Vec::new(),
            values: Vec::new(),
            full_reads: Vec::new(),
            leaves: Vec::new(),
            hosted: Vec::new(),
        }
    }

    /// The kernel of `root` that also stores each of `hosted`, or `None` if one does not fit.
    fn with_co_results(program: &'a Program, inlined: &[bool], root: usize, hosted: Vec<ValueId>) -> Option<Chain<'a>> {
        let mut chain = Chain::new(program, root);
        chain.hosted = hosted;
        let out = chain.translate(inlined, ValueId(root)).ok()?;
        chain.kernel.outputs.push(out);
        for v in chain.hosted.clone() {
            let node = chain.translate(inlined, v).ok()?;
            chain.kernel.outputs.push(node);
        }
        (chain.operands.len() + chain.kernel.outputs.len() <= MAX_POINTERS).then_some(chain)
    }

    /// The node computing `v`, given the instructions `inlined` into their reader's kernel.
    fn translate(&mut self, inlined: &[bool], v: ValueId) -> Result<NodeId, Misfit> {
        let inst = &self.program.insts()[v.0];
        if v.0 != self.root && !inlined[v.0] && !self.hosted.contains(&v) {
            return self.read(v);
        }
        // A value two instructions of this kernel read is computed once.
        if let Some(node) = self.values.iter().position(|&computed| computed == Some(v)) {
            return Ok(node);
        }
        let root = self.root;
        let cut_here = |m: Misfit| match m {
            Misfit::Full if v.0 != root => Misfit::Cut(v),
            // At the root: give up the first inlined operand instead (one exists, since the
            // root's own operands are at most three).
            Misfit::Full => inst.args.iter().find(|a| inlined[a.0]).map_or(Misfit::Unsupported(v), |&a| Misfit::Cut(a)),
            other => other,
        };
        let node = match &inst.op {
            Op::BiasAdd => {
                let Some((layout, width)) = channel_layout(&inst.shape) else {
                    return Err(if v.0 == root { Misfit::Unsupported(v) } else { Misfit::Cut(v) });
                };
                if !self.require(width) {
                    // Only the root fixes the grid before any operand: this is an inlined bias.
                    return Err(Misfit::Cut(v));
                }
                let x = self.translate(inlined, inst.args[0]).map_err(cut_here)?;
                let bias = self.operand(inst.args[1], layout).map_err(cut_here)?;
                Node::Add(x, bias)
            }
            op => {
                let mut args = [0; 3];
                for (slot, &a) in args.iter_mut().zip(&inst.args) {
                    *slot = self.translate(inlined, a).map_err(cut_here)?;
                }
                match op {
                    Op::Unary(f) => Node::Unary(*f, args[0]),
                    Op::Add => Node::Add(args[0], args[1]),
                    Op::Sub => Node::Sub(args[0], args[1]),
                    Op::Mul => Node::Mul(args[0], args[1]),
                    Op::Binary(f) => Node::Binary(*f, args[0], args[1]),
                    _ => Node::Select { mask: args[0], a: args[1], b: args[2] },
                }
            }
        };
        Ok(self.node(node, Some(v)))
    }

    /// A node reading stored value `v`: a constant for a fill, a broadcast layout of the
    /// broadcast's source where the grid allows, else `v` itself element by element.
    fn read(&mut self, v: ValueId) -> Result<NodeId, Misfit> {
        let inst = &self.program.insts()[v.0];
        match &inst.op {
            Op::Fill { value, .. } => return Ok(self.leaf(Node::Const(*value))),
            Op::Broadcast { shape, axes } => {
                if let Some((layout, width)) = broadcast_layout(shape, axes) {
                    if self.require(width) {
                        return self.operand(inst.args[0], layout);
                    }
                }
                self.full_reads.push(v);
            }
            _ => {}
        }
        self.operand(v, Layout::Full)
    }

    /// Fixes the grid width, if `width` asks for one; false if it conflicts.
    fn require(&mut self, width: Option<usize>) -> bool {
        match (width, self.grid) {
            (None, _) => true,
            (Some(w), None) => {
                self.grid = Some(w);
                true
            }
            (Some(w), Some(g)) => w == g,
        }
    }

    /// The node reading operand `(v, layout)`, adding it if new and there is room (one
    /// pointer stays for the result).
    fn operand(&mut self, v: ValueId, layout: Layout) -> Result<NodeId, Misfit> {
        let index = match self.operands.iter().position(|&o| o == (v, layout)) {
            Some(i) => i,
            None if self.operands.len() + 1 < MAX_POINTERS => {
                self.operands.push((v, layout));
                self.kernel.operands.push(layout);
                self.operands.len() - 1
            }
            None => return Err(Misfit::Full),
        };
        Ok(self.leaf(Node::Operand(index)))
    }

    /// The node of an operand read or constant, added the first time.
    fn leaf(&mut self, leaf: Node) -> NodeId {
        if let Some(&(_, node)) = self.leaves.iter().find(|(l, _)| *l == leaf) {
            return node;
        }
        let node = self.node(leaf, None);
        self.leaves.push((leaf, node));
        node
    }

    fn node(&mut self, node: Node, value: Option<ValueId>) -> NodeId {
        self.values.push(value);
        self.kernel.push(node)
    }
}

/// The layout of a per-channel (axis 1) vector over `shape`, and the grid width it needs:
/// one value per row for spatial shapes, per column for `[N, C]`.
fn channel_layout(shape: &Shape) -> Option<(Layout, Option<usize>)> {
    let channels = shape.fixed_at(1)?;
    let inner = fixed_product(&shape.dims()[2..])?;
    Some(if inner == 1 { (Layout::Col, Some(channels)) } else { (Layout::Row { period: channels }, Some(inner)) })
}

/// The layout in which a broadcast to `shape` along `axes` reads its source, and the grid
/// width it needs; `None` unless the source's axes are consecutive and their extents fixed.
fn broadcast_layout(shape: &Shape, axes: &[usize]) -> Option<(Layout, Option<usize>)> {
    let Some(&first) = axes.first() else { return Some((Layout::Scalar, None)) };
    let end = first + axes.len();
    if axes.iter().enumerate().any(|(i, &a)| a != first + i) {
        return None;
    }
    let period = fixed_product(&shape.dims()[first..end])?;
    let inner = fixed_product(&shape.dims()[end..])?;
    Some(if inner == 1 { (Layout::Col, Some(period)) } else { (Layout::Row { period }, Some(inner)) })
}

fn fixed_product(dims: &[Dim]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, d| d.fixed().map(|d| acc * d))
}
