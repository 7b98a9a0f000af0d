//! Checking `unit` definitions and their uses: every name of an expression resolved, calls of
//! functions and of other units checked for arity, other units inlined, recursion refused.

use crate::args::Scope;
use crate::errors;
use crate::model::*;
use crate::ops;
use netc_syntax::ast::{self, BinOp, Call, Expr, ExprKind, Ident, Value, ValueKind};
use netc_syntax::{did_you_mean, Code, Diagnostic, Label, Span};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

/// The checked units of a file, by name, and the names of those that failed (already reported),
/// so a use of one is not reported again as unknown.
#[derive(Default)]
pub(crate) struct Units {
    pub defs: HashMap<String, Arc<UnitDef>>,
    pub failed: HashSet<String>,
}

impl Units {
    /// Whether `name` is a unit the file defines, checked or not.
    pub fn defines(&self, name: &str) -> bool {
        self.defs.contains_key(name) || self.failed.contains(name)
    }
}

/// The elementwise functions an expression may call, with their argument counts. The prelude's
/// units (`neglu`, `softneglu`, `leaky_relu`) are called like the file's own units.
pub(crate) const FUNCTIONS: [(&str, usize); 13] = [
    ("relu", 1),
    ("min", 2),
    ("max", 2),
    ("abs", 1),
    ("exp", 1),
    ("log", 1),
    ("log1p", 1),
    ("sqrt", 1),
    ("tanh", 1),
    ("sigmoid", 1),
    ("softplus", 1),
    ("pow", 2),
    ("where", 3),
];

/// The unit's input in its expression.
const INPUT: &str = "x";
const NOISE: &str = "noise";
/// `learned(0.25)`, the default of a learned parameter.
const LEARNED: &str = "learned";

/// The terms a unit may have once the units it calls are inlined; bounds the work and the depth
/// of every later walk over the expression.
pub const MAX_UNIT_TERMS: usize = 4096;

/// netc's prelude: the built-in activations that are formulas, as units.
const PRELUDE: &str = include_str!("prelude.net");

/// The prelude's units, checked on first use. A prelude that does not check would be a bug of
/// netc (a test rules it out); it then defines no units, and lowering reports the missing one.
fn prelude() -> &'static Units {
    static UNITS: OnceLock<Units> = OnceLock::new();
    UNITS.get_or_init(|| {
        let Ok(file) = netc_syntax::parse(PRELUDE) else { return Units::default() };
        let mut errors = Vec::new();
        let units = check_units_with(&file, &Units::default(), true, &mut errors);
        if errors.is_empty() {
            units
        } else {
            Units::default()
        }
    })
}

/// The prelude unit a built-in activation lowers through, with its parameters' values; `None`
/// for the activations that are IR functions of their own (ReLU, sigmoid, tanh), a user's unit,
/// or a prelude that did not check.
pub fn prelude_unit(activation: &Activation, grad: MaskGrad) -> Option<UnitUse> {
    let (name, values) = match (activation, grad) {
        (Activation::NegLU, MaskGrad::Relu) => ("neglu_relu_grad", Vec::new()),
        (Activation::NegLU, MaskGrad::Exact) => ("neglu", Vec::new()),
        (Activation::SoftNegLU, _) => ("softneglu", Vec::new()),
        (Activation::LeakyRelu { alpha }, _) => ("leaky_relu", vec![UnitValue::Const(*alpha)]),
        _ => return None,
    };
    let def = prelude().defs.get(name)?;
    Some(UnitUse { def: Arc::clone(def), values })
}

/// What `name` would shadow if a unit or block took it, as diagnostics say it.
pub(crate) fn reserved(name: &str) -> Option<&'static str> {
    if prelude().defines(name) {
        Some("a unit of netc's prelude")
    } else {
        language_word(name)
    }
}

