//! From an evaluation-mode IR program to an ONNX graph: the preprocessing nodes, then every
//! instruction the logits depend on as one or a few ONNX nodes.

use crate::graph::{cast_to, extent, int, ints, value_info, Graph};
use crate::onnx::{tensor_proto::DataType, GraphProto};
use crate::{ExportError, Preprocess};
use netc_ir::{
    BinaryFn, Conv, Dim, InputKind, Inst, Mode, Op, OutputKind, PoolKind, Program, Shape, Tensor, UnaryFn, ValueId,
};
use std::collections::HashMap;

/// The scope of the preprocessing nodes and initializers.
const PREPROCESS: &str = "preprocess";

pub fn graph(
    program: &Program,
    params: &[(String, Tensor)],
    preprocess: &[Preprocess],
) -> Result<GraphProto, ExportError> {
    if program.mode() != Mode::Eval {
        return Err(unsourced("the program is lowered for training; export the evaluation-mode program".into()));
    }
    // Gradient markers pass their first operand on; without them the logits need no derivative.
    let program = program.clone().without_gradient_markers();
    let logits = program
        .outputs()
        .iter()
        .find(|o| o.kind == OutputKind::Logits)
        .ok_or_else(|| unsourced("the program has no logits output".into()))?;
    let (data, input) = program
        .inputs()
        .find(|(_, input)| input.kind == InputKind::Data)
        .ok_or_else(|| unsourced("the program has no data input".into()))?;
    let mut t = Translator {
        program: &program,
        params: params.iter().map(|(name, tensor)| (name.as_str(), tensor)).collect(),
        g: Graph::default(),
        values: vec![None; program.insts().len()],
        bias_of: HashMap::new(),
        input: input.name.clone(),
    };
    t.g.reserve(&input.name);
    t.g.reserve(&logits.name);
    for (name, _) in params {
        t.g.reserve(name);
    }
    let preprocessed = t.preprocess(preprocess, &input.shape)?;
    t.values[data.0] = Some(preprocessed);
    let live = live(&program, logits.value);
    t.fuse_biases(&live);
    for (i, inst) in program.insts().iter().enumerate() {
        // The data input is translated already, and the labels and the step counter are not
        // (what reads them is an error); a product with a fused bias is translated with its
        // `bias_add`.
        let other_input = matches!(&inst.op, Op::Input(input) if !matches!(input.kind, InputKind::Param(_)));
        if live[i] && !other_input && !t.bias_of.contains_key(&ValueId(i)) {
            let value = t
                .inst(ValueId(i), inst)
                .map_err(|message| ExportError { source: program.source_of(ValueId(i)).cloned(), message })?;
            t.values[i] = Some(value);
        }
    }
    let out = t.value(logits.value).map_err(unsourced)?;
    let logits_shape = &program.insts()[logits.value.0].shape;
    // The graph's output is called `logits`: the value of the node computing it is renamed
    // (where nodes read it too), or, when the logits are the graph's input or an initializer,
    // an Identity gives them the name.
    if t.g.nodes.iter().any(|n| n.output.contains(&out)) {
        for name in t.g.nodes.iter_mut().flat_map(|n| n.output.iter_mut().chain(n.input.iter_mut())) {
            if *name == out {
                name.clone_from(&logits.name);
            }
        }
    } else {
        t.g.push_node(format!("{}/Identity", logits.name), "Identity", &[&out], Vec::new(), logits.name.clone());
    }
    Ok(GraphProto {
        name: program.name().into(),
        node: t.g.nodes,
        initializer: t.g.initializers,
        input: vec![value_info(&input.name, &input.shape)],
        output: vec![value_info(&logits.name, logits_shape)],
        ..Default::default()
    })
}

fn unsourced(message: String) -> ExportError {
    ExportError { source: None, message }
}

/// Which instructions `output` depends on.
fn live(program: &Program, output: ValueId) -> Vec<bool> {
    let insts = program.insts();
    let mut live = vec![false; insts.len()];
    live[output.0] = true;
    for i in (0..insts.len()).rev() {
        if live[i] {
            insts[i].args.iter().for_each(|a| live[a.0] = true);
        }
    }
    live
}

struct Translator<'a> {
    program: &'a Program,
    params: HashMap<&'a str, &'a Tensor>,
    g: Graph,
    /// The ONNX value of each translated instruction.
    values: Vec<Option<String>>,
    /// A convolution or matrix product whose only use adds a bias: the bias, which its ONNX
    /// node (`Conv`, `Gemm`) adds itself.
    bias_of: HashMap<ValueId, ValueId>,
    /// The graph's input, which runtime shapes read the batch size from.
    input: String,
}

