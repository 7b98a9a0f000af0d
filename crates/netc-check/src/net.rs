//! Checking one `net` block: statement order, names, arguments and shapes.
//!
//! [`check_net`] walks the body once with a [`Walker`], which keeps what the statements so far
//! defined; each kind of statement (the input, a layer, a join, the loss) has its own method,
//! and [`Walker::finish`] runs the whole-net rules and assembles the [`Net`].

use crate::args::{layer_ref, match_args, typed, Args, Scope, Ty};
use crate::errors;
use crate::model::*;
use crate::ops::{self, shape_text, OpError, Role};
use crate::units::{unit_use, Units};
use netc_syntax::ast::{self, BlockDecl, Call, Ident, InputDecl, LayerStmt, Stmt, Value, ValueKind};
use netc_syntax::{Code, Diagnostic, Label, Severity, Span};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What a file defines besides its nets: the units and blocks a net may use.
pub(crate) struct Definitions<'a> {
    pub units: &'a Units,
    pub blocks: HashMap<&'a str, &'a BlockDecl>,
}

pub(crate) fn check_net(
    decl: &ast::NetDecl,
    params: &HashMap<String, Option<Value>>,
    definitions: &Definitions,
    errors: &mut Vec<Diagnostic>,
) -> Option<Net> {
    let mut walker = Walker::new(decl, params, definitions, errors.len());
    for stmt in &decl.body {
        walker.statement(stmt, errors);
    }
    walker.finish(errors)
}

/// The most layers a net may have once its blocks are inlined: blocks that use blocks can
/// multiply, and a net this large would not fit in memory anyway.
pub const MAX_LAYERS: usize = 100_000;

/// The longest full name of a layer (`outer1.residual1.conv1`), in bytes. With [`MAX_LAYERS`] it
/// bounds the names' memory (25 MiB) and how deep blocks nest, whose work grows with the depth.
pub const MAX_NAME_BYTES: usize = 256;

/// A layer's checked parts, before it gets its name. Its shape is `None` once an error upstream
/// made it unknown, so one mistake is reported once and not again by every layer after it.
struct Built {
    op: Op,
    inputs: Vec<Node>,
    shape: Option<Shape>,
    lr_mult: Mult,
    wd_mult: Mult,
    init: Option<crate::config::Init>,
}

struct Seen {
    node: Node,
    shape: Option<Shape>,
    span: Span,
}

/// The names defined so far, and every name the net body defines (to tell a name used before
/// its definition from a misspelt one).
struct Names<'a> {
    seen: HashMap<&'a str, Seen>,
    /// The names of `seen`, in the order they were defined.
    order: Vec<&'a str>,
    /// How many more undefined names get a did-you-mean search over the names above them.
    suggestions_left: std::cell::Cell<usize>,
    defined: HashMap<&'a str, Vec<Span>>,
}

/// Undefined names of one net that get a suggestion. Each search is bounded
/// (`netc_syntax::did_you_mean`); this bounds their number, so that a body of thousands of
/// misspelt references costs linear time, not thousands of searches over thousands of names.
const MAX_NAME_SUGGESTIONS: usize = 100;

/// The names, parameters and default source of the body being walked: the net's, or a block's
/// while one of its uses is inlined.
struct Env<'a> {
    scope: Scope,
    names: Names<'a>,
    /// The names the user gave, which automatic names skip.
    explicit: HashSet<&'a str>,
    counters: HashMap<&'a str, usize>,
    /// The node the next layer reads by default, and its shape.
    current: Option<(Node, Option<Shape>)>,
    /// What the names of the layers get in front: `residual1.` inside that use of a block.
    prefix: String,
    /// Inside a block: what its `input` reads.
    block: Option<BlockFrame<'a>>,
}

struct BlockFrame<'a> {
    decl: &'a BlockDecl,
    source: (Node, Option<Shape>),
    /// The block's `input` statement, once seen.
    input: Option<Span>,
}

