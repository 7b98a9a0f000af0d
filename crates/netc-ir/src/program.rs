//! Programs: an arena of SSA instructions in topological order, each with its shape and the
//! source layer it came from, and the named outputs.

use crate::op::{Input, InputKind, Op, ParamInfo};
use crate::rules::ShapeError;
use crate::shape::Shape;
use crate::span::Span;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};

/// A value: the result of instruction `.0` of its program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ValueId(pub usize);

impl fmt::Display for ValueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// Where instructions came from: a layer of the net (or its input or loss) and its span, so
/// runtime problems can be reported against the user's line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source {
    /// The layer's name (`conv1`), the input's name, or `loss`.
    pub name: String,
    /// The layer's index in the checked net's layers, if it is a layer.
    pub layer: Option<usize>,
    pub span: Span,
    /// The 1-based line the span starts on, once known ([`Program::with_source_lines`]).
    pub line: Option<usize>,
}

impl Source {
    /// A source whose line is not known yet.
    pub fn new(name: impl Into<String>, layer: Option<usize>, span: Span) -> Source {
        Source { name: name.into(), layer, span, line: None }
    }
}

/// Index into `Program::sources`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceId(pub usize);

/// One instruction: `shape = op(args...)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Inst {
    pub op: Op,
    pub args: Vec<ValueId>,
    pub shape: Shape,
    pub source: Option<SourceId>,
}

/// What an output is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// The scalar loss.
    Loss,
    /// The class scores `[N, classes]` the loss reads.
    Logits,
    /// The gradient of the loss with respect to the parameter of the same name.
    Gradient,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub name: String,
    pub kind: OutputKind,
    pub value: ValueId,
}

/// Whether a program was lowered for training or for evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Dropout and resampled masks draw fresh random numbers per step.
    Train,
    /// Dropout is the identity; resampled mixes use their expectation.
    Eval,
}

/// A program over tensors. Every instruction's operands come before it and its shape follows
/// from its op's shape rule; [`Builder`] is the only way to make one, which keeps that so.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    name: String,
    mode: Mode,
    insts: Vec<Inst>,
    sources: Vec<Source>,
    outputs: Vec<Output>,
}

/// A parameter input of a program.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamRef<'a> {
    pub name: &'a str,
    /// The parameter's shape; it never involves the batch size.
    pub shape: Vec<usize>,
    pub info: &'a ParamInfo,
    pub value: ValueId,
}

impl Program {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn insts(&self) -> &[Inst] {
        &self.insts
    }

    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    pub fn output(&self, name: &str) -> Option<&Output> {
        self.outputs.iter().find(|o| o.name == name)
    }

    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The source layer of a value, if known.
    pub fn source_of(&self, id: ValueId) -> Option<&Source> {
        self.insts.get(id.0).and_then(|i| i.source).and_then(|s| self.sources.get(s.0))
    }

    /// The program's inputs in order.
    pub fn inputs(&self) -> impl Iterator<Item = (ValueId, &Input)> {
        self.insts.iter().enumerate().filter_map(|(i, inst)| match &inst.op {
            Op::Input(input) => Some((ValueId(i), input)),
            _ => None,
        })
    }

    /// The learned parameters in order, named `layer.param`.
    pub fn params(&self) -> Vec<ParamRef<'_>> {
        self.inputs()
            .filter_map(|(value, input)| match &input.kind {
                InputKind::Param(info) => Some(ParamRef {
                    name: &input.name,
                    shape: input.shape.dims().iter().filter_map(|d| d.fixed()).collect(),
                    info,
                    value,
                }),
                _ => None,
            })
            .collect()
    }

    /// Whether the program reads the training-step counter (it has per-step randomness).
    /// The program with every [`Op::StopGradient`] and [`Op::CustomGrad`] replaced by the value
    /// it passes on, and what only they read pruned. The markers matter only to
    /// [`grad`](crate::grad); executors run programs without them, so a marker never costs a
    /// copy or splits a fused kernel.
    pub fn without_gradient_markers(mut self) -> Program {
        let mut passes_on: Vec<ValueId> = (0..self.insts.len()).map(ValueId).collect();
        for i in 0..self.insts.len() {
            let inst = &mut self.insts[i];
            for a in &mut inst.args {
                *a = passes_on[a.0];
            }
            if matches!(inst.op, Op::StopGradient | Op::CustomGrad) {
                passes_on[i] = inst.args[0];
            }
        }
        for o in &mut self.outputs {
            o.value = passes_on[o.value.0];
        }
        prune(self)
    }

    pub fn uses_step(&self) -> bool {
        self.inputs().any(|(_, i)| i.kind == InputKind::Step)
    }

    /// The program with the line of every source computed from `text`, the source the net was
    /// lowered from, so that the text form and runtime errors can name lines.
    pub fn with_source_lines(mut self, text: &str) -> Program {
        // Line starts found once: a net of thousands of layers is one pass over its text.
        let starts: Vec<usize> = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        for source in &mut self.sources {
            let start = source.span.start;
            source.line = (start <= text.len()).then(|| starts.partition_point(|&s| s <= start));
        }
        self
    }
}