impl Translator<'_> {
    /// The ONNX value of an operand.
    fn value(&self, id: ValueId) -> Result<String, String> {
        self.values.get(id.0).cloned().flatten().ok_or_else(|| self.unavailable(id))
    }

    /// Why an operand has no ONNX value: an input that only training has, or a bug.
    fn unavailable(&self, id: ValueId) -> String {
        match self.program.insts().get(id.0).map(|inst| &inst.op) {
            Some(Op::Input(input)) => match input.kind {
                InputKind::Labels => "reads the labels, which an exported model has not".into(),
                InputKind::Step => "reads the training-step counter, which an exported model has not".into(),
                _ => format!("the program has a second data input, `{}`", input.name),
            },
            _ => format!("internal error: {id} is used before it is translated"),
        }
    }

    /// Marks every convolution and matrix product whose only use is a `bias_add` (of a bias
    /// computed before it) to take the bias into its own node.
    fn fuse_biases(&mut self, live: &[bool]) {
        let insts = self.program.insts();
        let mut uses = vec![0usize; insts.len()];
        for (inst, _) in insts.iter().zip(live).filter(|(_, &l)| l) {
            inst.args.iter().for_each(|a| uses[a.0] += 1);
        }
        self.program.outputs().iter().for_each(|o| uses[o.value.0] += 1);
        for (inst, _) in insts.iter().zip(live).filter(|(_, &l)| l) {
            if let (Op::BiasAdd, [product, bias]) = (&inst.op, inst.args.as_slice()) {
                let fusable = matches!(insts[product.0].op, Op::Conv2d(_) | Op::MatMul { .. });
                if fusable && uses[product.0] == 1 && bias < product {
                    self.bias_of.insert(*product, *bias);
                }
            }
        }
    }

    /// The nodes of the preprocessing steps, from the graph's input of `shape`; returns the
    /// value the program's data input stands for.
    fn preprocess(&mut self, steps: &[Preprocess], shape: &Shape) -> Result<String, ExportError> {
        let example: Vec<usize> = shape.dims().iter().skip(1).filter_map(|d| d.fixed()).collect();
        let len: usize = example.iter().product();
        let mut x = self.input.clone();
        // Contrast normalisation and whitening see each example as one row of `D` values.
        let mut flat = false;
        let g = &mut self.g;
        for step in steps {
            x = match step {
                Preprocess::Divide(divisor) => {
                    let divisor = g.scalar(*divisor);
                    g.node(PREPROCESS, "Div", &[&x, &divisor], Vec::new())
                }
                Preprocess::SubtractMean(mean) => {
                    if mean.len() != len {
                        return Err(unsourced(format!(
                            "the mean image has {} values, but the net's input has {len}",
                            mean.len()
                        )));
                    }
                    let dims = if flat { vec![len] } else { example.clone() };
                    let mean = g.floats(&format!("{PREPROCESS}.mean_image"), &dims, mean.data());
                    g.node(PREPROCESS, "Sub", &[&x, &mean], Vec::new())
                }
                Preprocess::ContrastNorm { mean_norm, min_norm } => {
                    if !flat {
                        x = g.node(PREPROCESS, "Flatten", &[&x], vec![int("axis", 1)]);
                        flat = true;
                    }
                    let mean = g.node(PREPROCESS, "ReduceMean", &[&x], vec![ints("axes", vec![1]), int("keepdims", 1)]);
                    let centred = g.node(PREPROCESS, "Sub", &[&x, &mean], Vec::new());
                    let squares = g.node(PREPROCESS, "Mul", &[&centred, &centred], Vec::new());
                    let axis = g.ints(&[1]);
                    let sum = g.node(PREPROCESS, "ReduceSum", &[&squares, &axis], vec![int("keepdims", 1)]);
                    let divisor = g.scalar(len.saturating_sub(1).max(1) as f32);
                    let variance = g.node(PREPROCESS, "Div", &[&sum, &divisor], Vec::new());
                    let std = g.node(PREPROCESS, "Sqrt", &[&variance], Vec::new());
                    let min_norm = g.scalar(*min_norm);
                    let floored = g.node(PREPROCESS, "Max", &[&std, &min_norm], Vec::new());
                    let mean_norm = g.scalar(*mean_norm);
                    let factor = g.node(PREPROCESS, "Div", &[&mean_norm, &floored], Vec::new());
                    g.node(PREPROCESS, "Mul", &[&centred, &factor], Vec::new())
                }
                Preprocess::Whiten(w) => {
                    if w.len() != len * len {
                        return Err(unsourced(format!(
                            "the whitening matrix has {} values, but the net's input needs {len}×{len}",
                            w.len()
                        )));
                    }
                    if !flat {
                        x = g.node(PREPROCESS, "Flatten", &[&x], vec![int("axis", 1)]);
                        flat = true;
                    }
                    let w = g.floats(&format!("{PREPROCESS}.whitening"), &[len, len], w.data());
                    g.node(PREPROCESS, "Gemm", &[&x, &w], vec![int("transB", 1)])
                }
            };
        }
        if flat {
            let back = g.reshape_target(PREPROCESS, shape, &self.input);
            x = g.node(PREPROCESS, "Reshape", &[&x, &back], Vec::new());
        }
        Ok(x)
    }

    /// A convolution (`Conv`) or matrix product (`Gemm`), adding `bias` if given.
    fn product(&mut self, scope: &str, inst: &Inst, bias: Option<&str>) -> Result<String, String> {
        let operands: Vec<String> = inst.args.iter().map(|&a| self.value(a)).collect::<Result<_, _>>()?;
        let mut inputs: Vec<&str> = operands.iter().map(String::as_str).collect();
        inputs.extend(bias);
        let attributes = match &inst.op {
            Op::Conv2d(Conv { stride, pad, groups }) => {
                let kernel = &self.program.insts()[inst.args[1].0].shape;
                vec![
                    ints("kernel_shape", kernel.dims().iter().skip(2).map(|d| d.fixed().map_or(1, extent)).collect()),
                    ints("strides", vec![extent(*stride); 2]),
                    ints("pads", vec![extent(*pad); 4]),
                    int("group", extent(*groups)),
                ]
            }
            Op::MatMul { trans_a, trans_b } => {
                vec![int("transA", i64::from(*trans_a)), int("transB", i64::from(*trans_b))]
            }
            _ => return Err(format!("internal error: `{}` is not a product", inst.op.name())),
        };
        let op_type = if matches!(inst.op, Op::Conv2d(_)) { "Conv" } else { "Gemm" };
        Ok(self.g.node(scope, op_type, &inputs, attributes))
    }

    /// The ONNX value of instruction `id`, with the nodes that compute it; an error is a
    /// message, which the caller attributes to the instruction's layer.
    fn inst(&mut self, id: ValueId, inst: &Inst) -> Result<String, String> {
        let program = self.program;
        let scope = program.source_of(id).map_or_else(|| program.name().to_string(), |s| s.name.clone());
        let scope = scope.as_str();
        let fused = match (&inst.op, inst.args.as_slice()) {
            (Op::BiasAdd, [product, bias]) if self.bias_of.get(product) == Some(bias) => Some((*product, *bias)),
            _ => None,
        };
        if let Some((product, bias)) = fused {
            let bias = self.value(bias)?;
            return self.product(scope, &program.insts()[product.0], Some(&bias));
        }
        // Operands are looked up where an op reads them, so an op that cannot be exported says
        // so before its operands do.
        let args: Vec<Result<String, String>> = inst.args.iter().map(|&a| self.value(a)).collect();
        let arg = |k: usize| args[k].as_deref().map_err(String::clone);
        let input = self.input.clone();
        let g = &mut self.g;
        Ok(match &inst.op {
            Op::Input(i) => match &i.kind {
                InputKind::Param(_) => {
                    let tensor = self
                        .params
                        .get(i.name.as_str())
                        .ok_or_else(|| format!("no value for the parameter `{}`", i.name))?;
                    let dims = inst.shape.as_fixed().unwrap_or_default();
                    if tensor.shape() != dims {
                        return Err(format!(
                            "the parameter `{}` has shape {:?}, but the net's is {dims:?}",
                            i.name,
                            tensor.shape()
                        ));
                    }
                    g.parameter(&i.name, &dims, tensor.data())
                }
                _ => return Err(self.unavailable(id)),
            },
            Op::Const(tensor) => g.floats(&format!("{scope}.constant"), tensor.shape(), tensor.data()),
            Op::Fill { value, shape } => {
                let value = g.scalar(*value);
                let shape = g.shape(scope, shape, &input);
                g.node(scope, "Expand", &[&value, &shape], Vec::new())
            }
            Op::RandomBernoulli { .. } | Op::RandomParts { .. } | Op::RandomNormal { .. } => {
                return Err(format!(
                    "`{}` draws random numbers, which an exported model cannot; export the evaluation-mode program",
                    inst.op.name()
                ))
            }
            Op::Unary(f) => unary(g, scope, *f, arg(0)?)?,
            Op::Add => g.node(scope, "Add", &[arg(0)?, arg(1)?], Vec::new()),
            Op::Sub => g.node(scope, "Sub", &[arg(0)?, arg(1)?], Vec::new()),
            Op::Mul => g.node(scope, "Mul", &[arg(0)?, arg(1)?], Vec::new()),
            Op::Binary(f) => binary(g, scope, *f, arg(0)?, arg(1)?),
            Op::Select => {
                let mask = g.node(scope, "Cast", &[arg(0)?], vec![cast_to(DataType::Bool)]);
                g.node(scope, "Where", &[&mask, arg(1)?, arg(2)?], Vec::new())
            }
            Op::Broadcast { shape, axes } => {
                // New axes of extent 1 where the operand has none, then every new axis expanded
                // (an axis of the operand keeps its extent: 1 in the target shape).
                let new: Vec<i64> = (0..shape.rank()).filter(|a| !axes.contains(a)).map(extent).collect();
                let mut x = arg(0)?.to_string();
                if !new.is_empty() {
                    let new = g.ints(&new);
                    x = g.node(scope, "Unsqueeze", &[&x, &new], Vec::new());
                }
                let mut target = shape.clone();
                axes.iter().for_each(|&a| target.0[a] = Dim::Fixed(1));
                let target = g.shape(scope, &target, &input);
                g.node(scope, "Expand", &[&x, &target], Vec::new())
            }
            Op::Reshape { shape } => {
                let target = g.reshape_target(scope, shape, &input);
                g.node(scope, "Reshape", &[arg(0)?, &target], Vec::new())
            }
            Op::Concat { axis } => {
                let parts: Vec<&str> =
                    args.iter().map(|a| a.as_deref().map_err(String::clone)).collect::<Result<_, _>>()?;
                g.node(scope, "Concat", &parts, vec![int("axis", extent(*axis))])
            }
            Op::Slice { axis, start, len } => {
                let (starts, ends, axes) =
                    (g.ints(&[extent(*start)]), g.ints(&[extent(start + len)]), g.ints(&[extent(*axis)]));
                g.node(scope, "Slice", &[arg(0)?, &starts, &ends, &axes], Vec::new())
            }
            Op::ReduceSum { axes } => {
                let axes = g.ints(&axes.iter().map(|&a| extent(a)).collect::<Vec<_>>());
                g.node(scope, "ReduceSum", &[arg(0)?, &axes], vec![int("keepdims", 0)])
            }
            Op::ReduceMax { axis } => {
                g.node(scope, "ReduceMax", &[arg(0)?], vec![ints("axes", vec![extent(*axis)]), int("keepdims", 0)])
            }
            Op::MatMul { .. } | Op::Conv2d(_) => self.product(scope, inst, None)?,
            Op::BiasAdd => {
                // `b[c]` along axis 1: `b` as `[C, 1, …]` broadcasts over the rest.
                let mut dims = vec![-1];
                dims.resize(inst.shape.rank().saturating_sub(1).max(1), 1);
                let dims = g.ints(&dims);
                let b = g.node(scope, "Reshape", &[arg(1)?, &dims], Vec::new());
                g.node(scope, "Add", &[arg(0)?, &b], Vec::new())
            }
            Op::Pool { kind, window } => {
                let mut attributes = vec![
                    ints("kernel_shape", window.kernel.iter().map(|&k| extent(k)).collect()),
                    ints("strides", vec![extent(window.stride); 2]),
                    // ONNX orders pads as the starts of both axes, then their ends.
                    ints(
                        "pads",
                        [window.pad.top, window.pad.left, window.pad.bottom, window.pad.right].map(extent).to_vec(),
                    ),
                ];
                match kind {
                    PoolKind::Max => g.node(scope, "MaxPool", &[arg(0)?], attributes),
                    PoolKind::Avg => {
                        // netc counts padding as zeros and divides by the whole window.
                        attributes.push(int("count_include_pad", 1));
                        g.node(scope, "AveragePool", &[arg(0)?], attributes)
                    }
                }
            }
            Op::SoftmaxXent => return Err("the loss is not exported: the model outputs the logits".into()),
            Op::StopGradient
            | Op::CustomGrad
            | Op::ReduceMaxBackward { .. }
            | Op::Conv2dBackwardData { .. }
            | Op::Conv2dBackwardFilter { .. }
            | Op::MaxPoolBackward(_)
            | Op::AvgPoolBackward { .. }
            | Op::SoftmaxXentGrad => {
                return Err(format!("`{}` belongs to a backward pass; export takes a forward program", inst.op.name()))
            }
        })
    }
}

