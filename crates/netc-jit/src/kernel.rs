//! What a fused elementwise kernel computes: an expression DAG over operands that are read
//! in one of a few broadcast layouts, and a reference evaluator for it.
//!
//! A kernel iterates over a `rows × inner` grid of elements (row-major: element
//! `r·inner + j`). Every output has one value per element; each operand is read at an index
//! its [`Layout`] derives from `(r, j)`. That one grid covers plain elementwise chains
//! (a single row), a per-channel bias or mask over `[N, C, H, W]` (`inner = H·W`, the channel
//! is `r mod C`), and one over the columns of a `[N, C]` matrix (`inner = C`).

use netc_ir::{BinaryFn, UnaryFn};
use std::fmt;

/// How an operand's elements map onto the kernel's grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// One value per element: index `r·inner + j`.
    Full,
    /// One value per column: index `j`.
    Col,
    /// One value per row, repeating every `period` rows: index `r mod period`.
    Row { period: usize },
    /// One value for everything: index 0.
    Scalar,
}

impl Layout {
    /// The index of element `(r, j)`.
    pub fn index(self, r: usize, j: usize, inner: usize) -> usize {
        match self {
            Layout::Full => r * inner + j,
            Layout::Col => j,
            Layout::Row { period } => r % period,
            Layout::Scalar => 0,
        }
    }
}

/// An index into [`Kernel::nodes`].
pub type NodeId = usize;

/// One operation of a kernel; arguments are earlier nodes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Node {
    /// Operand `i`, read in its layout.
    Operand(usize),
    Const(f32),
    Unary(UnaryFn, NodeId),
    Binary(BinaryFn, NodeId, NodeId),
    Add(NodeId, NodeId),
    Sub(NodeId, NodeId),
    Mul(NodeId, NodeId),
    /// `a` where `mask` is non-zero (NaN counts as non-zero), else `b`.
    Select {
        mask: NodeId,
        a: NodeId,
        b: NodeId,
    },
}

impl Node {
    /// The nodes this one reads.
    pub fn args(&self) -> impl Iterator<Item = NodeId> {
        let (list, n) = match *self {
            Node::Operand(_) | Node::Const(_) => ([0; 3], 0),
            Node::Unary(_, a) => ([a, 0, 0], 1),
            Node::Add(a, b) | Node::Sub(a, b) | Node::Mul(a, b) | Node::Binary(_, a, b) => ([a, b, 0], 2),
            Node::Select { mask, a, b } => ([mask, a, b], 3),
        };
        list.into_iter().take(n)
    }
}

/// A fused elementwise kernel. Its compiled form takes the operands' base pointers followed
/// by the outputs', in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Kernel {
    pub operands: Vec<Layout>,
    /// In dependency order: every node's arguments come before it.
    pub nodes: Vec<Node>,
    /// The nodes stored, each to its own buffer of `rows·inner` elements. An output buffer may
    /// be an operand's `Full` buffer too (an in-place update): every element is read before it
    /// is written.
    pub outputs: Vec<NodeId>,
}

/// Why a kernel description is malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidKernel(pub String);

impl fmt::Display for InvalidKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid kernel: {}", self.0)
    }
}

impl std::error::Error for InvalidKernel {}

impl Kernel {
    /// Appends a node and returns its id.
    pub fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Appends an operand and returns the node reading it.
    pub fn operand(&mut self, layout: Layout) -> NodeId {
        self.operands.push(layout);
        self.push(Node::Operand(self.operands.len() - 1))
    }

    /// Checks that arguments precede their users and every index is in range.
    pub fn validate(&self) -> Result<(), InvalidKernel> {
        let err = |m: String| Err(InvalidKernel(m));
        if self.outputs.is_empty() {
            return err("no outputs".into());
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if let Some(a) = node.args().find(|&a| a >= i) {
                return err(format!("node {i} reads node {a}, which does not come before it"));
            }
            match *node {
                Node::Operand(o) if o >= self.operands.len() => return err(format!("node {i} reads no operand {o}")),
                _ => {}
            }
        }
        if let Some(layout) = self.operands.iter().find(|l| matches!(l, Layout::Row { period: 0 })) {
            return err(format!("operand layout {layout:?} has no rows"));
        }
        match self.outputs.iter().find(|&&o| o >= self.nodes.len()) {
            Some(o) => err(format!("output node {o} does not exist")),
            None => Ok(()),
        }
    }

