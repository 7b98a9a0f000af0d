//! Argument lists: matching positional and keyword arguments against an operation's signature,
//! substituting net parameters, and reading typed, range-checked values.

use crate::errors;
use netc_syntax::ast::{Call, Ident, Value, ValueKind};
use netc_syntax::{did_you_mean, Diagnostic, Span};
use std::collections::HashMap;

/// The type and range an argument accepts.
#[derive(Clone, Copy, Debug)]
pub enum Ty {
    /// An integer ≥ 1.
    Positive,
    /// An integer ≥ 0.
    Count,
    /// A number in [0, 1].
    Fraction,
    /// A number in [0, 1).
    Probability,
    /// A number ≥ 0.
    NonNegative,
    /// A number > 0.
    PositiveNumber,
    Bool,
    /// An integer ≥ 1, or a list `[h, w]` of two.
    Kernel,
    /// One of the listed words.
    Word(&'static [&'static str]),
    /// A number ≥ 0 for a layer's weights and biases alike, or a list `[weights, biases]`.
    Mult,
    /// A weight initialisation: `normal(std=S)`, `xavier` or `he`, as the train block's `init`.
    Init,
    /// An integer ≥ 0 for every side, or a list `[top, bottom, left, right]`.
    Pad,
}

impl Ty {
    fn describe(self) -> String {
        match self {
            Ty::Positive => "a positive integer".into(),
            Ty::Count => "a non-negative integer".into(),
            Ty::Fraction => "a number between 0 and 1".into(),
            Ty::Probability => "a number in [0, 1)".into(),
            Ty::NonNegative => "a non-negative number".into(),
            Ty::PositiveNumber => "a positive number".into(),
            Ty::Bool => "`true` or `false`".into(),
            Ty::Kernel => "a positive integer or a list [height, width]".into(),
            Ty::Mult => "a non-negative number or a list [weights, biases] of two".into(),
            Ty::Init => "an initialisation: `normal(std=S)`, `xavier` or `he`".into(),
            Ty::Pad => "a non-negative integer or a list [top, bottom, left, right]".into(),
            Ty::Word(words) => {
                format!("one of {}", words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", "))
            }
        }
    }
}

/// One argument of a signature.
#[derive(Clone, Copy, Debug)]
pub struct Param {
    pub name: &'static str,
    pub ty: Ty,
    /// Required arguments have no default; the checker reports them missing.
    pub required: bool,
    /// Whether the argument may be given by position (in signature order).
    pub positional: bool,
}

pub const fn req(name: &'static str, ty: Ty) -> Param {
    Param { name, ty, required: true, positional: true }
}

pub const fn opt(name: &'static str, ty: Ty) -> Param {
    Param { name, ty, required: false, positional: false }
}

/// `opt` that may also be given by position.
pub const fn opt_pos(name: &'static str, ty: Ty) -> Param {
    Param { name, ty, required: false, positional: true }
}

/// A typed argument value.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Int(i64),
    Float(f64),
    Bool(bool),
    Word(String),
    Kernel([usize; 2]),
    /// `[weights, biases]`.
    Mult([f64; 2]),
    Init(crate::config::Init),
    /// Top, bottom, left, right.
    Pad([usize; 4]),
}

/// The matched, typed arguments of one call.
#[derive(Debug, Default)]
pub struct Args {
    values: HashMap<&'static str, (Lit, Span)>,
    /// User-defined units a `mix` names, with their fractions.
    pub mixed_units: Vec<(std::sync::Arc<crate::model::UnitUse>, f64)>,
    /// The whole call, for errors about combinations of arguments.
    pub span: Span,
}

impl Args {
    pub fn get(&self, name: &str) -> Option<&Lit> {
        self.values.get(name).map(|(lit, _)| lit)
    }

    pub fn span_of(&self, name: &str) -> Span {
        self.values.get(name).map_or(self.span, |&(_, span)| span)
    }

    pub fn usize_or(&self, name: &str, default: usize) -> usize {
        match self.get(name) {
            Some(Lit::Int(v)) => usize::try_from(*v).unwrap_or(default),
            _ => default,
        }
    }

    pub fn f64_or(&self, name: &str, default: f64) -> f64 {
        match self.get(name) {
            Some(Lit::Float(v)) => *v,
            Some(Lit::Int(v)) => *v as f64,
            _ => default,
        }
    }

    pub fn bool_or(&self, name: &str, default: bool) -> bool {
        match self.get(name) {
            Some(Lit::Bool(v)) => *v,
            _ => default,
        }
    }

    pub fn word_or<'a>(&'a self, name: &str, default: &'a str) -> &'a str {
        match self.get(name) {
            Some(Lit::Word(w)) => w,
            _ => default,
        }
    }

    pub fn kernel(&self, name: &str) -> Option<[usize; 2]> {
        match self.get(name) {
            Some(Lit::Kernel(k)) => Some(*k),
            _ => None,
        }
    }

    /// A `Ty::Pad` argument as top, bottom, left, right; no padding when not given.
    pub fn pad(&self, name: &str) -> [usize; 4] {
        match self.get(name) {
            Some(Lit::Pad(p)) => *p,
            _ => [0; 4],
        }
    }