/// Builds a program instruction by instruction, checking each against its op's shape rule.
#[derive(Clone, Debug)]
pub struct Builder {
    program: Program,
    source: Option<SourceId>,
    /// The instructions under each [`dedup_key`], so finding an equal earlier instruction does
    /// not scan the program (a net of 50,000 layers pushes hundreds of thousands).
    by_key: HashMap<u64, Vec<usize>>,
    /// Each registered source's id.
    source_ids: HashMap<Source, SourceId>,
}

impl Builder {
    pub fn new(name: &str, mode: Mode) -> Builder {
        Builder {
            program: Program {
                name: name.to_string(),
                mode,
                insts: Vec::new(),
                sources: Vec::new(),
                outputs: Vec::new(),
            },
            source: None,
            by_key: HashMap::new(),
            source_ids: HashMap::new(),
        }
    }

    /// Registers a source and attributes the following instructions to it.
    pub fn set_source(&mut self, source: Source) -> SourceId {
        let next = SourceId(self.program.sources.len());
        let id = *self.source_ids.entry(source.clone()).or_insert(next);
        if id == next {
            self.program.sources.push(source);
        }
        self.source = Some(id);
        id
    }

    /// Attributes the following instructions to an already registered source (or none).
    pub fn use_source(&mut self, source: Option<SourceId>) {
        self.source = source;
    }

    /// Appends `op(args)` and returns its value. Ops are pure, so an instruction equal to an
    /// earlier one is not repeated: its value is returned instead.
    pub fn push(&mut self, op: Op, args: &[ValueId]) -> Result<ValueId, ShapeError> {
        let key = dedup_key(&op, args);
        let same = self.by_key.get(&key).into_iter().flatten();
        if let Some(&i) =
            same.into_iter().find(|&&i| self.program.insts[i].op == op && self.program.insts[i].args == args)
        {
            return Ok(ValueId(i));
        }
        let mut shapes = Vec::with_capacity(args.len());
        for a in args {
            match self.program.insts.get(a.0) {
                Some(inst) => shapes.push(&inst.shape),
                None => {
                    return Err(ShapeError { op: op.name().into(), message: format!("operand {a} is not defined yet") })
                }
            }
        }
        let shape = op.infer(&shapes)?;
        self.program.insts.push(Inst { op, args: args.to_vec(), shape, source: self.source });
        let id = self.program.insts.len() - 1;
        self.by_key.entry(key).or_default().push(id);
        Ok(ValueId(id))
    }

    pub fn shape(&self, id: ValueId) -> Option<&Shape> {
        self.program.insts.get(id.0).map(|i| &i.shape)
    }

    pub fn inst(&self, id: ValueId) -> Option<&Inst> {
        self.program.insts.get(id.0)
    }

    /// Marks `value` as a program output.
    pub fn output(&mut self, name: &str, kind: OutputKind, value: ValueId) -> Result<(), ShapeError> {
        if value.0 >= self.program.insts.len() {
            return Err(ShapeError { op: "return".into(), message: format!("{value} is not defined") });
        }
        self.program.outputs.push(Output { name: name.to_string(), kind, value });
        Ok(())
    }

    /// The program without instructions that no output needs (inputs always stay, so the
    /// program's signature does not depend on what it computes), renumbered densely.
    pub fn finish(self) -> Program {
        prune(self.program)
    }