    /// Computes the kernel element by element in `f32` (the same operations the compiled code
    /// performs, without FMA contraction), returning every node's values: the cross-check for
    /// compiled code, and the way a non-finite check sees the values a fused kernel keeps in
    /// registers.
    pub fn evaluate(&self, operands: &[&[f32]], rows: usize, inner: usize) -> Vec<Vec<f32>> {
        let total = rows * inner;
        let mut values: Vec<Vec<f32>> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let v: Vec<f32> = (0..total)
                .map(|e| {
                    let (r, j) = (e / inner, e % inner);
                    let at = |n: NodeId| values[n][e];
                    match *node {
                        Node::Operand(o) => operands[o][self.operands[o].index(r, j, inner)],
                        Node::Const(c) => c,
                        Node::Unary(f, a) => apply(f, at(a)),
                        Node::Binary(f, a, b) => apply_binary(f, at(a), at(b)),
                        Node::Add(a, b) => at(a) + at(b),
                        Node::Sub(a, b) => at(a) - at(b),
                        Node::Mul(a, b) => at(a) * at(b),
                        Node::Select { mask, a, b } => {
                            if at(mask) != 0.0 {
                                at(a)
                            } else {
                                at(b)
                            }
                        }
                    }
                })
                .collect();
            values.push(v);
        }
        values
    }
}

/// `f(x)` as compiled code computes it: comparisons, products, square roots and reciprocals
/// in `f32` (correctly rounded, so equal to the `f64` definition rounded once), the
/// transcendental functions through their `f64` definition (rounded once).
pub fn apply(f: UnaryFn, x: f32) -> f32 {
    match f {
        UnaryFn::Sqrt => x.sqrt(),
        UnaryFn::Abs => x.abs(),
        UnaryFn::Sign => select(x > 0.0, 1.0, select(x < 0.0, -1.0, 0.0)),
        UnaryFn::LogDeriv => 1.0 / x,
        UnaryFn::Relu => select(x > 0.0, x, 0.0),
        UnaryFn::ReluDeriv => select(x > 0.0, 1.0, 0.0),
        UnaryFn::Scale { c } => x * c as f32,
        UnaryFn::Equal { value } => select(x == value as f32, 1.0, 0.0),
        // The rest are computed through their `f64` definition by a call from compiled code.
        _ => f.eval(f64::from(x)) as f32,
    }
}

/// `f(a, b)` as compiled code computes it. Its `f64` definition rounded once is exact for every
/// function: `min`, `max` and the comparisons pick or compare values, and `f64` division rounded
/// to `f32` is `f32` division (53 bits are more than twice 24 plus 2, so the double rounding is
/// innocuous); `pow` is computed in `f64` by a call, as the definition.
pub fn apply_binary(f: BinaryFn, a: f32, b: f32) -> f32 {
    f.eval(f64::from(a), f64::from(b)) as f32
}

fn select(c: bool, a: f32, b: f32) -> f32 {
    if c {
        a
    } else {
        b
    }
}

impl fmt::Display for Kernel {
    /// One line per node, e.g. `%3 = select %0, %2, %1`, then the stored nodes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, node) in self.nodes.iter().enumerate() {
            write!(f, "  %{i} = ")?;
            match *node {
                Node::Operand(o) => match self.operands[o] {
                    Layout::Full => write!(f, "operand {o}")?,
                    Layout::Col => write!(f, "operand {o} per column")?,
                    Layout::Row { period } => write!(f, "operand {o} per row mod {period}")?,
                    Layout::Scalar => write!(f, "operand {o} scalar")?,
                },
                Node::Const(c) => write!(f, "const {c}")?,
                Node::Unary(u, a) => write!(f, "{} %{a}{}", u.name(), netc_ir::Op::Unary(u).attributes())?,
                Node::Binary(g, a, b) => write!(f, "{} %{a}, %{b}", g.name())?,
                Node::Add(a, b) => write!(f, "add %{a}, %{b}")?,
                Node::Sub(a, b) => write!(f, "sub %{a}, %{b}")?,
                Node::Mul(a, b) => write!(f, "mul %{a}, %{b}")?,
                Node::Select { mask, a, b } => write!(f, "select %{mask}, %{a}, %{b}")?,
            }
            writeln!(f)?;
        }
        let outs: Vec<String> = self.outputs.iter().map(|o| format!("%{o}")).collect();
        writeln!(f, "  store {}", outs.join(", "))
    }
}