    pub fn init(&self, name: &str) -> Option<crate::config::Init> {
        match self.get(name) {
            Some(Lit::Init(init)) => Some(*init),
            _ => None,
        }
    }

    /// A `Ty::Mult` argument as `[weights, biases]`; `[1, 1]` when not given.
    pub fn mult(&self, name: &str) -> [f64; 2] {
        match self.get(name) {
            Some(Lit::Mult(m)) => *m,
            _ => [1.0, 1.0],
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
}

/// Net parameters visible to argument values, and which of them were read. A parameter
/// without a value (no default, no `--set`; already reported) is `None`.
pub struct Scope {
    pub params: HashMap<String, Option<Value>>,
    pub used: std::cell::RefCell<Vec<String>>,
}

impl Scope {
    /// The value with a net parameter reference replaced by the parameter's value.
    /// Words that are not parameters stay words (`fixed`, `mean_image`). Parameters inside
    /// lists are replaced too (`[channels, side, side]`, `k=[kh, kw]`). `None` when the value
    /// reads a parameter that has no value, so the caller reports nothing more about it.
    pub fn resolve(&self, value: &Value) -> Option<Value> {
        match &value.kind {
            ValueKind::Ident(name) => match self.params.get(name) {
                Some(bound) => {
                    self.used.borrow_mut().push(name.clone());
                    bound.as_ref().map(|bound| Value { kind: bound.kind.clone(), span: value.span })
                }
                None => Some(value.clone()),
            },
            ValueKind::List(items) => {
                // Resolve every item, so each parameter read counts as used.
                let items: Vec<Option<Value>> = items.iter().map(|i| self.resolve(i)).collect();
                let items: Option<Vec<Value>> = items.into_iter().collect();
                Some(Value { kind: ValueKind::List(items?), span: value.span })
            }
            _ => Some(value.clone()),
        }
    }
}

/// Matches `call`'s arguments against `signature` and types them. Every problem is pushed to
/// `errors`; the arguments that were fine are still returned so checking can go on.
pub fn match_args(call: &Call, what: &str, signature: &[Param], scope: &Scope, errors: &mut Vec<Diagnostic>) -> Args {
    let mut args = Args { values: HashMap::new(), mixed_units: Vec::new(), span: call.span };
    let mut given: HashMap<&'static str, Span> = HashMap::new();
    let mut positional = signature.iter().filter(|p| p.positional);
    let mut keyword_seen = false;
    // Arguments that were likely meant for a required one the call lacks: a misspelt name, or
    // a positional value after keywords. Their errors say it; "missing" would repeat it.
    let mut meant: Vec<&str> = Vec::new();
    let mut stray_positional = false;
    for arg in call.args() {
        let param = match &arg.key {
            Some(key) => {
                keyword_seen = true;
                match signature.iter().find(|p| p.name == key.name) {
                    Some(p) => p,
                    None => {
                        errors.push(errors::unknown_argument(key, what, signature));
                        meant.extend(did_you_mean(&key.name, signature.iter().map(|p| p.name)));
                        continue;
                    }
                }
            }
            None if keyword_seen => {
                errors.push(errors::positional_after_keyword(arg.span));
                stray_positional = true;
                continue;
            }
            None => match positional.next() {
                Some(p) => p,
                None => {
                    errors.push(errors::too_many_positional(arg.span, what, signature));
                    continue;
                }
            },
        };
        if let Some(&first) = given.get(param.name) {
            errors.push(errors::duplicate_argument(param.name, first, arg.span));
            continue;
        }
        given.insert(param.name, arg.span);
        let Some(value) = scope.resolve(&arg.value) else {
            continue;
        };
        match typed(&value, param.ty) {
            Ok(lit) => {
                args.values.insert(param.name, (lit, arg.value.span));
            }
            Err(problem) => {
                let mut d = errors::bad_value(param.name, param.ty.describe(), &value, &arg.value, problem);
                // A bare name that is no parameter: most likely a misspelt or missing one.
                if let (ValueKind::Ident(name), false) = (&value.kind, matches!(param.ty, Ty::Word(_))) {
                    let mut known: Vec<&str> = scope.params.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    d.notes.push(match did_you_mean(name, known.iter().copied()) {
                        Some(best) => format!("help: `{name}` is not a parameter here; did you mean `{best}`?"),
                        None if known.is_empty() => format!("note: `{name}` is not a parameter here; none is declared"),
                        None => {
                            format!("note: `{name}` is not a parameter here; the parameters are {}", known.join(", "))
                        }
                    });
                }
                errors.push(d)
            }
        }
    }
    let missing: Vec<&Param> =
        signature.iter().filter(|p| p.required && !given.contains_key(p.name) && !meant.contains(&p.name)).collect();
    if !missing.is_empty() && !stray_positional {
        errors.push(errors::missing_arguments(call, what, &missing, signature));
    }
    args
}

/// Why a value does not fit a type: the wrong kind, or the right kind out of range.
pub enum Problem {
    WrongKind,
    OutOfRange,
}

pub(crate) fn typed(value: &Value, ty: Ty) -> Result<Lit, Problem> {
    let number = match value.kind {
        ValueKind::Int(v) => Some(v as f64),
        ValueKind::Float(v) => Some(v),
        _ => None,
    };
    let int = match value.kind {
        ValueKind::Int(v) => Some(v),
        _ => None,
    };
    let in_range = |ok: bool, lit: Lit| {
        if ok {
            Ok(lit)
        } else {
            Err(Problem::OutOfRange)
        }
    };
    match ty {
        Ty::Positive => int.map_or(Err(Problem::WrongKind), |v| in_range(v >= 1, Lit::Int(v))),
        Ty::Count => int.map_or(Err(Problem::WrongKind), |v| in_range(v >= 0, Lit::Int(v))),
        Ty::Fraction => number.map_or(Err(Problem::WrongKind), |v| in_range((0.0..=1.0).contains(&v), Lit::Float(v))),
        Ty::Probability => number.map_or(Err(Problem::WrongKind), |v| in_range((0.0..1.0).contains(&v), Lit::Float(v))),
        Ty::NonNegative => number.map_or(Err(Problem::WrongKind), |v| in_range(v >= 0.0, Lit::Float(v))),
        Ty::PositiveNumber => number.map_or(Err(Problem::WrongKind), |v| in_range(v > 0.0, Lit::Float(v))),
        Ty::Bool => match value.kind {
            ValueKind::Bool(b) => Ok(Lit::Bool(b)),
            _ => Err(Problem::WrongKind),
        },
        Ty::Kernel => match &value.kind {
            ValueKind::Int(v) => in_range(*v >= 1, Lit::Kernel([*v as usize; 2])),
            // A list of another length, or of non-integers: show it, not just "a list".
            ValueKind::List(items) => match ints(items).as_deref() {
                Some(&[h, w]) => in_range(h >= 1 && w >= 1, Lit::Kernel([h as usize, w as usize])),
                _ => Err(Problem::OutOfRange),
            },
            _ => Err(Problem::WrongKind),
        },
        Ty::Mult => match &value.kind {
            ValueKind::List(items) => match numbers(items).as_deref() {
                Some(&[w, b]) => in_range(w >= 0.0 && b >= 0.0, Lit::Mult([w, b])),
                _ => Err(Problem::OutOfRange),
            },
            _ => number.map_or(Err(Problem::WrongKind), |v| in_range(v >= 0.0, Lit::Mult([v, v]))),
        },
        Ty::Pad => match &value.kind {
            ValueKind::Int(v) => in_range(*v >= 0, Lit::Pad([*v as usize; 4])),
            ValueKind::List(items) => match ints(items).as_deref() {
                Some(&[t, b, l, r]) => in_range(
                    [t, b, l, r].iter().all(|&side| side >= 0),
                    Lit::Pad([t as usize, b as usize, l as usize, r as usize]),
                ),
                _ => Err(Problem::OutOfRange),
            },
            _ => Err(Problem::WrongKind),
        },
        Ty::Init => match &value.kind {
            ValueKind::Ident(w) if w == "xavier" => Ok(Lit::Init(crate::config::Init::Xavier)),
            ValueKind::Ident(w) if w == "he" => Ok(Lit::Init(crate::config::Init::He)),
            ValueKind::Call(call) if call.op.name == "normal" => match call.args() {
                [arg] if arg.key.as_ref().is_none_or(|k| k.name == "std") => {
                    let std = match arg.value.kind {
                        ValueKind::Int(v) => v as f64,
                        ValueKind::Float(v) => v,
                        _ => return Err(Problem::OutOfRange),
                    };
                    in_range(std > 0.0 && std.is_finite(), Lit::Init(crate::config::Init::Normal { std }))
                }
                _ => Err(Problem::WrongKind),
            },
            _ => Err(Problem::WrongKind),
        },
        Ty::Word(words) => match &value.kind {
            ValueKind::Ident(w) | ValueKind::Str(w) if words.contains(&w.as_str()) => Ok(Lit::Word(w.clone())),
            ValueKind::Ident(_) | ValueKind::Str(_) => Err(Problem::OutOfRange),
            _ => Err(Problem::WrongKind),
        },
    }
}

/// A list's items as integers; `None` when one is not an integer.
fn ints(items: &[Value]) -> Option<Vec<i64>> {
    items
        .iter()
        .map(|i| match i.kind {
            ValueKind::Int(v) => Some(v),
            _ => None,
        })
        .collect()
}

/// A list's items as numbers; `None` when one is not a number.
fn numbers(items: &[Value]) -> Option<Vec<f64>> {
    items
        .iter()
        .map(|i| match i.kind {
            ValueKind::Int(v) => Some(v as f64),
            ValueKind::Float(v) => Some(v),
            _ => None,
        })
        .collect()
}

/// A reference to a layer or the input, as `add`, `concat` and `from` take.
pub fn layer_ref(value: &Value) -> Option<Ident> {
    match &value.kind {
        ValueKind::Ident(name) => Some(Ident { name: name.clone(), span: value.span }),
        _ => None,
    }
}