impl<'a> Env<'a> {
    fn new(body: &'a [Stmt], params: HashMap<String, Option<Value>>, prefix: String) -> Env<'a> {
        let mut defined: HashMap<&str, Vec<Span>> = HashMap::new();
        let mut explicit = HashSet::new();
        for name in body.iter().filter_map(|s| match s {
            Stmt::Layer(l) => l.name.as_ref(),
            Stmt::Input(i) => Some(&i.name),
        }) {
            defined.entry(name.name.as_str()).or_default().push(name.span);
            explicit.insert(name.name.as_str());
        }
        Env {
            scope: Scope { params, used: Default::default() },
            names: Names {
                seen: HashMap::new(),
                order: Vec::new(),
                suggestions_left: MAX_NAME_SUGGESTIONS.into(),
                defined,
            },
            explicit,
            counters: HashMap::new(),
            current: None,
            prefix,
            block: None,
        }
    }
}

/// The state of the walk over one net body.
struct Walker<'a> {
    decl: &'a ast::NetDecl,
    params: &'a HashMap<String, Option<Value>>,
    definitions: &'a Definitions<'a>,
    env: Env<'a>,
    /// The blocks being inlined, outermost first, to refuse a block that uses itself.
    inlining: Vec<&'a str>,
    blocks_used: Vec<BlockUse>,
    /// Per block and depth of inlining, the diagnostics of its uses already reported (as text,
    /// to compare): a use that repeats them adds nothing, so a mistake in a block used 10,000
    /// times is reported once. The depth keeps a block's use inside itself (E0212) apart from
    /// the use around it, whose diagnostics would otherwise read the same.
    reported_uses: HashSet<(&'a str, usize, String)>,
    /// How many diagnostics came before this net's.
    before: usize,
    input: Option<Input>,
    layers: Vec<Layer>,
    loss: Option<Loss>,
    /// Whether a loss was written, even a wrong one: then "no loss" would repeat its error.
    loss_written: bool,
    /// The first layer, when it comes before the input.
    early_layer: Option<Span>,
    /// Whether the net uses a unit whose definition has an error (reported there).
    broken_definition: bool,
}

impl<'a> Walker<'a> {
    fn new(
        decl: &'a ast::NetDecl,
        params: &'a HashMap<String, Option<Value>>,
        definitions: &'a Definitions<'a>,
        before: usize,
    ) -> Walker<'a> {
        Walker {
            decl,
            params,
            definitions,
            env: Env::new(&decl.body, params.clone(), String::new()),
            inlining: Vec::new(),
            blocks_used: Vec::new(),
            reported_uses: HashSet::new(),
            before,
            input: None,
            layers: Vec::new(),
            loss: None,
            loss_written: false,
            early_layer: None,
            broken_definition: false,
        }
    }

    fn statement(&mut self, stmt: &'a Stmt, errors: &mut Vec<Diagnostic>) {
        if let Some(loss) = &self.loss {
            let span = match stmt {
                Stmt::Input(i) => i.span,
                Stmt::Layer(l) => l.span,
            };
            errors.push(errors::misplaced(
                span,
                "statement after the loss",
                Some((loss.span, "the loss")),
                "the loss must be the last statement of a net",
            ));
            return;
        }
        match stmt {
            Stmt::Input(input) if self.env.block.is_some() => self.block_input(input, errors),
            Stmt::Input(input) => self.input(input, errors),
            Stmt::Layer(stmt) if stmt.is_loss && self.env.block.is_some() => errors.push(errors::misplaced(
                stmt.span,
                "a block cannot have a loss",
                None,
                "a block is a part of a net; write the loss in the net",
            )),
            Stmt::Layer(stmt) if stmt.is_loss => self.loss(stmt, errors),
            Stmt::Layer(stmt) => self.layer(stmt, errors),
        }
    }

    /// `input x` of a block: `x` names what the block's use reads. A shape, if written, must be
    /// the shape of that.
    fn block_input(&mut self, decl: &'a InputDecl, errors: &mut Vec<Diagnostic>) {
        let Some(frame) = self.env.block.as_mut() else { return };
        if let Some(first) = frame.input {
            errors.push(
                Code::BlockInput
                    .error()
                    .with_message("a block has one input")
                    .with_labels(vec![
                        Label::primary((), decl.span.range()).with_message("second input"),
                        Label::secondary((), first.range()).with_message("first input"),
                    ])
                    .with_notes(vec!["help: a block reads one tensor; concatenate several into one before it".into()]),
            );
            return;
        }
        frame.input = Some(decl.span);
        let (node, shape) = frame.source.clone();
        if let (Some(written), Some(actual)) = (&decl.shape, &shape) {
            let declared = self.env.scope.resolve(written).and_then(|v| input_shape(&v));
            match declared {
                None => errors.push(errors::bad_shape_decl(written)),
                Some(declared) if declared != *actual => errors.push(
                    Code::BlockInput
                        .error()
                        .with_message(format!(
                            "the block's input is declared {}, but this use gives it {}",
                            shape_text(&declared),
                            shape_text(actual)
                        ))
                        .with_labels(vec![Label::primary((), written.span.range())
                            .with_message(format!("declared {}", shape_text(&declared)))]),
                ),
                Some(_) => {}
            }
        }
        declare(&mut self.env.names, &decl.name, node, shape.clone(), errors);
        self.env.current = Some((node, shape));
    }

