//! Lowering a checked [`Net`] to a forward [`Program`] that computes the loss and the logits.
//! The semantics of the layers are documented on [`lower`].

use crate::units::{fixed_units, mixed_parts};
use netc_check::{
    Activation, Layer, Mask, MaskEval, MaskGrad, MaskMode, Net, Node, ParamKind, ParamSpec, PoolKind, UnitExpr, UnitFn,
    UnitOp, UnitUse, UnitValue,
};
use netc_ir::{
    BinaryFn, Builder, Conv, Dim, Input, InputKind, Mode, Op, OutputKind, ParamInfo, ParamInit, ParamRole,
    PoolKind as IrPool, Program, RandomKey, RandomStream, Shape, SignConstraint, Source, Tensor, UnaryFn, ValueId,
    Window, LABELS, LOGITS, LOSS, STEP,
};
use netc_syntax::Span;
use std::collections::HashMap;
use std::fmt;

/// How to lower a net.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LowerOptions {
    pub mode: Mode,
    /// Seeds fixed masks (at lowering) and per-step randomness (at run time).
    pub seed: u64,
}

/// A layer that could not be lowered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LowerError {
    /// The layer's name.
    pub layer: String,
    pub span: Span,
    pub message: String,
}

impl fmt::Display for LowerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot lower `{}`: {}", self.layer, self.message)
    }
}

impl std::error::Error for LowerError {}

/// Lowers `net` to a program with inputs (data, labels, parameters, and the step counter if
/// the program draws per-step random numbers) and outputs `loss` and `logits`.
///
/// Semantics fixed here:
/// * Average pooling counts padding as zeros and divides by the full window `kh·kw`
///   (MatConvNet); max pooling ignores padding.
/// * Dropout in training is inverted dropout, `x · mask / (1 − p)` with a Bernoulli(1 − p)
///   mask keyed by (seed, layer, step, element); in evaluation it is the identity.
/// * Mixed activations (`mixlu`, `mix`) with fixed masks give each part exactly its
///   largest-remainder share of the units ([`rng::part_counts`](netc_ir::rng::part_counts); for
///   `mixlu`, `round(negfrac·units)` NegLUs), chosen from the seed. A unit is a channel of a
///   `[C, ...]` tensor (an element of a flat one), or every element with `per=position`. The
///   mask is a constant of the program, the same in training and evaluation.
/// * Resampled masks choose a fresh exact share of all elements of the batch tensor at every
///   training step (keyed by seed, layer, step), whatever `per` says; in evaluation they use
///   the expectation `Σ fᵢ·actᵢ(x)`, or with `eval=sample` a fresh share per evaluation batch
///   (keyed by seed, layer and the batch's evaluation key, on its own stream).
/// * `grad=relu` gives the NegLU units the ReLU derivative `1[x > 0]`; other parts keep their
///   own derivative.
/// * `minmaxout` takes the max (or, for its `round(minfrac·units)` seeded min units, the min)
///   of `pieces` consecutive channels; the gradient goes to the first selected piece.
/// * `convact` is `dwconv(relu(x), pos) + dwconv(neglu(x), neg)` with 'same' zero padding; a
///   flat input is a column of positions for its 1×1 filters.
/// * `dale` is the identity. Its population ([`fixed_units`](crate::fixed_units)) becomes a
///   [`SignConstraint`] in the [`ParamInfo`] of every weight that reads it (through flatten,
///   dropout and pooling); initialisation and the trainer keep the signs.
pub fn lower(net: &Net, options: LowerOptions) -> Result<Program, LowerError> {
    validate(net)?;
    let mut l = Lowerer {
        net,
        options,
        b: Builder::new(&net.name, options.mode),
        at: (net.input.name.clone(), net.input.span),
        params: Vec::new(),
        nodes: Vec::new(),
        step: None,
        data: ValueId(0),
        labels: ValueId(0),
    };
    l.inputs()?;
    for (i, layer) in net.layers.iter().enumerate() {
        l.at = (layer.name.clone(), layer.span);
        l.b.set_source(Source::new(&layer.name, Some(i), ir_span(layer.span)));
        let y = l.layer(i, layer)?;
        let want = Shape::batched(&layer.out_shape);
        if l.shape(y)? != want {
            return Err(l.error(format!("lowered to shape {}, but the checker says {want}", l.shape(y)?)));
        }
        l.nodes.push(y);
    }
    l.loss()
}