/// [`reserved`] without the prelude's names, which the prelude itself is checked against.
fn language_word(name: &str) -> Option<&'static str> {
    if ops::lookup(name).is_some() {
        Some("a built-in layer")
    } else if FUNCTIONS.iter().any(|(f, _)| *f == name) {
        Some("a function of unit expressions")
    } else if [INPUT, NOISE, LEARNED].contains(&name) {
        Some("a reserved word of unit expressions")
    } else {
        None
    }
}

pub(crate) fn shadowing(name: &Ident, what: &str, kind: &str) -> Diagnostic {
    Code::Shadowing
        .error()
        .with_message(format!("the {kind} `{}` has the name of {what}", name.name))
        .with_labels(vec![Label::primary((), name.span.range()).with_message(format!("shadows {what}"))])
        .with_notes(vec![format!("help: give the {kind} another name, e.g. `my_{}`", name.name)])
}

/// Checks every unit of `file`; a unit is checked after the units it calls.
pub(crate) fn check_units(file: &ast::File, errors: &mut Vec<Diagnostic>) -> Units {
    check_units_with(file, prelude(), false, errors)
}

/// [`check_units`] with the units of `prelude` callable in expressions. The prelude itself is
/// checked with none, and its names are built-in ones, so it skips the shadowing check.
fn check_units_with(file: &ast::File, prelude: &Units, checking_prelude: bool, errors: &mut Vec<Diagnostic>) -> Units {
    let mut units = Units::default();
    let mut decls: HashMap<&str, &ast::UnitDecl> = HashMap::new();
    let blocks: HashMap<&str, Span> = file.blocks.iter().map(|b| (b.name.name.as_str(), b.name.span)).collect();
    for decl in &file.units {
        let name = decl.name.name.as_str();
        // The prelude's units take built-in layers' names: they are those layers' definitions.
        let taken = if checking_prelude { None } else { reserved(name) };
        if let Some(what) = taken {
            errors.push(shadowing(&decl.name, what, "unit"));
        } else if let Some(&block) = blocks.get(name) {
            errors.push(errors::duplicate_name("unit or block", &decl.name, block));
        } else if let Some(first) = decls.get(name) {
            errors.push(errors::duplicate_name("unit", &decl.name, first.name.span));
        } else {
            decls.insert(name, decl);
            continue;
        }
        units.failed.insert(name.to_string());
    }
    // Kahn's algorithm over the call graph (a loop, not recursion: a chain of units may be as
    // long as the file); what remains lies on or behind a cycle.
    let callees: HashMap<&str, Vec<&Ident>> =
        decls.iter().map(|(&name, decl)| (name, unit_calls(decl, &decls))).collect();
    let mut waiting: HashMap<&str, usize> = callees.iter().map(|(&n, c)| (n, c.len())).collect();
    let mut callers: HashMap<&str, Vec<&str>> = HashMap::new();
    for (&caller, calls) in &callees {
        for callee in calls {
            callers.entry(callee.name.as_str()).or_default().push(caller);
        }
    }
    let mut ready: Vec<&str> =
        file.units.iter().map(|d| d.name.name.as_str()).filter(|n| waiting.get(n) == Some(&0)).collect();
    ready.dedup();
    while let Some(name) = ready.pop() {
        waiting.remove(name);
        let reserved = if checking_prelude { language_word } else { reserved };
        match check_unit(decls[name], &units, prelude, reserved, errors) {
            Some(def) => {
                units.defs.insert(name.to_string(), Arc::new(def));
            }
            None => {
                units.failed.insert(name.to_string());
            }
        }
        for &caller in callers.get(name).map_or(&[][..], Vec::as_slice) {
            if let Some(count) = waiting.get_mut(caller) {
                *count -= 1;
                if *count == 0 {
                    ready.push(caller);
                }
            }
        }
    }
    report_cycles(&waiting, &callees, &decls, errors);
    units.failed.extend(waiting.keys().map(|n| n.to_string()));
    units
}