    fn input(&mut self, decl: &'a InputDecl, errors: &mut Vec<Diagnostic>) {
        if let Some(first) = &self.input {
            errors.push(errors::misplaced(
                decl.span,
                "a net has one input",
                Some((first.span, "first input")),
                "join several inputs by concatenating them into one",
            ));
            return;
        }
        if let Some(first_layer) = self.early_layer {
            errors.push(errors::misplaced(
                decl.span,
                "the input must come before the layers",
                Some((first_layer, "the first layer")),
                "move the input declaration to the top of the net",
            ));
        }
        let Some(written) = &decl.shape else {
            errors.push(errors::input_without_shape(decl));
            return;
        };
        // `None` from `resolve`: a parameter without a value, already reported.
        let shape = self.env.scope.resolve(written).and_then(|value| {
            let shape = input_shape(&value);
            match &shape {
                None => errors.push(errors::bad_shape_decl(written)),
                Some(s) if ops::elements(s).is_none() => {
                    errors.push(errors::too_large(written.span, format!("input `{}`", decl.name.name), s));
                    return None;
                }
                Some(_) => {}
            }
            shape
        });
        declare(&mut self.env.names, &decl.name, Node::Input, shape.clone(), errors);
        self.env.current = Some((Node::Input, shape.clone()));
        self.input = Some(Input { name: decl.name.name.clone(), shape: shape.unwrap_or_default(), span: decl.span });
    }

    fn loss(&mut self, stmt: &LayerStmt, errors: &mut Vec<Diagnostic>) {
        self.loss_written = true;
        let Some(classes) = check_loss(stmt, &self.env.scope, errors) else {
            return;
        };
        let Some((node, shape)) = source(stmt, &self.env.names, &self.env.current, errors) else {
            return;
        };
        if let Some(shape) = shape {
            if shape != [classes] && shape != [classes, 1, 1] {
                let from_span = match node {
                    Node::Input => self.input.as_ref().map_or(stmt.span, |i| i.span),
                    Node::Layer(i) => self.layers.get(i).map_or(stmt.span, |l| l.span),
                };
                errors.push(errors::shape_mismatch(
                    format!("the loss expects {classes} class scores, but receives {}", shape_text(&shape)),
                    vec![(stmt.call.span, format!("classes={classes}")), (from_span, format!("gives {}", shape_text(&shape)))],
                    vec![format!("help: end the net with a layer of {classes} outputs, e.g. `conv({classes}, k=1)` or `dense({classes})`")],
                ));
            }
        }
        self.loss = Some(Loss { classes, input: node, span: stmt.span });
    }

    fn layer(&mut self, stmt: &'a LayerStmt, errors: &mut Vec<Diagnostic>) {
        if self.input.is_none() && self.env.current.is_none() {
            // Reported at the input declaration, or as a net without input.
            self.early_layer = Some(stmt.span);
            // Keep going so later statements are still checked for their own mistakes.
            self.env.current = Some((Node::Input, None));
        }
        let op_name = stmt.call.op.name.as_str();
        if let Some(block) = self.definitions.blocks.get(op_name) {
            return self.block_use(stmt, block, errors);
        }
        let def = ops::lookup(op_name);
        if def.is_some_and(|d| matches!(d.role, Role::Loss)) {
            self.loss_written = true;
        }
        let layer_name = match &stmt.name {
            Some(n) => n.name.clone(),
            None => auto_name(op_name, &self.env.explicit, &mut self.env.counters),
        };
        let units = self.definitions.units;
        // A mix of a unit whose definition has an error: reported there, and nothing to check.
        let mixes_broken_unit = op_name == "mix"
            && stmt.call.args().iter().any(|a| a.key.as_ref().is_some_and(|k| units.failed.contains(&k.name)));
        self.broken_definition |= mixes_broken_unit;
        let checked = match def.map(|d| (d.signature, d.role)) {
            _ if mixes_broken_unit => None,
            Some((signature, Role::Layer(build))) => {
                let typed = LayerCall { stmt, name: &layer_name, signature, build };
                check_layer(&typed, &self.env, units, errors)
            }
            Some((_, Role::Join(join))) => check_join(stmt, join(), &self.env.names, errors),
            Some((_, Role::Loss)) => {
                errors.push(errors::loss_as_layer(&stmt.call.op));
                None
            }
            None if units.defs.contains_key(op_name) => {
                let def = &units.defs[op_name];
                let src = source(stmt, &self.env.names, &self.env.current, errors);
                unit_use(def, &stmt.call, &self.env.scope, errors).and_then(|unit| {
                    let (node, shape) = src?;
                    Some(Built {
                        op: Op::Unit(Arc::new(unit)),
                        inputs: vec![node],
                        shape,
                        lr_mult: Mult::ONE,
                        wd_mult: Mult::ONE,
                        init: None,
                    })
                })
            }
            // Its definition's error is reported there; the net cannot be built without it.
            None if units.failed.contains(op_name) => {
                self.broken_definition = true;
                None
            }
            None => {
                let known: Vec<&str> = ops::names(false)
                    .into_iter()
                    .chain(units.defs.keys().map(String::as_str))
                    .chain(self.definitions.blocks.keys().copied())
                    .collect();
                errors.push(errors::unknown_op(&stmt.call.op, "layer", &known));
                None
            }
        };
        let index = self.layers.len();
        let layer_name = self.full_name(&layer_name, stmt, errors).unwrap_or_else(|cut| cut);
        let Some(Built { op, inputs, shape, lr_mult, wd_mult, init }) = checked else {
            // Unknown output: later layers still get their own checks, without shapes.
            self.env.current = Some((Node::Layer(index), None));
            if let Some(name) = &stmt.name {
                declare(&mut self.env.names, name, Node::Layer(index), None, errors);
            }
            self.layers.push(placeholder(layer_name, stmt.span));
            return;
        };
        if let Some(name) = &stmt.name {
            declare(&mut self.env.names, name, Node::Layer(index), shape.clone(), errors);
        }
        self.env.current = Some((Node::Layer(index), shape.clone()));
        self.layers.push(Layer {
            name: layer_name,
            op,
            inputs,
            out_shape: shape.unwrap_or_default(),
            lr_mult,
            wd_mult,
            init,
            span: stmt.span,
        });
    }