/// Every layer reads earlier nodes only, so lowering can index without panicking.
fn validate(net: &Net) -> Result<(), LowerError> {
    for (i, layer) in net.layers.iter().enumerate() {
        let ok = !layer.inputs.is_empty()
            && layer.inputs.iter().all(|n| matches!(n, Node::Input) || matches!(n, Node::Layer(j) if *j < i));
        if !ok {
            return Err(LowerError {
                layer: layer.name.clone(),
                span: layer.span,
                message: "reads a layer that does not come before it".into(),
            });
        }
    }
    if matches!(net.loss.input, Node::Layer(j) if j >= net.layers.len()) {
        return Err(LowerError {
            layer: "loss".into(),
            span: net.loss.span,
            message: "reads a layer that does not exist".into(),
        });
    }
    Ok(())
}

struct Lowerer<'a> {
    net: &'a Net,
    options: LowerOptions,
    b: Builder,
    /// The layer being lowered, for errors.
    at: (String, Span),
    /// Each layer's parameters, by layer index.
    params: Vec<Vec<ValueId>>,
    nodes: Vec<ValueId>,
    step: Option<ValueId>,
    data: ValueId,
    labels: ValueId,
}

impl Lowerer<'_> {
    fn error(&self, message: String) -> LowerError {
        LowerError { layer: self.at.0.clone(), span: self.at.1, message }
    }

    fn push(&mut self, op: Op, args: &[ValueId]) -> Result<ValueId, LowerError> {
        self.b.push(op, args).map_err(|e| LowerError {
            layer: self.at.0.clone(),
            span: self.at.1,
            message: format!("internal error: {e}"),
        })
    }

    fn shape(&self, v: ValueId) -> Result<Shape, LowerError> {
        self.b.shape(v).cloned().ok_or_else(|| self.error(format!("internal error: {v} is undefined")))
    }

    /// The per-example extents of a `[N, ...]` value.
    fn example_dims(&self, v: ValueId) -> Result<Vec<usize>, LowerError> {
        let shape = self.shape(v)?;
        match shape.dims().split_first() {
            Some((Dim::Batch, rest)) => rest.iter().map(|d| d.fixed()).collect::<Option<Vec<_>>>(),
            _ => None,
        }
        .ok_or_else(|| self.error(format!("internal error: {shape} is not a batch of examples")))
    }

    fn node(&self, node: Node) -> ValueId {
        match node {
            Node::Input => self.data,
            // `validate` guarantees the layer was lowered before.
            Node::Layer(i) => self.nodes[i],
        }
    }

    fn input(&mut self, name: &str, kind: InputKind, shape: Shape) -> Result<ValueId, LowerError> {
        self.push(Op::Input(Input { name: name.to_string(), kind, shape }), &[])
    }

    fn inputs(&mut self) -> Result<(), LowerError> {
        let net = self.net;
        self.b.set_source(Source::new(&net.input.name, None, ir_span(net.input.span)));
        self.data = self.input(&net.input.name, InputKind::Data, Shape::batched(&net.input.shape))?;
        self.b.set_source(Source::new(LOSS, None, ir_span(net.loss.span)));
        self.labels = self.input(LABELS, InputKind::Labels, Shape(vec![Dim::Batch]))?;
        for (i, layer) in net.layers.iter().enumerate() {
            self.at = (layer.name.clone(), layer.span);
            self.b.set_source(Source::new(&layer.name, Some(i), ir_span(layer.span)));
            let mut values = Vec::new();
            for spec in layer.parameters(net.in_shape(layer)) {
                let info = param_info(net, i, &spec, self.options.seed);
                values.push(self.input(
                    &format!("{}.{}", layer.name, spec.name),
                    InputKind::Param(info),
                    Shape::fixed(&spec.shape),
                )?);
            }
            self.params.push(values);
        }
        let keyed = match self.options.mode {
            Mode::Train => net.layers.iter().any(draws_per_step),
            Mode::Eval => net.layers.iter().any(samples_in_evaluation),
        };
        if keyed {
            self.b.use_source(None);
            self.step = Some(self.input(STEP, InputKind::Step, Shape::scalar())?);
        }
        Ok(())
    }

    fn param(&self, layer: usize, k: usize) -> Result<ValueId, LowerError> {
        self.params
            .get(layer)
            .and_then(|p| p.get(k))
            .copied()
            .ok_or_else(|| self.error("internal error: missing parameter".into()))
    }

    /// The parameter of layer `layer` whose spec is called `name`.
    fn param_named(&self, layer: usize, name: &str) -> Result<ValueId, LowerError> {
        let specs = self.net.layers[layer].parameters(self.net.in_shape(&self.net.layers[layer]));
        let k = specs
            .iter()
            .position(|spec| spec.name == name)
            .ok_or_else(|| self.error(format!("internal error: no parameter `{name}`")))?;
        self.param(layer, k)
    }

    fn step(&self) -> Result<ValueId, LowerError> {
        self.step.ok_or_else(|| self.error("internal error: no step input".into()))
    }

    fn unary(&mut self, f: UnaryFn, x: ValueId) -> Result<ValueId, LowerError> {
        self.push(Op::Unary(f), &[x])
    }

    fn reshape(&mut self, x: ValueId, shape: Shape) -> Result<ValueId, LowerError> {
        if self.shape(x)? == shape {
            return Ok(x);
        }
        self.push(Op::Reshape { shape }, &[x])
    }

    fn layer(&mut self, index: usize, layer: &Layer) -> Result<ValueId, LowerError> {
        let x = self.node(layer.inputs[0]);
        let dims = self.example_dims(x)?;
        match &layer.op {
            netc_check::Op::Conv { stride, pad, bias, .. } => {
                let w = self.param(index, 0)?;
                let y = self.push(Op::Conv2d(Conv { stride: *stride, pad: *pad, groups: 1 }), &[x, w])?;
                if *bias {
                    let b = self.param(index, 1)?;
                    return self.push(Op::BiasAdd, &[y, b]);
                }
                Ok(y)
            }
            netc_check::Op::Pool { kind, kernel, stride, pad } => {
                let kind = if *kind == PoolKind::Max { IrPool::Max } else { IrPool::Avg };
                let [top, bottom, left, right] = *pad;
                let pad = netc_ir::Pad { top, bottom, left, right };
                self.push(Op::Pool { kind, window: Window { kernel: *kernel, stride: *stride, pad } }, &[x])
            }
            netc_check::Op::Dense { bias, .. } => {
                let flat = self.reshape(x, Shape::batched(&[dims.iter().product()]))?;
                let w = self.param(index, 0)?;
                let y = self.push(Op::MatMul { trans_a: false, trans_b: true }, &[flat, w])?;
                if *bias {
                    let b = self.param(index, 1)?;
                    return self.push(Op::BiasAdd, &[y, b]);
                }
                Ok(y)
            }
            netc_check::Op::Flatten => self.reshape(x, Shape::batched(&[dims.iter().product()])),
            netc_check::Op::Dropout { p } => {
                if self.options.mode == Mode::Eval || *p <= 0.0 {
                    return Ok(x);
                }
                let key = RandomKey { seed: self.options.seed, stream: RandomStream::Dropout(layer.name.clone()) };
                let step = self.step()?;
                let mask = self.push(Op::RandomBernoulli { keep: 1.0 - p, key, shape: self.shape(x)? }, &[step])?;
                let kept = self.push(Op::Mul, &[x, mask])?;
                self.unary(UnaryFn::Scale { c: 1.0 / (1.0 - p) }, kept)
            }
            netc_check::Op::Activation(a) => self.activation(a, MaskGrad::Exact, x, index),
            netc_check::Op::Unit(unit) => self.user_unit(x, index, unit, &layer.name, ""),
            netc_check::Op::MixLU { mask, .. } | netc_check::Op::Mix { mask, .. } => self.mix(x, index, layer, *mask),
            netc_check::Op::MinMaxout { units, pieces, .. } => self.minmaxout(x, &dims, *units, *pieces, index),
            netc_check::Op::ConvAct { k } => {
                let (pos, neg) = (self.param(index, 0)?, self.param(index, 1)?);
                self.convact(x, index, &dims, *k, [pos, neg])
            }
            // The population's signs live on the weights of the layers that read it.
            netc_check::Op::Dale { .. } => Ok(x),
            netc_check::Op::Add => {
                let mut sum = x;
                for &node in &layer.inputs[1..] {
                    let y = self.node(node);
                    sum = self.push(Op::Add, &[sum, y])?;
                }
                Ok(sum)
            }
            netc_check::Op::Concat => {
                let parts: Vec<ValueId> = layer.inputs.iter().map(|&n| self.node(n)).collect();
                if parts.len() == 1 {
                    return Ok(x);
                }
                self.push(Op::Concat { axis: 1 }, &parts)
            }
        }
    }

    /// A per-unit mix of activations; see the module docs for the semantics.
    fn mix(&mut self, x: ValueId, index: usize, layer: &Layer, mask: Mask) -> Result<ValueId, LowerError> {
        let declared = mixed_parts(&layer.op);
        // The parts that get units, as (activation, fraction, declared index).
        let parts: Vec<(Activation, f64, usize)> = (0..declared.len())
            .filter(|&p| declared[p].1 > 0.0)
            .map(|p| (declared[p].0.clone(), declared[p].1, p))
            .collect();
        let fracs: Vec<f64> = parts.iter().map(|p| p.1).collect();
        let Some((first, _, _)) = parts.first().cloned() else {
            return Err(self.error("the mix has no activation with a positive fraction".into()));
        };
        let act = |l: &mut Self, a: &Activation| l.activation(a, mask.grad, x, index);
        if parts.len() == 1 {
            return act(self, &first);
        }
        let full = self.shape(x)?;
        match (mask.mode, self.options.mode) {
            (MaskMode::Fixed, _) => {
                let choice = fixed_units(self.net, index, self.options.seed)
                    .ok_or_else(|| self.error("internal error: no fixed units".into()))?;
                let axes: Vec<usize> = (1..=choice.shape.len()).collect();
                let mut y = None;
                for (f, _, p) in parts.iter().filter(|part| choice.part_of.contains(&part.2)) {
                    let p = *p;
                    let act = act(self, f)?;
                    y = Some(match y {
                        None => act,
                        Some(rest) => {
                            let ones = choice.part_of.iter().map(|&q| f32::from(u8::from(q == p))).collect();
                            let tensor = Tensor::new(choice.shape.clone(), ones)
                                .map_err(|e| self.error(format!("internal error: {e}")))?;
                            let m = self.push(Op::Const(tensor), &[])?;
                            let m = self.push(Op::Broadcast { shape: full.clone(), axes: axes.clone() }, &[m])?;
                            self.push(Op::Select, &[m, act, rest])?
                        }
                    });
                }
                y.ok_or_else(|| self.error("internal error: no units assigned".into()))
            }
            (MaskMode::Resample, mode) if mode == Mode::Train || mask.eval == MaskEval::Sample => {
                let step = self.step()?;
                let name = layer.name.clone();
                let stream = if mode == Mode::Train { RandomStream::Mask(name) } else { RandomStream::EvalMask(name) };
                let key = RandomKey { seed: self.options.seed, stream };
                let index = self.push(Op::RandomParts { fracs: fracs.clone(), key, shape: full }, &[step])?;
                let mut y = act(self, &first)?;
                for (p, (f, _, _)) in parts.iter().enumerate().skip(1) {
                    let act = act(self, f)?;
                    // With two parts the index is the mask itself.
                    let m =
                        if parts.len() == 2 { index } else { self.unary(UnaryFn::Equal { value: p as f64 }, index)? };
                    y = self.push(Op::Select, &[m, act, y])?;
                }
                Ok(y)
            }
            (MaskMode::Resample, _) => {
                let mut y: Option<ValueId> = None;
                for (f, frac, _) in &parts {
                    let frac = *frac;
                    let act = act(self, f)?;
                    let term = self.unary(UnaryFn::Scale { c: frac }, act)?;
                    y = Some(match y {
                        None => term,
                        Some(sum) => self.push(Op::Add, &[sum, term])?,
                    });
                }
                y.ok_or_else(|| self.error("internal error: empty mix".into()))
            }
        }
    }

    /// One activation of a layer or of a part of a `mix`.
    fn activation(&mut self, a: &Activation, grad: MaskGrad, x: ValueId, index: usize) -> Result<ValueId, LowerError> {
        let layer = &self.net.layers[index].name;
        match a {
            Activation::User(unit) => {
                // A mix's unit names its parameters and noise after itself: `mix1.prelu.alpha`.
                let prefix = format!("{}.", unit.def.name);
                let stream = format!("{layer}.{}", unit.def.name);
                self.user_unit(x, index, unit, &stream, &prefix)
            }
            Activation::Relu => self.unary(UnaryFn::Relu, x),
            Activation::Sigmoid => self.unary(UnaryFn::Sigmoid, x),
            Activation::Tanh => self.unary(UnaryFn::Tanh, x),
            // The formulas are units of netc's prelude, lowered like a user's.
            Activation::NegLU | Activation::SoftNegLU | Activation::LeakyRelu { .. } => {
                let unit = netc_check::prelude_unit(a, grad)
                    .ok_or_else(|| self.error(format!("internal error: the prelude does not define `{a}`")))?;
                let stream = layer.clone();
                self.user_unit(x, index, &unit, &stream, "")
            }
        }
    }

    /// A user-defined unit applied to `x`: its expression as small IR ops. Learned parameters
    /// are the layer's parameters `PREFIX NAME`, one per channel; with a `grad`, the value is
    /// computed from `x` through a `stop_gradient` and `custom_grad` gives `x` the written
    /// derivative. `noise` draws from the stream `noise:STREAM` (numbered after the first).
    fn user_unit(
        &mut self,
        x: ValueId,
        index: usize,
        unit: &UnitUse,
        stream: &str,
        prefix: &str,
    ) -> Result<ValueId, LowerError> {
        let full = self.shape(x)?;
        let mut params = Vec::with_capacity(unit.values.len());
        for (param, value) in unit.def.params.iter().zip(&unit.values) {
            params.push(match value {
                UnitValue::Const(c) => Val::Const(*c),
                UnitValue::Learned(_) => {
                    let id = self.param_named(index, &format!("{prefix}{}", param.name))?;
                    Val::Tensor(self.push(Op::Broadcast { shape: full.clone(), axes: vec![1] }, &[id])?)
                }
            });
        }
        let mut ctx = UnitContext { full, params, vars: HashMap::new(), stream: stream.to_string() };
        match &unit.def.grad {
            None => {
                ctx.vars.insert(0, x);
                let y = self.unit_expr(&mut ctx, &unit.def.body)?;
                self.materialize(&ctx, y)
            }
            Some(grad) => self.custom_grad(&mut ctx, 0, x, &unit.def.body, grad),
        }
    }

    /// `body` of `x` (bound to variable `var`), whose derivative with respect to `x` is `grad`.
    fn custom_grad(
        &mut self,
        ctx: &mut UnitContext,
        var: usize,
        x: ValueId,
        body: &UnitExpr,
        grad: &UnitExpr,
    ) -> Result<ValueId, LowerError> {
        let stopped = self.push(Op::StopGradient, &[x])?;
        ctx.vars.insert(var, stopped);
        let value = self.unit_expr(ctx, body)?;
        let value = self.materialize(ctx, value)?;
        let derivative = self.unit_expr(ctx, grad)?;
        let derivative = self.materialize(ctx, derivative)?;
        self.push(Op::CustomGrad, &[value, x, derivative])
    }

    fn materialize(&mut self, ctx: &UnitContext, v: Val) -> Result<ValueId, LowerError> {
        match v {
            Val::Tensor(t) => Ok(t),
            Val::Const(c) => self.push(Op::Fill { value: c as f32, shape: ctx.full.clone() }, &[]),
        }
    }

    /// An expression of a unit; constants are folded, and a product with a constant is a
    /// `scale`.
    fn unit_expr(&mut self, ctx: &mut UnitContext, e: &UnitExpr) -> Result<Val, LowerError> {
        Ok(match e {
            UnitExpr::Var(v) => Val::Tensor(
                *ctx.vars.get(v).ok_or_else(|| self.error(format!("internal error: unbound variable {v}")))?,
            ),
            UnitExpr::Const(c) => Val::Const(*c),
            UnitExpr::Param(i) => {
                *ctx.params.get(*i).ok_or_else(|| self.error(format!("internal error: no parameter {i}")))?
            }
            UnitExpr::Noise(k) => match self.options.mode {
                Mode::Eval => Val::Const(0.0),
                Mode::Train => {
                    let name = if *k == 0 { ctx.stream.clone() } else { format!("{}#{k}", ctx.stream) };
                    let key = RandomKey { seed: self.options.seed, stream: RandomStream::Noise(name) };
                    let step = self.step()?;
                    Val::Tensor(self.push(Op::RandomNormal { key, shape: ctx.full.clone() }, &[step])?)
                }
            },
            UnitExpr::Neg(a) => match self.unit_expr(ctx, a)? {
                Val::Const(c) => Val::Const(-c),
                Val::Tensor(t) => Val::Tensor(self.unary(UnaryFn::Scale { c: -1.0 }, t)?),
            },
            UnitExpr::Func(f, a) => {
                let f = unit_fn(*f);
                match self.unit_expr(ctx, a)? {
                    Val::Const(c) => Val::Const(f.eval(c)),
                    Val::Tensor(t) => Val::Tensor(self.unary(f, t)?),
                }
            }
            UnitExpr::Binary(op, a, b) => {
                let (a, b) = (self.unit_expr(ctx, a)?, self.unit_expr(ctx, b)?);
                match (op, a, b) {
                    (op, Val::Const(a), Val::Const(b)) => Val::Const(fold(*op, a, b)),
                    (UnitOp::Mul, Val::Const(c), Val::Tensor(t)) | (UnitOp::Mul, Val::Tensor(t), Val::Const(c)) => {
                        Val::Tensor(self.unary(UnaryFn::Scale { c }, t)?)
                    }
                    (op, a, b) => {
                        let (a, b) = (self.materialize(ctx, a)?, self.materialize(ctx, b)?);
                        Val::Tensor(self.push(binary_op(*op), &[a, b])?)
                    }
                }
            }
            UnitExpr::Where(c, a, b) => {
                let c = self.unit_expr(ctx, c)?;
                let (a, b) = (self.unit_expr(ctx, a)?, self.unit_expr(ctx, b)?);
                match c {
                    Val::Const(c) => {
                        if c != 0.0 {
                            a
                        } else {
                            b
                        }
                    }
                    Val::Tensor(mask) => {
                        let (a, b) = (self.materialize(ctx, a)?, self.materialize(ctx, b)?);
                        Val::Tensor(self.push(Op::Select, &[mask, a, b])?)
                    }
                }
            }
            UnitExpr::Custom { var, arg, body, grad } => {
                let arg = self.unit_expr(ctx, arg)?;
                let arg = self.materialize(ctx, arg)?;
                Val::Tensor(self.custom_grad(ctx, *var, arg, body, grad)?)
            }
        })
    }

    fn minmaxout(
        &mut self,
        x: ValueId,
        dims: &[usize],
        units: usize,
        pieces: usize,
        index: usize,
    ) -> Result<ValueId, LowerError> {
        let Some((&channels, rest)) = dims.split_first() else {
            return Err(self.error("needs an input with channels".into()));
        };
        if units * pieces != channels || units == 0 {
            return Err(self.error(format!("{units} units of {pieces} pieces do not match {channels} channels")));
        }
        let mut grouped = vec![Dim::Batch, Dim::Fixed(units), Dim::Fixed(pieces)];
        grouped.extend(rest.iter().map(|&d| Dim::Fixed(d)));
        let xr = self.reshape(x, Shape(grouped))?;
        let assignment = fixed_units(self.net, index, self.options.seed)
            .ok_or_else(|| self.error("internal error: no fixed units".into()))?
            .part_of;
        let mins = assignment.iter().filter(|&&p| p == 1).count();
        let max = if mins < units { Some(self.push(Op::ReduceMax { axis: 2 }, &[xr])?) } else { None };
        let min = if mins > 0 {
            // min(x) = −max(−x)
            let neg = self.unary(UnaryFn::Scale { c: -1.0 }, xr)?;
            let m = self.push(Op::ReduceMax { axis: 2 }, &[neg])?;
            Some(self.unary(UnaryFn::Scale { c: -1.0 }, m)?)
        } else {
            None
        };
        match (min, max) {
            (Some(min), Some(max)) => {
                let ones = assignment.iter().map(|&p| f32::from(u8::from(p == 1))).collect();
                let tensor = Tensor::new(vec![units], ones).map_err(|e| self.error(format!("internal error: {e}")))?;
                let m = self.push(Op::Const(tensor), &[])?;
                let shape = self.shape(max)?;
                let m = self.push(Op::Broadcast { shape, axes: vec![1] }, &[m])?;
                self.push(Op::Select, &[m, min, max])
            }
            (Some(y), None) | (None, Some(y)) => Ok(y),
            (None, None) => Err(self.error("internal error: no units".into())),
        }
    }

    fn convact(
        &mut self,
        x: ValueId,
        index: usize,
        dims: &[usize],
        k: usize,
        [pos, neg]: [ValueId; 2],
    ) -> Result<ValueId, LowerError> {
        let Some(&channels) = dims.first() else {
            return Err(self.error("needs an input with channels".into()));
        };
        if k % 2 == 0 || (dims.len() != 3 && k != 1) {
            return Err(
                self.error(format!("needs an odd k, and k=1 unless the input is [C, H, W]; got k={k} on {dims:?}"))
            );
        }
        let spatial = if dims.len() == 3 {
            self.shape(x)?
        } else {
            // A flat or 2-D input is a column of positions for a 1×1 filter.
            Shape::batched(&[channels, dims[1..].iter().product(), 1])
        };
        let x4 = self.reshape(x, spatial)?;
        let conv = Op::Conv2d(Conv { stride: 1, pad: (k - 1) / 2, groups: channels });
        let mut y = None;
        for (f, w) in [(Activation::Relu, pos), (Activation::NegLU, neg)] {
            let a = self.activation(&f, MaskGrad::Exact, x4, index)?;
            let w = self.reshape(w, Shape::fixed(&[channels, 1, k, k]))?;
            let term = self.push(conv.clone(), &[a, w])?;
            y = Some(match y {
                None => term,
                Some(sum) => self.push(Op::Add, &[sum, term])?,
            });
        }
        let y = y.ok_or_else(|| self.error("internal error: empty convact".into()))?;
        self.reshape(y, Shape::batched(dims))
    }

    fn loss(mut self) -> Result<Program, LowerError> {
        let net = self.net;
        self.at = (LOSS.into(), net.loss.span);
        self.b.set_source(Source::new(LOSS, None, ir_span(net.loss.span)));
        let x = self.node(net.loss.input);
        let logits = self.reshape(x, Shape::batched(&[net.loss.classes]))?;
        let loss = self.push(Op::SoftmaxXent, &[logits, self.labels])?;
        for (name, kind, value) in [(LOSS, OutputKind::Loss, loss), (LOGITS, OutputKind::Logits, logits)] {
            self.b.output(name, kind, value).map_err(|e| self.error(format!("internal error: {e}")))?;
        }
        Ok(self.b.finish())
    }
}