/// One error per cycle among the units left waiting, at the call that closes it.
fn report_cycles(
    waiting: &HashMap<&str, usize>,
    callees: &HashMap<&str, Vec<&Ident>>,
    decls: &HashMap<&str, &ast::UnitDecl>,
    errors: &mut Vec<Diagnostic>,
) {
    let mut reported: HashSet<&str> = HashSet::new();
    let mut names: Vec<&str> = waiting.keys().copied().collect();
    names.sort_by_key(|n| decls[n].span.start);
    for start in names {
        if reported.contains(start) {
            continue;
        }
        // Follow calls to waiting units until one repeats: every waiting unit calls one.
        let mut path: Vec<(&str, &Ident)> = Vec::new();
        let mut at = start;
        let cycle_start = loop {
            if let Some(i) = path.iter().position(|(n, _)| *n == at) {
                break i;
            }
            let Some(call) = callees[at].iter().find(|c| waiting.contains_key(c.name.as_str())) else {
                break path.len();
            };
            path.push((at, call));
            at = call.name.as_str();
        };
        let cycle = &path[cycle_start..];
        if cycle.is_empty() || cycle.iter().any(|(n, _)| reported.contains(n)) {
            reported.extend(path.iter().map(|(n, _)| *n));
            continue;
        }
        reported.extend(path.iter().map(|(n, _)| *n));
        let (first, call) = cycle[0];
        let chain: Vec<&str> = cycle.iter().map(|(n, _)| *n).chain(std::iter::once(first)).collect();
        let mut labels =
            vec![Label::primary((), call.span.range()).with_message(format!("`{first}` calls `{}`", call.name))];
        for (name, call) in &cycle[1..] {
            labels
                .push(Label::secondary((), call.span.range()).with_message(format!("`{name}` calls `{}`", call.name)));
        }
        let message = if cycle.len() == 1 {
            format!("the unit `{first}` calls itself")
        } else {
            format!(
                "the units {} call each other in a cycle",
                chain.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" → ")
            )
        };
        errors.push(Code::Recursion.error().with_message(message).with_labels(labels).with_notes(vec![
            "note: a unit is inlined where it is called, so it cannot call itself, directly or through others".into(),
        ]));
    }
}

/// The calls in `decl`'s expressions of units the file defines.
fn unit_calls<'a>(decl: &'a ast::UnitDecl, decls: &HashMap<&str, &ast::UnitDecl>) -> Vec<&'a Ident> {
    let mut calls = Vec::new();
    let mut stack: Vec<&Expr> = std::iter::once(&decl.body).chain(&decl.grad).collect();
    while let Some(e) = stack.pop() {
        match &e.kind {
            ExprKind::Number(_) | ExprKind::Name(_) => {}
            ExprKind::Neg(a) => stack.push(a),
            ExprKind::Binary(_, a, b) => stack.extend([&**a, &**b]),
            ExprKind::Call { func, args } => {
                if decls.contains_key(func.name.as_str()) {
                    calls.push(func);
                }
                stack.extend(args.iter().map(|a| &a.value));
            }
        }
    }
    calls.sort_by_key(|c| c.span.start);
    calls
}

fn check_unit(
    decl: &ast::UnitDecl,
    units: &Units,
    prelude: &Units,
    reserved: fn(&str) -> Option<&'static str>,
    errors: &mut Vec<Diagnostic>,
) -> Option<UnitDef> {
    let before = errors.len();
    let params = unit_params(decl, reserved, errors);
    let mut c = Converter { params: &params, units, prelude, noises: 0, vars: 1, in_grad: false, errors };
    let body = c.expr(&decl.body);
    c.in_grad = true;
    let grad = decl.grad.as_ref().map(|g| c.expr(g));
    let (noises, vars) = (c.noises, c.vars);
    let (body, grad) = (body?, grad.map_or(Some(None), |g| g.map(Some))?);
    let terms = terms(&body) + grad.as_ref().map_or(0, terms);
    if terms > MAX_UNIT_TERMS {
        errors.push(
            Code::TooLong
                .error()
                .with_message(format!("the unit `{}` expands to {terms} terms", decl.name.name))
                .with_labels(vec![Label::primary((), decl.name.span.range()).with_message("this unit")])
                .with_notes(vec![format!(
                    "note: with the units it calls inlined, a unit may have at most {MAX_UNIT_TERMS} terms"
                )]),
        );
    }
    (errors.len() == before).then(|| UnitDef {
        name: decl.name.name.clone(),
        params,
        body,
        grad,
        noises,
        vars,
        span: decl.span,
    })
}

