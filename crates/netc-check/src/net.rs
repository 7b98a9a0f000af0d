//! Checking one `net` block: statement order, names, arguments and shapes.
//!
//! [`check_net`] walks the body once with a [`Walker`], which keeps what the statements so far
//! defined; each kind of statement (the input, a layer, a join, the loss) has its own method,
//! and [`Walker::finish`] runs the whole-net rules and assembles the [`Net`].

use crate::args::{layer_ref, match_args, Args, Scope};
use crate::errors;
use crate::model::*;
use crate::ops::{self, shape_text, OpError, Role};
use netc_syntax::ast::{self, Ident, InputDecl, LayerStmt, Stmt, Value, ValueKind};
use netc_syntax::{Diagnostic, Severity, Span};
use std::collections::{HashMap, HashSet};

pub fn check_net(
    decl: &ast::NetDecl,
    params: &HashMap<String, Option<Value>>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Net> {
    let mut walker = Walker::new(decl, params, errors.len());
    for stmt in &decl.body {
        walker.statement(stmt, errors);
    }
    walker.finish(errors)
}

/// A layer's checked parts, before it gets its name. Its shape is `None` once an error upstream
/// made it unknown, so one mistake is reported once and not again by every layer after it.
struct Built {
    op: Op,
    inputs: Vec<Node>,
    shape: Option<Shape>,
    lr_mult: f64,
    wd_mult: f64,
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

/// The state of the walk over one net body.
struct Walker<'a> {
    decl: &'a ast::NetDecl,
    params: &'a HashMap<String, Option<Value>>,
    scope: Scope<'a>,
    /// How many diagnostics came before this net's.
    before: usize,
    input: Option<Input>,
    layers: Vec<Layer>,
    loss: Option<Loss>,
    /// The node the next layer reads by default, and its shape.
    current: Option<(Node, Option<Shape>)>,
    names: Names<'a>,
    /// The names the user gave, which automatic names skip.
    explicit: HashSet<&'a str>,
    counters: HashMap<&'a str, usize>,
    /// Whether a loss was written, even a wrong one: then "no loss" would repeat its error.
    loss_written: bool,
    /// The first layer, when it comes before the input.
    early_layer: Option<Span>,
}

impl<'a> Walker<'a> {
    fn new(decl: &'a ast::NetDecl, params: &'a HashMap<String, Option<Value>>, before: usize) -> Walker<'a> {
        let mut defined: HashMap<&str, Vec<Span>> = HashMap::new();
        let mut explicit = HashSet::new();
        for name in decl.body.iter().filter_map(|s| match s {
            Stmt::Layer(l) => l.name.as_ref(),
            Stmt::Input(i) => Some(&i.name),
        }) {
            defined.entry(name.name.as_str()).or_default().push(name.span);
            explicit.insert(name.name.as_str());
        }
        Walker {
            decl,
            params,
            scope: Scope { params, used: Default::default() },
            before,
            input: None,
            layers: Vec::new(),
            loss: None,
            current: None,
            names: Names {
                seen: HashMap::new(),
                order: Vec::new(),
                suggestions_left: MAX_NAME_SUGGESTIONS.into(),
                defined,
            },
            explicit,
            counters: HashMap::new(),
            loss_written: false,
            early_layer: None,
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
            Stmt::Input(input) => self.input(input, errors),
            Stmt::Layer(stmt) if stmt.is_loss => self.loss(stmt, errors),
            Stmt::Layer(stmt) => self.layer(stmt, errors),
        }
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
        // `None` from `resolve`: a parameter without a value, already reported.
        let shape = self.scope.resolve(&decl.shape).and_then(|value| {
            let shape = input_shape(&value);
            match &shape {
                None => errors.push(errors::bad_shape_decl(&decl.shape)),
                Some(s) if ops::elements(s).is_none() => {
                    errors.push(errors::too_large(decl.shape.span, format!("input `{}`", decl.name.name), s));
                    return None;
                }
                Some(_) => {}
            }
            shape
        });
        declare(&mut self.names, &decl.name, Node::Input, shape.clone(), errors);
        self.current = Some((Node::Input, shape.clone()));
        self.input = Some(Input { name: decl.name.name.clone(), shape: shape.unwrap_or_default(), span: decl.span });
    }

    fn loss(&mut self, stmt: &LayerStmt, errors: &mut Vec<Diagnostic>) {
        self.loss_written = true;
        let Some(classes) = check_loss(stmt, &self.scope, errors) else {
            return;
        };
        let Some((node, shape)) = source(stmt, &self.names, &self.current, errors) else {
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
        if self.input.is_none() && self.current.is_none() {
            // Reported at the input declaration, or as a net without input.
            self.early_layer = Some(stmt.span);
            // Keep going so later statements are still checked for their own mistakes.
            self.current = Some((Node::Input, None));
        }
        let op_name = stmt.call.op.name.as_str();
        let def = ops::lookup(op_name);
        if def.is_some_and(|d| matches!(d.role, Role::Loss)) {
            self.loss_written = true;
        }
        let layer_name = match &stmt.name {
            Some(n) => n.name.clone(),
            None => auto_name(op_name, &self.explicit, &mut self.counters),
        };
        let checked = match def.map(|d| (d.signature, d.role)) {
            Some((signature, Role::Layer(build))) => {
                let typed = LayerCall { stmt, name: &layer_name, signature, build };
                check_layer(&typed, &self.scope, &self.names, &self.current, errors)
            }
            Some((_, Role::Join(join))) => check_join(stmt, join(), &self.names, errors),
            Some((_, Role::Loss)) => {
                errors.push(errors::loss_as_layer(&stmt.call.op));
                None
            }
            None => {
                errors.push(errors::unknown_op(&stmt.call.op, "layer", &ops::names(false)));
                None
            }
        };
        let index = self.layers.len();
        let Some(Built { op, inputs, shape, lr_mult, wd_mult }) = checked else {
            // Unknown output: later layers still get their own checks, without shapes.
            self.current = Some((Node::Layer(index), None));
            if let Some(name) = &stmt.name {
                declare(&mut self.names, name, Node::Layer(index), None, errors);
            }
            self.layers.push(placeholder(layer_name, stmt.span));
            return;
        };
        if let Some(name) = &stmt.name {
            declare(&mut self.names, name, Node::Layer(index), shape.clone(), errors);
        }
        self.current = Some((Node::Layer(index), shape.clone()));
        self.layers.push(Layer {
            name: layer_name,
            op,
            inputs,
            out_shape: shape.unwrap_or_default(),
            lr_mult,
            wd_mult,
            span: stmt.span,
        });
    }

    /// The rules over the whole net, then the net itself if this net had no error.
    fn finish(self, errors: &mut Vec<Diagnostic>) -> Option<Net> {
        let decl = self.decl;
        let failed = |errors: &[Diagnostic]| errors[self.before..].iter().any(|d| d.severity == Severity::Error);
        if !decl.body.iter().any(|s| matches!(s, Stmt::Input(_))) {
            errors.push(errors::no_input(&decl.name));
        }
        if self.loss.is_none() && !self.loss_written {
            errors.push(errors::no_loss(&decl.name));
        }
        if !failed(errors) {
            check_populations(&self.layers, self.loss.as_ref(), errors);
        }
        let used = self.scope.used.into_inner();
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
    Layer { name, op: Op::Flatten, inputs: vec![], out_shape: vec![], lr_mult: 1.0, wd_mult: 1.0, span }
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

fn check_layer(
    call: &LayerCall,
    scope: &Scope,
    names: &Names,
    current: &Option<(Node, Option<Shape>)>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Built> {
    let LayerCall { stmt, name: layer_name, signature, build } = *call;
    let before = errors.len();
    let args = match_args(&stmt.call, &stmt.call.op.name, signature, scope, errors);
    // With a wrong argument left out, rules over several arguments and the shape would only
    // report the same mistake again (or worse, a different one).
    let args_ok = errors.len() == before;
    let src = source(stmt, names, current, errors);
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
                    .chain(params.iter().map(|p| (p.name, &p.shape)))
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
        lr_mult: args.f64_or("lr_mult", 1.0),
        wd_mult: args.f64_or("wd_mult", 1.0),
    })
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
    let built = |op, inputs, shape| Some(Built { op, inputs, shape, lr_mult: 1.0, wd_mult: 1.0 });
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