/// What a trainer needs to know about every parameter of `net`, in order and by name: the
/// [`ParamInfo`] lowering gives the parameter's input.
pub fn param_infos(net: &Net, seed: u64) -> Vec<(String, ParamInfo)> {
    net.layers
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| {
            layer
                .parameters(net.in_shape(layer))
                .into_iter()
                .map(move |spec| (format!("{}.{}", layer.name, spec.name), param_info(net, i, &spec, seed)))
        })
        .collect()
}

fn param_info(net: &Net, index: usize, spec: &ParamSpec, seed: u64) -> ParamInfo {
    let layer = &net.layers[index];
    ParamInfo {
        role: role(spec.kind),
        init: param_init(spec, layer.init),
        lr_mult: of_kind(layer.lr_mult, spec.kind),
        // Decay would pull a unit's learned parameters to 0, a bias no one asked for (PReLU's
        // slopes to a ReLU); they are not decayed.
        wd_mult: if spec.kind == ParamKind::UnitParam { 0.0 } else { of_kind(layer.wd_mult, spec.kind) },
        sign: sign_constraint(net, index, spec, seed),
    }
}

/// The multiplier of a parameter of this kind: biases have their own.
fn of_kind(mult: netc_check::Mult, kind: ParamKind) -> f64 {
    if kind == ParamKind::Bias {
        mult.biases
    } else {
        mult.weights
    }
}