/// The parameters of a unit with their defaults: a number, or `learned(NUMBER)`.
fn unit_params(
    decl: &ast::UnitDecl,
    reserved: fn(&str) -> Option<&'static str>,
    errors: &mut Vec<Diagnostic>,
) -> Vec<UnitParam> {
    let mut params: Vec<UnitParam> = Vec::new();
    let mut spans: HashMap<&str, Span> = HashMap::new();
    for p in &decl.params {
        if let Some(&first) = spans.get(p.name.name.as_str()) {
            errors.push(errors::duplicate_name("parameter", &p.name, first));
            continue;
        }
        spans.insert(&p.name.name, p.name.span);
        if let Some(what) = reserved(&p.name.name) {
            errors.push(shadowing(&p.name, what, "parameter"));
            continue;
        }
        let default = match &p.default {
            None => {
                errors.push(
                    Code::ParamWithoutValue
                        .error()
                        .with_message(format!("the unit parameter `{}` has no default", p.name.name))
                        .with_labels(vec![Label::primary((), p.name.span.range()).with_message("no value")])
                        .with_notes(vec![format!(
                            "help: give it a constant, `{0} = 0.1`, or make it learned, `{0} = learned(0.25)`",
                            p.name.name
                        )]),
                );
                continue;
            }
            Some(value) => match unit_value(value) {
                Some(v) => v,
                None => {
                    errors.push(not_a_unit_value(&p.name.name, value));
                    continue;
                }
            },
        };
        params.push(UnitParam { name: p.name.name.clone(), default });
    }
    params
}

/// A number, or `learned(NUMBER)`.
fn unit_value(value: &Value) -> Option<UnitValue> {
    let number = |v: &Value| match v.kind {
        ValueKind::Int(i) => Some(i as f64),
        ValueKind::Float(f) => Some(f),
        _ => None,
    };
    match &value.kind {
        ValueKind::Call(call) if call.op.name == LEARNED => match call.args() {
            [arg] if arg.key.is_none() => number(&arg.value).map(UnitValue::Learned),
            _ => None,
        },
        _ => number(value).map(UnitValue::Const),
    }
}

fn not_a_unit_value(name: &str, value: &Value) -> Diagnostic {
    Code::WrongKind
        .error()
        .with_message(format!("`{name}` must be a number or `learned(NUMBER)`, found {}", value.kind.describe()))
        .with_labels(vec![Label::primary((), value.span.range()).with_message("not a unit parameter value")])
        .with_notes(vec![format!("help: `{name} = 0.1` is a constant, `{name} = learned(0.25)` a learned parameter")])
}

/// Turns expressions into [`UnitExpr`]s.
struct Converter<'a> {
    params: &'a [UnitParam],
    units: &'a Units,
    prelude: &'a Units,
    /// `noise` terms so far.
    noises: usize,
    /// Variables bound so far (`Var(0)` is the input).
    vars: usize,
    /// Whether the expression is the unit's `grad`.
    in_grad: bool,
    errors: &'a mut Vec<Diagnostic>,
}