    /// A use of a block: its body inlined with the use's arguments, its layers named
    /// `USE.LAYER`. An error inside is reported at the first use that makes it, with the line of
    /// the block.
    fn block_use(&mut self, stmt: &'a LayerStmt, block: &'a BlockDecl, errors: &mut Vec<Diagnostic>) {
        let index = self.layers.len();
        let use_name = match &stmt.name {
            Some(n) => n.name.clone(),
            None => auto_name(&block.name.name, &self.env.explicit, &mut self.env.counters),
        };
        let mut inner = Vec::new();
        let (full_name, output) = match self.full_name(&use_name, stmt, errors) {
            Ok(name) => {
                let output = self.inline_block(stmt, block, &name, &mut inner);
                (name, output)
            }
            Err(cut) => (cut, None),
        };
        let failed = inner.iter().any(|d| d.severity == Severity::Error);
        if !inner.is_empty() && self.reported_uses.insert((&block.name.name, self.inlining.len(), format!("{inner:?}")))
        {
            errors.extend(inner.into_iter().map(|d| at_use(d, stmt, block)));
        }
        let output = match output {
            Some(output) if !failed => output,
            _ => {
                // The block's layers, or a placeholder standing for it, have no known output.
                if self.layers.len() == index {
                    self.layers.push(placeholder(full_name.clone(), stmt.span));
                }
                (Node::Layer(self.layers.len() - 1), None)
            }
        };
        if let Some(name) = &stmt.name {
            declare(&mut self.env.names, name, output.0, output.1.clone(), errors);
        }
        self.env.current = Some(output);
        self.blocks_used.push(BlockUse {
            name: full_name,
            block: block.name.name.clone(),
            call: stmt.call.to_string(),
            layers: index..self.layers.len(),
            span: stmt.span,
        });
    }

    /// `name` under the blocks being inlined; when that is longer than [`MAX_NAME_BYTES`], an
    /// error and, as `Err`, the name cut short (so a net's names stay bounded after it too).
    fn full_name(&self, name: &str, stmt: &LayerStmt, errors: &mut Vec<Diagnostic>) -> Result<String, String> {
        let full = format!("{}{name}", self.env.prefix);
        if full.len() > MAX_NAME_BYTES {
            let shown: String = full.chars().take(60).collect::<String>() + "…";
            errors.push(
                Code::NameTooLong
                    .error()
                    .with_message(format!(
                        "the layer `{shown}` has a name of {} bytes once its blocks are inlined, more than {MAX_NAME_BYTES}",
                        full.len()
                    ))
                    .with_labels(vec![Label::primary((), stmt.call.span.range()).with_message("named here")])
                    .with_notes(vec!["help: nest fewer blocks, or give the blocks and layers shorter names".into()]),
            );
            return Err(shown);
        }
        Ok(full)
    }