/// The signs Dale's principle asks of a weight whose layer reads a `dale` population: the
/// weights leaving an inhibitory unit ≤ 0, those leaving an excitatory unit ≥ 0.
fn sign_constraint(net: &Net, index: usize, spec: &ParamSpec, seed: u64) -> Option<SignConstraint> {
    let layer = &net.layers[index];
    if spec.kind != ParamKind::Weight || !layer.op.has_weights() {
        return None;
    }
    let choice = fixed_units(net, net.population(*layer.inputs.first()?)?, seed)?;
    let units = choice.part_of.len();
    // A weight row is `[C, kh, kw]` (conv) or the flattened `[C, ...]` input (dense): each unit
    // owns a block of consecutive elements.
    let row: usize = spec.shape.iter().skip(1).product();
    Some(SignConstraint {
        population: choice.layer,
        inhibitory: choice.part_of.iter().map(|&p| p == 1).collect(),
        block: row.checked_div(units)?,
    })
}

/// Whether a layer draws fresh random numbers at every training step.
fn draws_per_step(layer: &Layer) -> bool {
    let noisy = |a: &Activation| matches!(a, Activation::User(unit) if unit.def.noises > 0);
    let resampled = |mask: &Mask, fracs: &mut dyn Iterator<Item = f64>| {
        mask.mode == MaskMode::Resample && fracs.filter(|f| *f > 0.0).count() > 1
    };
    match &layer.op {
        netc_check::Op::Dropout { p } => *p > 0.0,
        netc_check::Op::MixLU { negfrac, mask } => resampled(mask, &mut [1.0 - negfrac, *negfrac].into_iter()),
        netc_check::Op::Mix { parts, mask } => {
            resampled(mask, &mut parts.iter().map(|p| p.1)) || parts.iter().any(|(a, f)| *f > 0.0 && noisy(a))
        }
        netc_check::Op::Unit(unit) => unit.def.noises > 0,
        _ => false,
    }
}