impl Converter<'_> {
    /// The expression, or `None` when a part of it was wrong (reported).
    fn expr(&mut self, e: &Expr) -> Option<UnitExpr> {
        match &e.kind {
            ExprKind::Number(v) => Some(UnitExpr::Const(*v)),
            ExprKind::Name(name) => self.name(name, e.span),
            ExprKind::Neg(a) => Some(UnitExpr::Neg(Box::new(self.expr(a)?))),
            ExprKind::Binary(op, a, b) => {
                let (a, b) = (self.expr(a), self.expr(b));
                Some(UnitExpr::Binary(unit_op(*op), Box::new(a?), Box::new(b?)))
            }
            ExprKind::Call { func, args } => self.call(func, args, e.span),
        }
    }

    fn name(&mut self, name: &str, span: Span) -> Option<UnitExpr> {
        if name == INPUT {
            return Some(UnitExpr::Var(0));
        }
        if name == NOISE {
            if self.in_grad {
                self.errors.push(
                    Code::NoiseInGrad
                        .error()
                        .with_message("`noise` cannot be part of a unit's `grad`")
                        .with_labels(vec![Label::primary((), span.range()).with_message("noise in the derivative")])
                        .with_notes(vec![
                            "note: the derivative is evaluated in the backward pass, where no fresh noise is drawn; \
                             write the noise in the unit's expression"
                                .into(),
                        ]),
                );
                return None;
            }
            self.noises += 1;
            return Some(UnitExpr::Noise(self.noises - 1));
        }
        if let Some(i) = self.params.iter().position(|p| p.name == name) {
            return Some(UnitExpr::Param(i));
        }
        let known: Vec<&str> = [INPUT, NOISE].into_iter().chain(self.params.iter().map(|p| p.name.as_str())).collect();
        let mut d = Code::UnitUnknownName
            .error()
            .with_message(format!("unknown name `{name}` in a unit's expression"))
            .with_labels(vec![Label::primary((), span.range()).with_message("not `x`, a parameter or `noise`")]);
        d = d.with_notes(vec![match did_you_mean(name, known.iter().copied()) {
            Some(best) => format!("help: did you mean `{best}`?"),
            None => format!(
                "note: a unit's expression may read {}",
                known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
            ),
        }]);
        if self.units.defines(name) || self.prelude.defines(name) || FUNCTIONS.iter().any(|(f, _)| *f == name) {
            d = d.with_notes(vec![format!("help: `{name}` is a function; call it, e.g. `{name}(x)`")]);
        }
        self.errors.push(d);
        None
    }

    fn call(&mut self, func: &Ident, args: &[ast::ExprArg], span: Span) -> Option<UnitExpr> {
        if let Some(&(_, arity)) = FUNCTIONS.iter().find(|(f, _)| *f == func.name) {
            return self.function(func, arity, args, span);
        }
        if let Some(def) = self.units.defs.get(&func.name).or_else(|| self.prelude.defs.get(&func.name)) {
            let def = Arc::clone(def);
            return self.inline(&def, func, args, span);
        }
        if self.units.failed.contains(&func.name) {
            // Its own error is reported at its definition.
            return None;
        }
        let mut prelude: Vec<&str> = self.prelude.defs.keys().map(String::as_str).collect();
        prelude.sort_unstable();
        let candidates: Vec<&str> = FUNCTIONS
            .iter()
            .map(|(f, _)| *f)
            .chain(prelude.iter().copied())
            .chain(self.units.defs.keys().map(String::as_str))
            .collect();
        let note = match did_you_mean(&func.name, candidates.iter().copied()) {
            Some(best) => format!("help: did you mean `{best}`?"),
            None => {
                let functions = FUNCTIONS.iter().map(|(f, _)| *f).chain(prelude.iter().copied());
                format!(
                    "note: the functions are {}, and the units defined above",
                    functions.collect::<Vec<_>>().join(", ")
                )
            }
        };
        self.errors.push(
            Code::UnitUnknownName
                .error()
                .with_message(format!("unknown function `{}` in a unit's expression", func.name))
                .with_labels(vec![Label::primary((), func.span.range()).with_message("not a function or a unit")])
                .with_notes(vec![note]),
        );
        None
    }

    fn function(&mut self, func: &Ident, arity: usize, args: &[ast::ExprArg], span: Span) -> Option<UnitExpr> {
        if let Some(key) = args.iter().find_map(|a| a.key.as_ref()) {
            self.errors.push(
                Code::UnknownArgument
                    .error()
                    .with_message(format!("the function `{}` takes no keyword arguments", func.name))
                    .with_labels(vec![Label::primary((), key.span.range()).with_message("keyword argument")]),
            );
            return None;
        }
        if args.len() != arity {
            self.errors.push(arity_error(&func.name, arity, args.len(), span, "function"));
            return None;
        }
        let values: Vec<Option<UnitExpr>> = args.iter().map(|a| self.expr(&a.value)).collect();
        let mut values: Vec<Box<UnitExpr>> =
            values.into_iter().collect::<Option<Vec<_>>>()?.into_iter().map(Box::new).collect();
        let mut next = || values.remove(0);
        let mut unary = |f| Some(UnitExpr::Func(f, next()));
        match func.name.as_str() {
            "relu" => unary(UnitFn::Relu),
            "abs" => unary(UnitFn::Abs),
            "exp" => unary(UnitFn::Exp),
            "log" => unary(UnitFn::Log),
            "log1p" => unary(UnitFn::Log1p),
            "sqrt" => unary(UnitFn::Sqrt),
            "tanh" => unary(UnitFn::Tanh),
            "sigmoid" => unary(UnitFn::Sigmoid),
            "softplus" => unary(UnitFn::Softplus),
            "min" => Some(UnitExpr::Binary(UnitOp::Min, next(), next())),
            "max" => Some(UnitExpr::Binary(UnitOp::Max, next(), next())),
            "pow" => Some(UnitExpr::Binary(UnitOp::Pow, next(), next())),
            // `where`, the last of the table.
            _ => Some(UnitExpr::Where(next(), next(), next())),
        }
    }

    /// A call of an earlier unit, `unit(input, param=value, ...)`, inlined.
    fn inline(&mut self, callee: &UnitDef, func: &Ident, args: &[ast::ExprArg], span: Span) -> Option<UnitExpr> {
        let Some((input, rest)) = args.split_first().filter(|(first, _)| first.key.is_none()) else {
            self.errors.push(
                Code::Arity
                    .error()
                    .with_message(format!("the unit `{}` needs its input as the first argument", func.name))
                    .with_labels(vec![Label::primary((), span.range()).with_message("no input given")])
                    .with_notes(vec![format!("help: write `{}(x)`", func.name)]),
            );
            return None;
        };
        let input = self.expr(&input.value);
        let mut given: Vec<Option<(UnitExpr, Span)>> = vec![None; callee.params.len()];
        let mut ok = input.is_some();
        for (position, arg) in rest.iter().enumerate() {
            let index = match &arg.key {
                Some(key) => match callee.params.iter().position(|p| p.name == key.name) {
                    Some(i) => i,
                    None => {
                        let names = callee.params.iter().map(|p| p.name.as_str());
                        let mut d = Code::UnknownArgument
                            .error()
                            .with_message(format!("the unit `{}` has no parameter `{}`", func.name, key.name))
                            .with_labels(vec![Label::primary((), key.span.range()).with_message("unknown parameter")]);
                        if let Some(best) = did_you_mean(&key.name, names) {
                            d = d.with_notes(vec![format!("help: did you mean `{best}`?")]);
                        }
                        self.errors.push(d);
                        ok = false;
                        continue;
                    }
                },
                None if position < callee.params.len() => position,
                None => {
                    self.errors.push(arity_error(&func.name, callee.params.len() + 1, args.len(), span, "unit"));
                    ok = false;
                    continue;
                }
            };
            if let Some((_, first)) = &given[index] {
                self.errors.push(errors::duplicate_argument(&callee.params[index].name, *first, arg.span));
                ok = false;
                continue;
            }
            match self.expr(&arg.value) {
                Some(v) => given[index] = Some((v, arg.span)),
                None => ok = false,
            }
        }
        let mut values = Vec::with_capacity(callee.params.len());
        for (param, given) in callee.params.iter().zip(given) {
            match (given, param.default) {
                (Some((v, _)), _) => values.push(v),
                (None, UnitValue::Const(c)) => values.push(UnitExpr::Const(c)),
                (None, UnitValue::Learned(_)) => {
                    self.errors.push(
                        Code::LearnedMisuse
                            .error()
                            .with_message(format!(
                                "the learned parameter `{}` of `{}` needs a value inside another unit",
                                param.name, func.name
                            ))
                            .with_labels(vec![Label::primary((), span.range()).with_message(format!("`{}` is learned", param.name))])
                            .with_notes(vec![format!(
                                "note: only the unit a layer uses has learned parameters; a unit called in an expression is \
                                 inlined and needs constants\nhelp: give it a value: `{}(x, {}=0.25)`, or make it a \
                                 parameter of this unit",
                                func.name, param.name
                            )]),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        let input = input?;
        let renaming = Renaming { values: &values, noise_offset: self.noises, var_offset: self.vars };
        self.noises += callee.noises;
        self.vars += callee.vars;
        match &callee.grad {
            None => Some(renaming.apply(&callee.body, &input)),
            Some(grad) => {
                // The callee's input becomes a variable of its own, the one its `grad` is about.
                let var = UnitExpr::Var(renaming.var_offset);
                Some(UnitExpr::Custom {
                    var: renaming.var_offset,
                    arg: Box::new(input),
                    body: Box::new(renaming.apply(&callee.body, &var)),
                    grad: Box::new(renaming.apply(grad, &var)),
                })
            }
        }
    }
}

/// How an inlined unit's expression maps into its caller's.
struct Renaming<'a> {
    /// The value of each of the callee's parameters, in the caller's terms.
    values: &'a [UnitExpr],
    noise_offset: usize,
    /// The caller's variable that the callee's `Var(0)` would be; the callee's other
    /// variables follow it.
    var_offset: usize,
}

impl Renaming<'_> {
    fn apply(&self, e: &UnitExpr, input: &UnitExpr) -> UnitExpr {
        let go = |e: &UnitExpr| Box::new(self.apply(e, input));
        match e {
            UnitExpr::Var(0) => input.clone(),
            UnitExpr::Var(v) => UnitExpr::Var(v + self.var_offset),
            UnitExpr::Const(c) => UnitExpr::Const(*c),
            UnitExpr::Param(i) => self.values[*i].clone(),
            UnitExpr::Noise(k) => UnitExpr::Noise(k + self.noise_offset),
            UnitExpr::Neg(a) => UnitExpr::Neg(go(a)),
            UnitExpr::Binary(op, a, b) => UnitExpr::Binary(*op, go(a), go(b)),
            UnitExpr::Func(f, a) => UnitExpr::Func(*f, go(a)),
            UnitExpr::Where(c, a, b) => UnitExpr::Where(go(c), go(a), go(b)),
            UnitExpr::Custom { var, arg, body, grad } => {
                UnitExpr::Custom { var: var + self.var_offset, arg: go(arg), body: go(body), grad: go(grad) }
            }
        }
    }
}

/// The number of terms of an expression.
pub(crate) fn terms(e: &UnitExpr) -> usize {
    let mut count = 0;
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        count += 1;
        match e {
            UnitExpr::Var(_) | UnitExpr::Const(_) | UnitExpr::Param(_) | UnitExpr::Noise(_) => {}
            UnitExpr::Neg(a) | UnitExpr::Func(_, a) => stack.push(a),
            UnitExpr::Binary(_, a, b) => stack.extend([&**a, &**b]),
            UnitExpr::Where(c, a, b) => stack.extend([&**c, &**a, &**b]),
            UnitExpr::Custom { arg, body, grad, .. } => stack.extend([&**arg, &**body, &**grad]),
        }
    }
    count
}