    /// A builder continuing from an existing program.
    pub fn from_program(program: Program) -> Builder {
        let mut by_key: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, inst) in program.insts.iter().enumerate() {
            by_key.entry(dedup_key(&inst.op, &inst.args)).or_default().push(i);
        }
        let source_ids = program.sources.iter().enumerate().map(|(i, s)| (s.clone(), SourceId(i))).collect();
        Builder { program, source: None, by_key, source_ids }
    }
}

/// A hash that equal instructions share: the op's kind, its operands, and the fields that tell
/// apart the instructions with the same operands there can be many of (inputs, constants and
/// fills read nothing; every random op reads the step counter). The other ops' fields are few
/// per operand and are compared when an instruction is looked up.
fn dedup_key(op: &Op, args: &[ValueId]) -> u64 {
    let mut h = DefaultHasher::new();
    std::mem::discriminant(op).hash(&mut h);
    args.hash(&mut h);
    match op {
        Op::Input(input) => input.name.hash(&mut h),
        Op::Const(tensor) => {
            tensor.shape().hash(&mut h);
            // Equal elements have equal bits, but for the sign of a zero.
            for x in tensor.data() {
                (if *x == 0.0 { 0 } else { x.to_bits() }).hash(&mut h);
            }
        }
        Op::Fill { shape, .. } => shape.hash(&mut h),
        Op::RandomBernoulli { key, .. } | Op::RandomParts { key, .. } => key.stream.hash(&mut h),
        _ => {}
    }
    h.finish()
}

fn prune(program: Program) -> Program {
    let n = program.insts.len();
    let mut live = vec![false; n];
    for o in &program.outputs {
        live[o.value.0] = true;
    }
    for i in (0..n).rev() {
        if live[i] || matches!(program.insts[i].op, Op::Input(_)) {
            live[i] = true;
            for a in &program.insts[i].args {
                live[a.0] = true;
            }
        }
    }
    let mut renumber = vec![ValueId(usize::MAX); n];
    let mut insts = Vec::with_capacity(n);
    for (i, mut inst) in program.insts.into_iter().enumerate() {
        if live[i] {
            for a in &mut inst.args {
                *a = renumber[a.0];
            }
            renumber[i] = ValueId(insts.len());
            insts.push(inst);
        }
    }
    let outputs = program.outputs.into_iter().map(|o| Output { value: renumber[o.value.0], ..o }).collect();
    Program { insts, outputs, ..program }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::UnaryFn;

    #[test]
    fn finish_prunes_dead_values_and_renumbers() {
        let mut b = Builder::new("t", Mode::Eval);
        let x = b
            .push(Op::Input(Input { name: "x".into(), kind: InputKind::Data, shape: Shape::batched(&[3]) }), &[])
            .unwrap();
        let dead = b.push(Op::Unary(UnaryFn::Tanh), &[x]).unwrap();
        b.set_source(Source::new("relu1", Some(0), Span::new(10, 14)));
        let y = b.push(Op::Unary(UnaryFn::Relu), &[x]).unwrap();
        b.output("y", OutputKind::Logits, y).unwrap();
        let _ = dead;
        let p = b.finish();
        assert_eq!(p.insts().len(), 2);
        assert_eq!(p.output("y").map(|o| o.value), Some(ValueId(1)));
        let text = p.with_source_lines("net t {\n input x: [3]\n relu\n}").to_string();
        assert!(text.contains("%1: [N,3] = relu %0"), "{text}");
        assert!(text.contains("# relu1 (line 2)"), "{text}");
        assert!(text.contains("return y = %1"), "{text}");
    }

    #[test]
    fn push_rejects_operands_that_do_not_fit() {
        let mut b = Builder::new("t", Mode::Eval);
        let x = b
            .push(Op::Input(Input { name: "x".into(), kind: InputKind::Data, shape: Shape::batched(&[3]) }), &[])
            .unwrap();
        let w = b.push(Op::Const(crate::Tensor::zeros(vec![3])), &[]).unwrap();
        let err = b.push(Op::Add, &[x, w]).unwrap_err();
        assert_eq!(err.to_string(), "`add`: operand shapes [N,3], [3] do not fit");
        assert!(b.push(Op::Add, &[x, ValueId(7)]).is_err());
    }
}