/// The nodes of an elementwise function, each computing the formula of [`UnaryFn::eval`].
fn unary(g: &mut Graph, scope: &str, f: UnaryFn, x: &str) -> Result<String, String> {
    let mut node = |op: &str, inputs: &[&str]| g.node(scope, op, inputs, Vec::new());
    Ok(match f {
        UnaryFn::Relu => node("Relu", &[x]),
        UnaryFn::Sigmoid => node("Sigmoid", &[x]),
        UnaryFn::Tanh => node("Tanh", &[x]),
        UnaryFn::Scale { c: -1.0 } => node("Neg", &[x]),
        UnaryFn::Scale { c } => {
            let c = g.scalar(c as f32);
            g.node(scope, "Mul", &[x, &c], Vec::new())
        }
        UnaryFn::Equal { value } => {
            let value = g.scalar(value as f32);
            let holds = g.node(scope, "Equal", &[x, &value], Vec::new());
            g.node(scope, "Cast", &[&holds], vec![cast_to(DataType::Float)])
        }
        UnaryFn::Exp => node("Exp", &[x]),
        UnaryFn::Log => node("Log", &[x]),
        UnaryFn::Log1p => {
            let one = g.scalar(1.0);
            let sum = g.node(scope, "Add", &[x, &one], Vec::new());
            g.node(scope, "Log", &[&sum], Vec::new())
        }
        UnaryFn::Sqrt => node("Sqrt", &[x]),
        UnaryFn::Abs => node("Abs", &[x]),
        UnaryFn::Sign => node("Sign", &[x]),
        // ln(1 + e^x) = max(x, 0) + ln(1 + e^−|x|): written out, it overflows in no runtime for
        // any x.
        UnaryFn::Softplus => {
            let tail = log1p_exp_neg_abs(g, scope, x);
            let relu = g.node(scope, "Relu", &[x], Vec::new());
            g.node(scope, "Add", &[&relu, &tail], Vec::new())
        }
        UnaryFn::ReluDeriv
        | UnaryFn::SigmoidDeriv
        | UnaryFn::TanhDeriv
        | UnaryFn::LogDeriv
        | UnaryFn::Log1pDeriv
        | UnaryFn::SqrtDeriv => {
            return Err(format!("`{}` belongs to a backward pass; export takes a forward program", f.name()))
        }
    })
}