fn arity_error(name: &str, want: usize, got: usize, span: Span, kind: &str) -> Diagnostic {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    Code::Arity
        .error()
        .with_message(format!(
            "the {kind} `{name}` takes {want} argument{}, but {got} {} given",
            plural(want),
            if got == 1 { "is" } else { "are" }
        ))
        .with_labels(vec![Label::primary((), span.range()).with_message(format!("{got} argument{}", plural(got)))])
}

fn unit_op(op: BinOp) -> UnitOp {
    match op {
        BinOp::Add => UnitOp::Add,
        BinOp::Sub => UnitOp::Sub,
        BinOp::Mul => UnitOp::Mul,
        BinOp::Div => UnitOp::Div,
        BinOp::Less => UnitOp::Less,
        BinOp::LessEqual => UnitOp::LessEqual,
        BinOp::Greater => UnitOp::Greater,
        BinOp::GreaterEqual => UnitOp::GreaterEqual,
        BinOp::Equal => UnitOp::Equal,
        BinOp::NotEqual => UnitOp::NotEqual,
    }
}

/// A layer that uses a unit, `prelu` or `noisy_relu(std=0.2)`: each parameter's value at this
/// use. A number overrides a constant, or a learned parameter's initial value; `learned(v)` is
/// accepted for learned parameters only. Net parameters may be given as values.
pub(crate) fn unit_use(
    def: &Arc<UnitDef>,
    call: &Call,
    scope: &Scope,
    errors: &mut Vec<Diagnostic>,
) -> Option<UnitUse> {
    let mut values: Vec<UnitValue> = def.params.iter().map(|p| p.default).collect();
    let mut given: Vec<Option<Span>> = vec![None; def.params.len()];
    let before = errors.len();
    for (position, arg) in call.args().iter().enumerate() {
        let index = match &arg.key {
            Some(key) => match def.params.iter().position(|p| p.name == key.name) {
                Some(i) => i,
                None => {
                    let mut d = Code::UnknownArgument
                        .error()
                        .with_message(format!("the unit `{}` has no parameter `{}`", def.name, key.name))
                        .with_labels(vec![Label::primary((), key.span.range()).with_message("unknown parameter")]);
                    let note = match did_you_mean(&key.name, def.params.iter().map(|p| p.name.as_str())) {
                        Some(best) => format!("help: did you mean `{best}`?"),
                        None => format!("note: `{}`'s parameters: {}", def.name, parameter_list(def)),
                    };
                    d = d.with_notes(vec![note]);
                    errors.push(d);
                    continue;
                }
            },
            None if position < def.params.len() && call.args()[..position].iter().all(|a| a.key.is_none()) => position,
            None => {
                errors.push(
                    Code::Positional
                        .error()
                        .with_message(format!("too many positional arguments for the unit `{}`", def.name))
                        .with_labels(vec![
                            Label::primary((), arg.span.range()).with_message("no parameter left for this")
                        ])
                        .with_notes(vec![format!("note: `{}`'s parameters: {}", def.name, parameter_list(def))]),
                );
                continue;
            }
        };
        if let Some(first) = given[index] {
            errors.push(errors::duplicate_argument(&def.params[index].name, first, arg.span));
            continue;
        }
        given[index] = Some(arg.span);
        let Some(value) = scope.resolve(&arg.value) else { continue };
        let param = &def.params[index];
        match (unit_value(&value), param.default) {
            (Some(UnitValue::Learned(_)), UnitValue::Const(_)) => errors.push(
                Code::LearnedMisuse
                    .error()
                    .with_message(format!(
                        "`{}` is a constant of the unit `{}`; it cannot be learned",
                        param.name, def.name
                    ))
                    .with_labels(vec![Label::primary((), arg.value.span.range()).with_message("a learned value")])
                    .with_notes(vec![format!(
                        "help: declare it learned in the unit, `{} = learned(..)`, or give a number here",
                        param.name
                    )]),
            ),
            (Some(UnitValue::Const(v) | UnitValue::Learned(v)), UnitValue::Learned(_)) => {
                values[index] = UnitValue::Learned(v);
            }
            (Some(v), UnitValue::Const(_)) => values[index] = v,
            (None, _) => errors.push(not_a_unit_value(&param.name, &arg.value)),
        }
    }
    (errors.len() == before).then(|| UnitUse { def: Arc::clone(def), values })
}

fn parameter_list(def: &UnitDef) -> String {
    if def.params.is_empty() {
        return "none".into();
    }
    def.params.iter().map(|p| format!("`{}`", p.name)).collect::<Vec<_>>().join(", ")
}