/// Whether a layer draws fresh random numbers for every evaluation batch (`eval=sample`).
fn samples_in_evaluation(layer: &Layer) -> bool {
    match &layer.op {
        netc_check::Op::MixLU { mask, .. } | netc_check::Op::Mix { mask, .. } => {
            mask.mode == MaskMode::Resample && mask.eval == MaskEval::Sample && draws_per_step(layer)
        }
        _ => false,
    }
}

/// The byte range of a syntax span, as the IR keeps it.
pub(crate) fn ir_span(span: Span) -> netc_ir::Span {
    netc_ir::Span::new(span.start, span.end)
}

fn role(kind: ParamKind) -> ParamRole {
    match kind {
        ParamKind::Weight => ParamRole::Weight,
        ParamKind::Bias => ParamRole::Bias,
        ParamKind::ActivationFilter => ParamRole::ActivationFilter,
        ParamKind::UnitParam => ParamRole::UnitParam,
    }
}

/// Fans of a weight `[out, in, kernel...]`: `in·k` and `out·k` with `k` the kernel size.
/// How a parameter starts; `layer_init` is the layer's own weight initialisation, if any.
fn param_init(spec: &ParamSpec, layer_init: Option<netc_check::Init>) -> ParamInit {
    let (kind, name, shape) = (spec.kind, spec.name.as_str(), &spec.shape);
    match kind {
        ParamKind::Weight => {
            let receptive: usize = shape.iter().skip(2).product();
            let fan_in = shape.get(1).copied().unwrap_or(1) * receptive;
            let fan_out = shape.first().copied().unwrap_or(1) * receptive;
            match layer_init {
                Some(init) => ParamInit::Drawn(crate::init::distribution(&init, fan_in, fan_out)),
                None => ParamInit::Weight { fan_in, fan_out },
            }
        }
        ParamKind::Bias => ParamInit::Zeros,
        // ConvAct starts as a ReLU: the positive filter passes the centre, the negative is 0.
        ParamKind::ActivationFilter if name == "pos" => ParamInit::CentreTap,
        ParamKind::ActivationFilter => ParamInit::Zeros,
        ParamKind::UnitParam => ParamInit::Constant { value: spec.init.unwrap_or(0.0) },
    }
}