/// `ln(1 + e^−|x|)`.
fn log1p_exp_neg_abs(g: &mut Graph, scope: &str, x: &str) -> String {
    let abs = g.node(scope, "Abs", &[x], Vec::new());
    let neg = g.node(scope, "Neg", &[&abs], Vec::new());
    let exp = g.node(scope, "Exp", &[&neg], Vec::new());
    let one = g.scalar(1.0);
    let sum = g.node(scope, "Add", &[&exp, &one], Vec::new());
    g.node(scope, "Log", &[&sum], Vec::new())
}

/// The nodes of a function of two operands; comparisons give 1.0 where they hold, else 0.0.
fn binary(g: &mut Graph, scope: &str, f: BinaryFn, a: &str, b: &str) -> String {
    let (op, negate) = match f {
        BinaryFn::Div => return g.node(scope, "Div", &[a, b], Vec::new()),
        BinaryFn::Min => return g.node(scope, "Min", &[a, b], Vec::new()),
        BinaryFn::Max => return g.node(scope, "Max", &[a, b], Vec::new()),
        BinaryFn::Pow => return g.node(scope, "Pow", &[a, b], Vec::new()),
        BinaryFn::Less => ("Less", false),
        BinaryFn::LessEqual => ("LessOrEqual", false),
        BinaryFn::Greater => ("Greater", false),
        BinaryFn::GreaterEqual => ("GreaterOrEqual", false),
        BinaryFn::Equal => ("Equal", false),
        BinaryFn::NotEqual => ("Equal", true),
    };
    let mut holds = g.node(scope, op, &[a, b], Vec::new());
    if negate {
        holds = g.node(scope, "Not", &[&holds], Vec::new());
    }
    g.node(scope, "Cast", &[&holds], vec![cast_to(DataType::Float)])
}