    /// Walks `block`'s body for one use; the block's output, or `None` after an error.
    fn inline_block(
        &mut self,
        stmt: &'a LayerStmt,
        block: &'a BlockDecl,
        name: &str,
        errors: &mut Vec<Diagnostic>,
    ) -> Option<(Node, Option<Shape>)> {
        if self.inlining.contains(&block.name.name.as_str()) {
            errors.push(
                Code::Recursion
                    .error()
                    .with_message(format!("the block `{}` uses itself", block.name.name))
                    .with_labels(vec![Label::primary((), stmt.call.span.range()).with_message("used inside its own definition")])
                    .with_notes(vec!["note: a block is inlined where it is used, so it cannot use itself, directly or through others".into()]),
            );
            return None;
        }
        if self.layers.len() >= MAX_LAYERS {
            errors.push(
                Code::TooManyLayers
                    .error()
                    .with_message(format!("the net has more than {MAX_LAYERS} layers once its blocks are inlined"))
                    .with_labels(vec![
                        Label::primary((), stmt.call.span.range()).with_message("this use goes past the limit")
                    ]),
            );
            return None;
        }
        let source = source(stmt, &self.env.names, &self.env.current, errors)?;
        let args = block_args(&stmt.call, block, &self.env.scope, errors)?;
        let mut env = Env::new(&block.body, args, format!("{name}."));
        env.block = Some(BlockFrame { decl: block, source: source.clone(), input: None });
        let outer = std::mem::replace(&mut self.env, env);
        self.inlining.push(&block.name.name);
        let first = self.layers.len();
        let before = errors.len();
        for s in &block.body {
            self.statement(s, errors);
        }
        self.inlining.pop();
        let env = std::mem::replace(&mut self.env, outer);
        if errors[before..].iter().any(|d| d.severity == Severity::Error) {
            return None;
        }
        let frame = env.block?;
        if frame.input.is_none() {
            errors.push(
                Code::BlockInput
                    .error()
                    .with_message(format!("the block `{}` has no input", block.name.name))
                    .with_labels(vec![Label::primary((), block.name.span.range()).with_message("no `input` statement")])
                    .with_notes(vec![format!("help: name what the block reads on its first line: `input x`")]),
            );
            return None;
        }
        check_block_output(&self.layers[first..], first, frame.decl, errors)?;
        env.current
    }
    /// The rules over the whole net, then the net itself if this net had no error.
    fn finish(self, errors: &mut Vec<Diagnostic>) -> Option<Net> {
        let decl = self.decl;
        let broken = self.broken_definition;
        let failed =
            |errors: &[Diagnostic]| broken || errors[self.before..].iter().any(|d| d.severity == Severity::Error);
        if !decl.body.iter().any(|s| matches!(s, Stmt::Input(_))) {
            errors.push(errors::no_input(&decl.name));
        }
        if self.loss.is_none() && !self.loss_written {
            errors.push(errors::no_loss(&decl.name));
        }
        if !failed(errors) {
            check_populations(&self.layers, self.loss.as_ref(), errors);
        }
        let used = self.env.scope.used.into_inner();
        for p in &decl.params {
            if !used.contains(&p.name.name) {
                errors.push(errors::unused_param(&p.name));
            }
        }
        match (self.input, self.loss) {
            (Some(input), Some(loss)) if !failed(errors) => Some(Net {
                name: decl.name.name.clone(),
                params: decl
                    .params
                    .iter()
                    .filter_map(|p| {
                        self.params.get(&p.name.name)?.as_ref().map(|v| (p.name.name.clone(), param_value(v)))
                    })
                    .collect(),
                input,
                layers: self.layers,
                blocks: self.blocks_used,
                loss,
                span: decl.span,
            }),
            _ => None,
        }
    }
}

/// Every `dale` population must be read by weight layers only (through ops that keep units),
/// and by at least one.
fn check_populations(layers: &[Layer], loss: Option<&Loss>, errors: &mut Vec<Diagnostic>) {
    let mut readers: HashMap<Node, Vec<usize>> = HashMap::new();
    for (index, layer) in layers.iter().enumerate() {
        for &input in &layer.inputs {
            let list = readers.entry(input).or_default();
            // `add(a, a)` reads `a` once.
            if list.last() != Some(&index) {
                list.push(index);
            }
        }
    }
    for (index, dale) in layers.iter().enumerate() {
        if !matches!(dale.op, Op::Dale { .. }) {
            continue;
        }
        let (mut weight_layers, mut misread) = (0, false);
        let mut carriers = vec![Node::Layer(index)];
        while let Some(node) = carriers.pop() {
            for &reader_index in readers.get(&node).map_or(&[][..], Vec::as_slice) {
                let reader = &layers[reader_index];
                if reader.op.has_weights() {
                    weight_layers += 1;
                } else if reader.op.keeps_units() {
                    carriers.push(Node::Layer(reader_index));
                } else {
                    errors.push(errors::population_read_by(reader.span, &reader.name, dale.span, &dale.name));
                    misread = true;
                }
            }
            if let Some(loss) = loss.filter(|l| l.input == node) {
                errors.push(errors::population_read_by(loss.span, "loss", dale.span, &dale.name));
                misread = true;
            }
        }
        if weight_layers == 0 && !misread {
            errors.push(errors::population_unread(dale.span, &dale.name));
        }
    }
}

fn placeholder(name: String, span: Span) -> Layer {
    Layer {
        name,
        op: Op::Flatten,
        inputs: vec![],
        out_shape: vec![],
        lr_mult: Mult::ONE,
        wd_mult: Mult::ONE,
        init: None,
        span,
    }
}

fn declare<'a>(names: &mut Names<'a>, name: &'a Ident, node: Node, shape: Option<Shape>, errors: &mut Vec<Diagnostic>) {
    if let Some(first) = names.seen.get(name.name.as_str()) {
        errors.push(errors::duplicate_name("name", name, first.span));
        return;
    }
    names.seen.insert(&name.name, Seen { node, shape, span: name.span });
    names.order.push(&name.name);
}

/// `conv1`, `conv2`, ... skipping names the user gave explicitly.
fn auto_name<'a>(op: &'a str, explicit: &HashSet<&str>, counters: &mut HashMap<&'a str, usize>) -> String {
    let counter = counters.entry(op).or_insert(0);
    loop {
        *counter += 1;
        let name = format!("{op}{counter}");
        if !explicit.contains(name.as_str()) {
            return name;
        }
    }
}