/// A value while lowering a unit's expression: a constant not yet materialised, or a tensor.
#[derive(Clone, Copy, Debug)]
enum Val {
    Const(f64),
    Tensor(ValueId),
}

/// What a unit's expression reads while it is lowered.
struct UnitContext {
    /// The shape of the unit's input, which every value of the expression has.
    full: Shape,
    params: Vec<Val>,
    /// The bound variables: `0` is the unit's input.
    vars: HashMap<usize, ValueId>,
    /// The name of the unit's noise stream.
    stream: String,
}

fn unit_fn(f: UnitFn) -> UnaryFn {
    match f {
        UnitFn::Relu => UnaryFn::Relu,
        UnitFn::Abs => UnaryFn::Abs,
        UnitFn::Exp => UnaryFn::Exp,
        UnitFn::Log => UnaryFn::Log,
        UnitFn::Log1p => UnaryFn::Log1p,
        UnitFn::Sqrt => UnaryFn::Sqrt,
        UnitFn::Tanh => UnaryFn::Tanh,
        UnitFn::Sigmoid => UnaryFn::Sigmoid,
        UnitFn::Softplus => UnaryFn::Softplus,
    }
}

/// The IR op of a binary operator.
fn binary_op(op: UnitOp) -> Op {
    Op::Binary(match op {
        UnitOp::Add => return Op::Add,
        UnitOp::Sub => return Op::Sub,
        UnitOp::Mul => return Op::Mul,
        UnitOp::Div => BinaryFn::Div,
        UnitOp::Min => BinaryFn::Min,
        UnitOp::Max => BinaryFn::Max,
        UnitOp::Pow => BinaryFn::Pow,
        UnitOp::Less => BinaryFn::Less,
        UnitOp::LessEqual => BinaryFn::LessEqual,
        UnitOp::Greater => BinaryFn::Greater,
        UnitOp::GreaterEqual => BinaryFn::GreaterEqual,
        UnitOp::Equal => BinaryFn::Equal,
        UnitOp::NotEqual => BinaryFn::NotEqual,
    })
}

/// A binary operator on two constants, as the executors compute it.
fn fold(op: UnitOp, a: f64, b: f64) -> f64 {
    match binary_op(op) {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Binary(f) => f.eval(a, b),
        // `mul`, the one other op `binary_op` gives.
        _ => a * b,
    }
}
