//! Checking one `net` block: statement order, names, arguments and shapes.

use crate::args::{layer_ref, match_args, Scope};
use crate::errors;
use crate::model::*;
use crate::ops::{self, shape_text, OpError};
use netc_syntax::ast::{self, Ident, Stmt, Value, ValueKind};
use netc_syntax::{Diagnostic, Span};
use std::collections::HashMap;

/// A node while checking: its shape is `None` once an error upstream made it unknown, so one
/// mistake is reported once and not again by every layer after it.
/// A layer's checked parts, before it gets its name.
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
    seen: HashMap<String, Seen>,
    defined: Vec<&'a Ident>,
}

pub fn check_net(
    decl: &ast::NetDecl,
    params: &HashMap<String, Option<Value>>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Net> {
    let before = errors.len();
    let scope = Scope { params, used: Default::default() };
    let mut input: Option<Input> = None;
    let mut layers: Vec<Layer> = Vec::new();
    let mut loss: Option<Loss> = None;
    // The node the next layer reads by default, and its shape.
    let mut current: Option<(Node, Option<Shape>)> = None;

    // Every name the body defines, for names used before their definition.
    let defined: Vec<&Ident> = decl
        .body
        .iter()
        .filter_map(|s| match s {
            Stmt::Layer(l) => l.name.as_ref(),
            Stmt::Input(i) => Some(&i.name),
        })
        .collect();
    let explicit: Vec<&str> = defined.iter().map(|n| n.name.as_str()).collect();
    let mut names = Names { seen: HashMap::new(), defined };
    let declares_input = decl.body.iter().any(|s| matches!(s, Stmt::Input(_)));
    // Whether a loss was written, even a wrong one: then "no loss" would repeat its error.
    let mut loss_written = false;
    // The first layer, when it comes before the input.
    let mut early_layer: Option<Span> = None;
    let mut counters: HashMap<&str, usize> = HashMap::new();

    for stmt in &decl.body {
        if let Some(l) = &loss {
            let span = match stmt {
                Stmt::Input(i) => i.span,
                Stmt::Layer(l) => l.span,
            };
            errors.push(errors::misplaced(
                span,
                "statement after the loss",
                Some((l.span, "the loss")),
                "the loss must be the last statement of a net",
            ));
            continue;
        }
        match stmt {
            Stmt::Input(decl_input) => {
                if let Some(first) = &input {
                    errors.push(errors::misplaced(
                        decl_input.span,
                        "a net has one input",
                        Some((first.span, "first input")),
                        "join several inputs by concatenating them into one",
                    ));
                    continue;
                }
                if let Some(first_layer) = early_layer {
                    errors.push(errors::misplaced(
                        decl_input.span,
                        "the input must come before the layers",
                        Some((first_layer, "the first layer")),
                        "move the input declaration to the top of the net",
                    ));
                }
                // `None` from `resolve`: a parameter without a value, already reported.
                let shape = scope.resolve(&decl_input.shape).and_then(|value| {
                    let shape = input_shape(&value);
                    match &shape {
                        None => errors.push(errors::bad_shape_decl(&decl_input.shape)),
                        Some(s) if ops::elements(s).is_none() => {
                            errors.push(errors::too_large(
                                decl_input.shape.span,
                                format!("input `{}`", decl_input.name.name),
                                s,
                            ));
                            return None;
                        }
                        Some(_) => {}
                    }
                    shape
                });
                declare(&mut names, &decl_input.name, Node::Input, shape.clone(), errors);
                current = Some((Node::Input, shape.clone()));
                input = Some(Input {
                    name: decl_input.name.name.clone(),
                    shape: shape.unwrap_or_default(),
                    span: decl_input.span,
                });
            }
            Stmt::Layer(stmt) if stmt.is_loss => {
                loss_written = true;
                let Some(classes) = check_loss(stmt, &scope, errors) else {
                    continue;
                };
                let (node, shape) = match source(stmt, &names, &current, errors) {
                    Some(found) => found,
                    None => continue,
                };
                if let Some(shape) = shape {
                    if shape != [classes] && shape != [classes, 1, 1] {
                        let from_span = match node {
                            Node::Input => input.as_ref().map_or(stmt.span, |i| i.span),
                            Node::Layer(i) => layers.get(i).map_or(stmt.span, |l| l.span),
                        };
                        errors.push(errors::shape_mismatch(
                            format!("the loss expects {classes} class scores, but receives {}", shape_text(&shape)),
                            vec![(stmt.call.span, format!("classes={classes}")), (from_span, format!("gives {}", shape_text(&shape)))],
                            vec![format!("help: end the net with a layer of {classes} outputs, e.g. `conv({classes}, k=1)` or `dense({classes})`")],
                        ));
                    }
                }
                loss = Some(Loss { classes, input: node, span: stmt.span });
            }
            Stmt::Layer(stmt) => {
                if input.is_none() && current.is_none() {
                    // Reported at the input declaration, or as a net without input.
                    early_layer = Some(stmt.span);
                    // Keep going so later statements are still checked for their own mistakes.
                    current = Some((Node::Input, None));
                }
                let op_name = stmt.call.op.name.as_str();
                if ops::LOSS_OPS.contains(&op_name) {
                    loss_written = true;
                }
                let layer_name = match &stmt.name {
                    Some(n) => n.name.clone(),
                    None => auto_name(op_name, &explicit, &mut counters),
                };
                let checked = match op_name {
                    "add" | "concat" => check_join(stmt, &names, errors),
                    _ => check_layer(stmt, &layer_name, &scope, &names, &current, errors),
                };
                let index = layers.len();
                let Some(Built { op, inputs, shape, lr_mult, wd_mult }) = checked else {
                    // Unknown output: later layers still get their own checks, without shapes.
                    current = Some((Node::Layer(index), None));
                    if let Some(name) = &stmt.name {
                        declare(&mut names, name, Node::Layer(index), None, errors);
                    }
                    layers.push(placeholder(layer_name, stmt.span));
                    continue;
                };
                if let Some(name) = &stmt.name {
                    declare(&mut names, name, Node::Layer(index), shape.clone(), errors);
                }
                current = Some((Node::Layer(index), shape.clone()));
                layers.push(Layer {
                    name: layer_name,
                    op,
                    inputs,
                    out_shape: shape.unwrap_or_default(),
                    lr_mult,
                    wd_mult,
                    span: stmt.span,
                });
            }
        }
    }
    if !declares_input {
        errors.push(errors::no_input(&decl.name));
    }
    if loss.is_none() && !loss_written {
        errors.push(errors::no_loss(&decl.name));
    }
    if !errors[before..].iter().any(|d| d.severity == netc_syntax::Severity::Error) {
        check_populations(&layers, loss.as_ref(), errors);
    }
    let used = scope.used.into_inner();
    for p in &decl.params {
        if !used.contains(&p.name.name) {
            errors.push(errors::unused_param(&p.name));
        }
    }
    let failed = errors[before..].iter().any(|d| d.severity == netc_syntax::Severity::Error);
    match (input, loss) {
        (Some(input), Some(loss)) if !failed => Some(Net {
            name: decl.name.name.clone(),
            params: decl
                .params
                .iter()
                .filter_map(|p| params.get(&p.name.name)?.as_ref().map(|v| (p.name.name.clone(), param_value(v))))
                .collect(),
            input,
            layers,
            loss,
            span: decl.span,
        }),
        _ => None,
    }
}

/// Every `dale` population must be read by weight layers only (through ops that keep units),
/// and by at least one.
fn check_populations(layers: &[Layer], loss: Option<&Loss>, errors: &mut Vec<Diagnostic>) {
    for (index, dale) in layers.iter().enumerate() {
        if !matches!(dale.op, Op::Dale { .. }) {
            continue;
        }
        let (mut weight_layers, mut misread) = (0, false);
        let mut carriers = vec![Node::Layer(index)];
        while let Some(node) = carriers.pop() {
            for (reader_index, reader) in layers.iter().enumerate().filter(|(_, l)| l.inputs.contains(&node)) {
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

fn declare(names: &mut Names, name: &Ident, node: Node, shape: Option<Shape>, errors: &mut Vec<Diagnostic>) {
    if let Some(first) = names.seen.get(&name.name) {
        errors.push(errors::duplicate_name("name", name, first.span));
        return;
    }
    names.seen.insert(name.name.clone(), Seen { node, shape, span: name.span });
}

/// `conv1`, `conv2`, ... skipping names the user gave explicitly.
fn auto_name<'a>(op: &'a str, explicit: &[&str], counters: &mut HashMap<&'a str, usize>) -> String {
    let counter = counters.entry(op).or_insert(0);
    loop {
        *counter += 1;
        let name = format!("{op}{counter}");
        if !explicit.contains(&name.as_str()) {
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
    stmt: &ast::LayerStmt,
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
    match names.seen.get(&name.name) {
        Some(seen) => Some((seen.node, seen.shape.clone())),
        None => {
            let known: Vec<&str> = names.seen.keys().map(String::as_str).collect();
            let later = names.defined.iter().find(|d| d.name == name.name && d.span.start > name.span.start);
            errors.push(errors::undefined_name(name, &known, later.map(|d| d.span)));
            None
        }
    }
}

fn check_layer(
    stmt: &ast::LayerStmt,
    layer_name: &str,
    scope: &Scope,
    names: &Names,
    current: &Option<(Node, Option<Shape>)>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Built> {
    let op_name = stmt.call.op.name.as_str();
    if ops::LOSS_OPS.contains(&op_name) {
        errors.push(errors::loss_as_layer(&stmt.call.op));
        return None;
    }
    let Some(signature) = ops::signature(op_name) else {
        errors.push(errors::unknown_op(&stmt.call.op, "layer", ops::LAYER_OPS));
        return None;
    };
    let before = errors.len();
    let args = match_args(&stmt.call, op_name, &signature, scope, errors);
    // With a wrong argument left out, rules over several arguments and the shape would only
    // report the same mistake again (or worse, a different one).
    let args_ok = errors.len() == before;
    let src = source(stmt, names, current, errors);
    let mut op = match ops::build(op_name, &args) {
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

fn op_error(e: OpError, args: &crate::args::Args, stmt: &ast::LayerStmt) -> Diagnostic {
    let span = match e.at {
        Some(arg) if args.has(arg) => args.span_of(arg),
        _ => stmt.call.span,
    };
    errors::shape(e.message, span, e.label, e.notes)
}

/// `add(a, b, ...)` and `concat(a, b, ...)`.
fn check_join(stmt: &ast::LayerStmt, names: &Names, errors: &mut Vec<Diagnostic>) -> Option<Built> {
    let built = |op, inputs, shape| Some(Built { op, inputs, shape, lr_mult: 1.0, wd_mult: 1.0 });
    let op = &stmt.call.op;
    if let Some(from) = &stmt.from {
        errors.push(errors::from_with_join(from, op));
    }
    let args = stmt.call.args();
    if args.len() < 2 {
        errors.push(errors::needs_refs(op, stmt.call.span));
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
                errors.push(errors::keyword_in_join(key, op));
                keyword_reported = true;
            }
            ok = false;
            continue;
        }
        let Some(name) = layer_ref(&arg.value) else {
            errors.push(errors::ref_expected(&arg.value));
            ok = false;
            continue;
        };
        match lookup(&name, names, errors) {
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
        return built(if op.name == "add" { Op::Add } else { Op::Concat }, inputs, None);
    }
    let first = &known[0].1;
    if op.name == "add" {
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
        return built(Op::Add, inputs, Some(first.clone()));
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
    out[0] = known.iter().map(|(_, s)| s[0]).sum();
    if ops::elements(&out).is_none() {
        errors.push(errors::too_large(stmt.call.span, format!("output of `{}`", op.name), &out));
        return None;
    }
    built(Op::Concat, inputs, Some(out))
}

fn check_loss(stmt: &ast::LayerStmt, scope: &Scope, errors: &mut Vec<Diagnostic>) -> Option<usize> {
    let op = &stmt.call.op;
    if !ops::LOSS_OPS.contains(&op.name.as_str()) {
        if ops::signature(&op.name).is_some() {
            errors.push(errors::not_a_loss(op));
        } else {
            errors.push(errors::unknown_op(op, "loss", ops::LOSS_OPS));
        }
        return None;
    }
    let signature = ops::signature(&op.name).unwrap_or_default();
    let args = match_args(&stmt.call, &op.name, &signature, scope, errors);
    args.has("classes").then(|| args.usize_or("classes", 1))
}