fn input_shape(value: &Value) -> Option<Shape> {
    match &value.kind {
        ValueKind::List(items) if !items.is_empty() && items.len() <= 3 => items
            .iter()
            .map(|i| match i.kind {
                ValueKind::Int(v) if (1..=1 << 24).contains(&v) => Some(v as usize),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn param_value(value: &Value) -> ParamValue {
    match &value.kind {
        ValueKind::Int(v) => ParamValue::Int(*v),
        ValueKind::Float(v) => ParamValue::Float(*v),
        ValueKind::Bool(v) => ParamValue::Bool(*v),
        ValueKind::Str(v) => ParamValue::Str(v.clone()),
        other => ParamValue::Ident(other.to_string()),
    }
}

/// The node a layer reads: its `from`, or the previous statement.
fn source(
    stmt: &LayerStmt,
    names: &Names,
    current: &Option<(Node, Option<Shape>)>,
    errors: &mut Vec<Diagnostic>,
) -> Option<(Node, Option<Shape>)> {
    match &stmt.from {
        Some(from) => lookup(from, names, errors),
        None => current.clone(),
    }
}

fn lookup(name: &Ident, names: &Names, errors: &mut Vec<Diagnostic>) -> Option<(Node, Option<Shape>)> {
    match names.seen.get(name.name.as_str()) {
        Some(seen) => Some((seen.node, seen.shape.clone())),
        None => {
            let later = names
                .defined
                .get(name.name.as_str())
                .and_then(|spans| spans.iter().copied().find(|span| span.start > name.span.start));
            let budget = names.suggestions_left.get();
            names.suggestions_left.set(budget.saturating_sub(1));
            // The latest definitions first: the likeliest to be meant.
            let candidates = names.order.iter().rev().copied().take(if budget > 0 { usize::MAX } else { 0 });
            errors.push(errors::undefined_name(name, candidates, later));
            None
        }
    }
}

/// A layer statement of an operation with typed arguments, and its entry in the vocabulary.
struct LayerCall<'a> {
    stmt: &'a LayerStmt,
    /// The layer's name, given or automatic.
    name: &'a str,
    signature: &'static [crate::args::Param],
    build: fn(&Args) -> Result<Op, OpError>,
}

fn check_layer(call: &LayerCall, env: &Env, units: &Units, errors: &mut Vec<Diagnostic>) -> Option<Built> {
    let LayerCall { stmt, name: layer_name, signature, build } = *call;
    let before = errors.len();
    // `mix` also takes the units the file defines, which its signature cannot list.
    let (call_args, mixed_units) = match stmt.call.op.name.as_str() {
        "mix" => split_mixed_units(&stmt.call, units, &env.scope, errors),
        _ => (None, Vec::new()),
    };
    let mut args =
        match_args(call_args.as_ref().unwrap_or(&stmt.call), &stmt.call.op.name, signature, &env.scope, errors);
    args.mixed_units = mixed_units;
    // With a wrong argument left out, rules over several arguments and the shape would only
    // report the same mistake again (or worse, a different one).
    let args_ok = errors.len() == before;
    let src = source(stmt, &env.names, &env.current, errors);
    let mut op = match build(&args) {
        Ok(op) => op,
        Err(e) => {
            if args_ok {
                errors.push(op_error(e, &args, stmt));
            }
            return None;
        }
    };
    let (node, shape) = src?;
    let shape = match shape {
        Some(input) if args_ok => match ops::out_shape(&mut op, layer_name, &input) {
            Ok(out) => {
                let layer = placeholder(layer_name.to_string(), stmt.span);
                let params = Layer { op: op.clone(), out_shape: out.clone(), ..layer }.parameters(&input);
                let oversized = std::iter::once(("output", &out))
                    .chain(params.iter().map(|p| (p.name.as_str(), &p.shape)))
                    .find(|(_, shape)| ops::elements(shape).is_none());
                match oversized {
                    Some((what, shape)) => {
                        errors.push(errors::too_large(stmt.call.span, format!("{what} of `{layer_name}`"), shape));
                        None
                    }
                    None => Some(out),
                }
            }
            Err(e) => {
                errors.push(op_error(e, &args, stmt));
                None
            }
        },
        _ => None,
    };
    Some(Built {
        op,
        inputs: vec![node],
        shape,
        lr_mult: mult(&args, "lr_mult"),
        wd_mult: mult(&args, "wd_mult"),
        init: args.init("init"),
    })
}

fn mult(args: &Args, name: &str) -> Mult {
    let [weights, biases] = args.mult(name);
    Mult { weights, biases }
}

fn op_error(e: OpError, args: &Args, stmt: &LayerStmt) -> Diagnostic {
    let span = match e.at {
        Some(arg) if args.has(arg) => args.span_of(arg),
        _ => stmt.call.span,
    };
    errors::shape(e.message, span, e.label, e.notes)
}

/// `add(a, b, ...)` and `concat(a, b, ...)`, building `op`.
fn check_join(stmt: &LayerStmt, op: Op, names: &Names, errors: &mut Vec<Diagnostic>) -> Option<Built> {
    let built =
        |op, inputs, shape| Some(Built { op, inputs, shape, lr_mult: Mult::ONE, wd_mult: Mult::ONE, init: None });
    let name = &stmt.call.op;
    if let Some(from) = &stmt.from {
        errors.push(errors::from_with_join(from, name));
    }
    let args = stmt.call.args();
    if args.len() < 2 {
        errors.push(errors::needs_refs(name, stmt.call.span));
        return None;
    }
    let mut inputs = Vec::new();
    let mut shapes: Vec<(Span, Option<Shape>)> = Vec::new();
    let mut ok = true;
    let mut keyword_reported = false;
    for arg in args {
        if let Some(key) = &arg.key {
            // One error for the call, however many keywords it has.
            if !keyword_reported {
                errors.push(errors::keyword_in_join(key, name));
                keyword_reported = true;
            }
            ok = false;
            continue;
        }
        let Some(reference) = layer_ref(&arg.value) else {
            errors.push(errors::ref_expected(&arg.value));
            ok = false;
            continue;
        };
        match lookup(&reference, names, errors) {
            Some((node, shape)) => {
                inputs.push(node);
                shapes.push((arg.span, shape));
            }
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    let known: Vec<(Span, Shape)> = shapes.iter().filter_map(|(s, sh)| sh.clone().map(|sh| (*s, sh))).collect();
    if known.len() < shapes.len() {
        return built(op, inputs, None);
    }
    let first = &known[0].1;
    if op == Op::Add {
        if let Some((span, other)) = known.iter().find(|(_, s)| s != first) {
            errors.push(errors::shape_mismatch(
                format!("cannot add {} and {}: `add` needs equal shapes", shape_text(first), shape_text(other)),
                vec![
                    (*span, format!("this is {}", shape_text(other))),
                    (known[0].0, format!("this is {}", shape_text(first))),
                ],
                vec!["help: make both branches give the same shape, e.g. a 1×1 conv to match channels".into()],
            ));
            return None;
        }
        return built(op, inputs, Some(first.clone()));
    }
    let rest_differs = |s: &Shape| s.len() != first.len() || s[1..] != first[1..];
    if let Some((span, other)) = known.iter().find(|(_, s)| rest_differs(s)) {
        errors.push(errors::shape_mismatch(
            format!(
                "cannot concatenate {} and {}: all but the channel dimension must agree",
                shape_text(first),
                shape_text(other)
            ),
            vec![
                (*span, format!("this is {}", shape_text(other))),
                (known[0].0, format!("this is {}", shape_text(first))),
            ],
            vec!["note: `concat` joins along the first (channel) dimension".into()],
        ));
        return None;
    }
    let mut out = first.clone();
    out[0] = known.iter().fold(0usize, |sum, (_, s)| sum.saturating_add(s[0]));
    if ops::elements(&out).is_none() {
        errors.push(errors::too_large(stmt.call.span, format!("output of `{}`", name.name), &out));
        return None;
    }
    built(op, inputs, Some(out))
}

fn check_loss(stmt: &LayerStmt, scope: &Scope, errors: &mut Vec<Diagnostic>) -> Option<usize> {
    let op = &stmt.call.op;
    let signature = match ops::lookup(&op.name) {
        Some(def) if matches!(def.role, Role::Loss) => def.signature,
        Some(_) => {
            errors.push(errors::not_a_loss(op));
            return None;
        }
        None => {
            errors.push(errors::unknown_op(op, "loss", &ops::names(true)));
            return None;
        }
    };
    let args = match_args(&stmt.call, &op.name, signature, scope, errors);
    args.has("classes").then(|| args.usize_or("classes", 1))
}

/// The arguments of a `mix` call that name units the file defines, typed as fractions, and the
/// call without them (`None` when it has none).
fn split_mixed_units(
    call: &Call,
    units: &Units,
    scope: &Scope,
    errors: &mut Vec<Diagnostic>,
) -> (Option<Call>, Vec<(Arc<UnitUse>, f64)>) {
    let is_unit = |arg: &ast::Arg| arg.key.as_ref().is_some_and(|k| units.defines(&k.name));
    if !call.args().iter().any(is_unit) {
        return (None, Vec::new());
    }
    let mut mixed = Vec::new();
    for arg in call.args().iter().filter(|a| is_unit(a)) {
        let Some(key) = &arg.key else { continue };
        let Some(def) = units.defs.get(&key.name) else { continue };
        let Some(value) = scope.resolve(&arg.value) else { continue };
        match typed(&value, Ty::Fraction) {
            Ok(_) => {
                let frac = match value.kind {
                    ValueKind::Int(v) => v as f64,
                    ValueKind::Float(v) => v,
                    _ => 0.0,
                };
                let defaults = def.params.iter().map(|p| p.default).collect();
                mixed.push((Arc::new(UnitUse { def: Arc::clone(def), values: defaults }), frac));
            }
            Err(problem) => errors.push(errors::bad_value(
                &key.name,
                "a number between 0 and 1".into(),
                &value,
                &arg.value,
                problem,
            )),
        }
    }
    let rest = call.args().iter().filter(|a| !is_unit(a)).cloned().collect();
    (Some(Call { args: Some(rest), ..call.clone() }), mixed)
}

/// The values of a block's parameters at one use: given by position or keyword, else the
/// default. `None` after an error.
fn block_args(
    call: &Call,
    block: &BlockDecl,
    scope: &Scope,
    errors: &mut Vec<Diagnostic>,
) -> Option<HashMap<String, Option<Value>>> {
    let before = errors.len();
    let mut given: HashMap<&str, (Value, Span)> = HashMap::new();
    let mut keyword_seen = false;
    for (position, arg) in call.args().iter().enumerate() {
        let param = match &arg.key {
            Some(key) => {
                keyword_seen = true;
                match block.params.iter().find(|p| p.name.name == key.name) {
                    Some(p) => p,
                    None => {
                        errors.push(errors::unknown_block_argument(key, block));
                        continue;
                    }
                }
            }
            None if keyword_seen => {
                errors.push(errors::positional_after_keyword(arg.span));
                continue;
            }
            None => match block.params.get(position) {
                Some(p) => p,
                None => {
                    errors.push(errors::too_many_block_arguments(arg.span, block));
                    continue;
                }
            },
        };
        if let Some((_, first)) = given.get(param.name.name.as_str()) {
            errors.push(errors::duplicate_argument(&param.name.name, *first, arg.span));
            continue;
        }
        // A net parameter (or an outer block's) given as the value is replaced by its value.
        if let Some(value) = scope.resolve(&arg.value) {
            given.insert(&param.name.name, (value, arg.span));
        }
    }
    let mut values = HashMap::new();
    for p in &block.params {
        match given.remove(p.name.name.as_str()).map(|(v, _)| v).or_else(|| p.default.clone()) {
            Some(v) => {
                values.insert(p.name.name.clone(), Some(v));
            }
            None => errors.push(errors::missing_block_argument(call, &p.name, block)),
        }
    }
    (errors.len() == before).then_some(values)
}

/// A block's layers must end in one output: every layer but the last is read by a later one.
fn check_block_output(layers: &[Layer], first: usize, block: &BlockDecl, errors: &mut Vec<Diagnostic>) -> Option<()> {
    let Some(last) = layers.len().checked_sub(1) else {
        errors.push(
            Code::BlockOutput
                .error()
                .with_message(format!("the block `{}` has no layers", block.name.name))
                .with_labels(vec![Label::primary((), block.span.range()).with_message("only an input")])
                .with_notes(vec!["help: a block computes something from its input; add its layers".into()]),
        );
        return None;
    };
    let mut read = vec![false; layers.len()];
    for layer in layers {
        for input in &layer.inputs {
            if let Node::Layer(i) = input {
                if let Some(r) = i.checked_sub(first).and_then(|i| read.get_mut(i)) {
                    *r = true;
                }
            }
        }
    }
    if let Some(unread) = (0..last).find(|&i| !read[i]) {
        let (dangling, output) = (&layers[unread], &layers[last]);
        errors.push(
            Code::BlockOutput
                .error()
                .with_message(format!("the block `{}` has more than one output", block.name.name))
                .with_labels(vec![
                    Label::primary((), dangling.span.range()).with_message("nothing in the block reads this"),
                    Label::secondary((), output.span.range()).with_message("the block's output"),
                ])
                .with_notes(vec![
                    "note: a block's output is its last layer; every other layer must be read inside the block\n\
                     help: join the branches with `add(..)` or `concat(..)`, or remove the unused one"
                        .into(),
                ]),
        );
        return None;
    }
    Some(())
}

/// A diagnostic from inside a block, moved to the use: the use is the primary label, the
/// block's own labels become secondary ones.
fn at_use(mut d: Diagnostic, stmt: &LayerStmt, block: &BlockDecl) -> Diagnostic {
    let at = stmt.call.span.range();
    for label in &mut d.labels {
        label.style = netc_syntax::LabelStyle::Secondary;
    }
    // A diagnostic about the use itself (a block that uses itself) already points at it.
    if let Some(label) = d.labels.iter_mut().find(|l| l.range == at) {
        label.style = netc_syntax::LabelStyle::Primary;
        return d;
    }
    let message = match d.labels.first() {
        Some(_) => format!("in this use of the block `{}`", block.name.name),
        None => format!("the block `{}`, used here", block.name.name),
    };
    d.labels.insert(0, Label::primary((), stmt.call.span.range()).with_message(message));
    d
}
