//! Programs: an arena of SSA instructions in topological order, each with its shape and the
//! source layer it came from, and the named outputs.

use crate::op::{Input, InputKind, Op, ParamInfo};
use crate::rules::ShapeError;
use crate::shape::Shape;
use crate::span::Span;
use std::fmt;

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
#[derive(Clone, Debug, PartialEq, Eq)]
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
        }
    }

    /// Registers a source and attributes the following instructions to it.
    pub fn set_source(&mut self, source: Source) -> SourceId {
        let id = match self.program.sources.iter().position(|s| *s == source) {
            Some(i) => SourceId(i),
            None => {
                self.program.sources.push(source);
                SourceId(self.program.sources.len() - 1)
            }
        };
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
        if let Some(i) = self.program.insts.iter().position(|inst| inst.op == op && inst.args == args) {
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
        Ok(ValueId(self.program.insts.len() - 1))
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
        Builder { program, source: None }
    }
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
