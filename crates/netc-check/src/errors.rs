//! Every diagnostic the checker emits, in one place so their wording stays consistent.
//! Codes come from the registry, `netc_syntax::Code`: E01xx arguments, E02xx names and
//! structure, E03xx shapes and sizes, E04xx `train` blocks, E05xx command-line overrides.

use crate::args::{Param, Problem};
use netc_syntax::ast::{Call, Ident, Value, ValueKind};
use netc_syntax::{did_you_mean, Code, Diagnostic, Label, Span};

fn error(code: Code, message: impl std::fmt::Display) -> Diagnostic {
    code.error().with_message(message)
}

fn primary(span: Span, message: impl std::fmt::Display) -> Label<()> {
    Label::primary((), span.range()).with_message(message)
}

fn secondary(span: Span, message: impl std::fmt::Display) -> Label<()> {
    Label::secondary((), span.range()).with_message(message)
}

fn signature_text(what: &str, signature: &[Param]) -> String {
    let args: Vec<String> =
        signature.iter().map(|p| if p.required { p.name.to_string() } else { format!("{}=..", p.name) }).collect();
    format!("{what}({})", args.join(", "))
}

pub fn unknown_op(op: &Ident, kind: &str, known: &[&str]) -> Diagnostic {
    let mut d = error(Code::UnknownOp, format!("unknown {kind} `{}`", op.name))
        .with_labels(vec![primary(op.span, format!("not a known {kind}"))]);
    if let Some(best) = did_you_mean(&op.name, known.iter().copied()) {
        d = d.with_notes(vec![format!("help: did you mean `{best}`?")]);
    } else {
        d = d.with_notes(vec![format!("note: the known {kind}s are {}", known.join(", "))]);
    }
    d
}

pub fn unknown_argument(key: &Ident, what: &str, signature: &[Param]) -> Diagnostic {
    let names = signature.iter().map(|p| p.name);
    let mut notes = Vec::new();
    if let Some(best) = did_you_mean(&key.name, names) {
        notes.push(format!("help: did you mean `{best}`?"));
    }
    notes.push(format!("note: `{what}` takes {}", signature_text(what, signature)));
    error(Code::UnknownArgument, format!("`{what}` has no argument `{}`", key.name))
        .with_labels(vec![primary(key.span, "unknown argument")])
        .with_notes(notes)
}

pub fn duplicate_argument(name: &str, first: Span, again: Span) -> Diagnostic {
    error(Code::DuplicateArgument, format!("argument `{name}` is given twice"))
        .with_labels(vec![primary(again, "given again here"), secondary(first, "first given here")])
}

pub fn missing_arguments(call: &Call, what: &str, missing: &[&Param], signature: &[Param]) -> Diagnostic {
    let names: Vec<String> = missing.iter().map(|p| format!("`{}`", p.name)).collect();
    let plural = if missing.len() > 1 { "s" } else { "" };
    error(Code::MissingArgument, format!("`{what}` is missing the argument{plural} {}", names.join(" and ")))
        .with_labels(vec![primary(call.span, format!("missing {}", names.join(", ")))])
        .with_notes(vec![format!("help: write it as {}", signature_text(what, signature))])
}

pub fn positional_after_keyword(span: Span) -> Diagnostic {
    error(Code::Positional, "positional argument after a keyword argument")
        .with_labels(vec![primary(span, "give this one by name")])
}

pub fn too_many_positional(span: Span, what: &str, signature: &[Param]) -> Diagnostic {
    error(Code::Positional, format!("too many positional arguments for `{what}`"))
        .with_labels(vec![primary(span, "no argument left to take this value")])
        .with_notes(vec![format!("note: `{what}` takes {}", signature_text(what, signature))])
}

pub fn bad_value(name: &str, expected: String, resolved: &Value, written: &Value, problem: Problem) -> Diagnostic {
    let via_param = resolved.kind != written.kind;
    let shown = if via_param { format!("{} (= {resolved})", written) } else { resolved.to_string() };
    let mut notes = Vec::new();
    let (code, message, label) = match problem {
        // A fractional number where a whole one is due: show it, "a number" would not say why.
        Problem::WrongKind if matches!(resolved.kind, ValueKind::Float(_)) && expected.contains("integer") => {
            (Code::WrongKind, format!("`{name}` must be {expected}, found {shown}"), "not an integer".to_string())
        }
        Problem::WrongKind => {
            if let ValueKind::Str(text) = &resolved.kind {
                if text.trim().parse::<f64>().is_ok() {
                    notes.push(format!("help: write numbers without quotes: `{}`", text.trim()));
                }
            }
            (
                Code::WrongKind,
                format!("`{name}` must be {expected}, found {}", resolved.kind.describe()),
                format!("this is {}", resolved.kind.describe()),
            )
        }
        Problem::OutOfRange => {
            let label = if matches!(resolved.kind, ValueKind::List(_)) { "not accepted here" } else { "out of range" };
            (Code::OutOfRange, format!("`{name}` must be {expected}, found {shown}"), label.to_string())
        }
    };
    error(code, message).with_labels(vec![primary(written.span, label)]).with_notes(notes)
}

pub fn undefined_name<'a>(name: &Ident, known: impl IntoIterator<Item = &'a str>, later: Option<Span>) -> Diagnostic {
    let mut d = error(Code::UndefinedName, format!("no layer named `{}` before this point", name.name))
        .with_labels(vec![primary(name.span, "undefined")]);
    if let Some(at) = later {
        d.labels.push(secondary(at, "defined later here"));
        d = d.with_notes(vec!["note: a layer can only read the input and layers above it".into()]);
    } else if let Some(best) = did_you_mean(&name.name, known) {
        d = d.with_notes(vec![format!("help: did you mean `{best}`?")]);
    }
    d
}

pub fn duplicate_name(what: &str, name: &Ident, first: Span) -> Diagnostic {
    error(Code::DuplicateName, format!("the {what} `{}` is defined twice", name.name))
        .with_labels(vec![primary(name.span, "defined again here"), secondary(first, "first defined here")])
        .with_notes(vec!["help: give each one its own name".into()])
}

pub fn no_input(net: &Ident) -> Diagnostic {
    error(Code::NoInput, format!("net `{}` has no input", net.name))
        .with_labels(vec![primary(net.span, "this net declares no input")])
        .with_notes(vec!["help: begin the body with an input declaration, e.g. `input image: [1, 28, 28]`".into()])
}

pub fn no_loss(net: &Ident) -> Diagnostic {
    error(Code::NoLoss, format!("net `{}` has no loss", net.name))
        .with_labels(vec![primary(net.span, "this net ends without a loss")])
        .with_notes(vec!["help: end the body with a loss, e.g. `loss softmax_xent(classes=10)`".into()])
}

pub fn misplaced(span: Span, message: &str, first: Option<(Span, &str)>, help: &str) -> Diagnostic {
    let mut labels = vec![primary(span, "here")];
    if let Some((at, what)) = first {
        labels.push(secondary(at, what));
    }
    error(Code::Misplaced, message).with_labels(labels).with_notes(vec![format!("help: {help}")])
}

pub fn not_a_loss(op: &Ident) -> Diagnostic {
    error(Code::LossMisuse, format!("`{}` is not a loss", op.name))
        .with_labels(vec![primary(op.span, "not a loss")])
        .with_notes(vec!["note: the known loss is softmax_xent(classes)".into()])
}

pub fn loss_as_layer(op: &Ident) -> Diagnostic {
    error(Code::LossMisuse, format!("`{}` is a loss and must be written as one", op.name))
        .with_labels(vec![primary(op.span, "a loss used as a layer")])
        .with_notes(vec![format!("help: write `loss {}(...)` as the last statement", op.name)])
}

pub fn param_without_value(param: &Ident) -> Diagnostic {
    error(Code::ParamWithoutValue, format!("parameter `{}` has no value", param.name))
        .with_labels(vec![primary(param.span, "no default")])
        .with_notes(vec![format!(
            "help: give it a default (`{} = ...`) or a value on the command line (`--set {}=...`)",
            param.name, param.name
        )])
}

pub fn unused_param(param: &Ident) -> Diagnostic {
    Code::UnusedParam
        .warning()
        .with_message(format!("parameter `{}` is never used", param.name))
        .with_labels(vec![primary(param.span, "unused")])
}

pub fn needs_refs(op: &Ident, span: Span) -> Diagnostic {
    error(Code::MissingArgument, format!("`{}` needs at least two layers to join", op.name))
        .with_labels(vec![primary(span, "give the names of the layers")])
        .with_notes(vec![format!("help: name the branches and write `{}(a, b)`", op.name)])
}

pub fn keyword_in_join(key: &Ident, op: &Ident) -> Diagnostic {
    error(Code::UnknownArgument, format!("`{}` takes only the names of the layers it joins", op.name))
        .with_labels(vec![primary(key.span, "no keyword arguments here")])
        .with_notes(vec![format!("help: write `{}(a, b)`", op.name)])
}

pub fn ref_expected(value: &Value) -> Diagnostic {
    error(Code::WrongKind, format!("expected the name of a layer, found {}", value.kind.describe()))
        .with_labels(vec![primary(value.span, "not a layer name")])
}

pub fn from_with_join(from: &Ident, op: &Ident) -> Diagnostic {
    error(Code::Misplaced, format!("`{}` takes its inputs as arguments, not with `from`", op.name))
        .with_labels(vec![primary(from.span, "remove this `from`")])
}

pub fn population_unread(dale: Span, name: &str) -> Diagnostic {
    error(Code::PopulationUnread, format!("no weight layer reads the population declared by `{name}`"))
        .with_labels(vec![primary(dale, "excitatory and inhibitory units declared here")])
        .with_notes(vec![
            "note: the signs constrain the weights leaving the units, so a `dense` or `conv` layer must read them"
                .into(),
            "help: follow `dale` with the weight layer that reads its units (flatten, pooling and dropout may come between)"
                .into(),
        ])
}

pub fn population_read_by(reader: Span, reader_name: &str, dale: Span, dale_name: &str) -> Diagnostic {
    error(Code::PopulationMisread, format!("`{reader_name}` reads the population of `{dale_name}`, but has no weights to sign"))
        .with_labels(vec![primary(reader, "not a `dense` or `conv` layer"), secondary(dale, "population declared here")])
        .with_notes(vec![
            "note: only the weights of `dense` and `conv` layers carry the excitatory and inhibitory signs; flatten, pooling and dropout may come between"
                .into(),
            "help: put `dale` right before the weight layer that reads the units".into(),
        ])
}

pub fn shape(code_message: String, span: Span, label: String, notes: Vec<String>) -> Diagnostic {
    error(Code::LayerMisfit, code_message).with_labels(vec![primary(span, label)]).with_notes(notes)
}

pub fn shape_mismatch(message: String, spans: Vec<(Span, String)>, notes: Vec<String>) -> Diagnostic {
    let labels = spans
        .into_iter()
        .enumerate()
        .map(|(i, (span, text))| if i == 0 { primary(span, text) } else { secondary(span, text) })
        .collect();
    error(Code::ShapeMismatch, message).with_labels(labels).with_notes(notes)
}

/// `subject` is e.g. "output of `conv1`", "weight of `dense1`" or "input `image`".
pub fn too_large(span: Span, subject: String, shape: &[usize]) -> Diagnostic {
    let shown: Vec<String> = shape.iter().map(usize::to_string).collect();
    error(Code::TooLarge, format!("the {subject} is too large: [{}]", shown.join(", ")))
        .with_labels(vec![primary(span, "too large")])
        .with_notes(vec!["note: a tensor may have at most 2^31 elements per example".into()])
}

pub fn bad_shape_decl(value: &Value) -> Diagnostic {
    error(Code::BadInputShape, "an input shape is a list of positive integers")
        .with_labels(vec![primary(value.span, format!("found {value}"))])
        .with_notes(vec!["help: write e.g. `[1, 28, 28]` for one 28×28 channel, or `[784]`".into()])
}

pub fn unknown_setting(key: &Ident, known: &[&str]) -> Diagnostic {
    let mut notes = Vec::new();
    if let Some(best) = did_you_mean(&key.name, known.iter().copied()) {
        notes.push(format!("help: did you mean `{best}`?"));
    }
    notes.push(format!("note: the settings are {}", known.join(", ")));
    error(Code::UnknownSetting, format!("unknown training setting `{}`", key.name))
        .with_labels(vec![primary(key.span, "unknown setting")])
        .with_notes(notes)
}

pub fn bad_setting(key: &str, value: &Value, expected: &str) -> Diagnostic {
    error(Code::BadSetting, format!("`{key}` must be {expected}, found `{value}`"))
        .with_labels(vec![primary(value.span, "not accepted here")])
}

pub fn duplicate_setting(key: &str, first: Span, again: Span) -> Diagnostic {
    error(Code::DuplicateSetting, format!("the setting `{key}` is given twice"))
        .with_labels(vec![primary(again, "given again here"), secondary(first, "first given here")])
        .with_notes(vec!["help: keep one of them".into()])
}

pub fn duplicate_block(span: Span, first: Span) -> Diagnostic {
    error(Code::DuplicateTrainBlock, "a file has at most one `train` block")
        .with_labels(vec![primary(span, "second train block"), secondary(first, "first train block")])
        .with_notes(vec!["help: merge the settings into one block".into()])
}

pub fn set_unknown(name: &str, known: &[&str]) -> Diagnostic {
    let mut notes = Vec::new();
    if let Some(best) = did_you_mean(name, known.iter().copied()) {
        notes.push(format!("help: did you mean `{best}`?"));
    }
    if known.is_empty() {
        notes.push("note: the nets in this file take no parameters".into());
    } else {
        notes.push(format!("note: the parameters are {}", known.join(", ")));
    }
    error(Code::SetUnknown, format!("--set {name}: no net in this file has a parameter `{name}`")).with_notes(notes)
}

pub fn set_wrong_type(name: &str, value: &Value, default: &Value) -> Diagnostic {
    error(
        Code::SetWrongType,
        format!("--set {name}={value}: `{name}` takes {}, found {}", default.kind.describe(), value.kind.describe()),
    )
    .with_labels(vec![secondary(default.span, "the default sets its type")])
}

pub fn input_without_shape(decl: &netc_syntax::ast::InputDecl) -> Diagnostic {
    error(Code::BadInputShape, format!("the input `{}` of a net needs a shape", decl.name.name))
        .with_labels(vec![primary(decl.span, "no shape")])
        .with_notes(vec![format!("help: write its per-example shape, e.g. `input {}: [1, 28, 28]`", decl.name.name)])
}

fn block_signature(block: &netc_syntax::ast::BlockDecl) -> String {
    let params: Vec<String> = block
        .params
        .iter()
        .map(|p| match &p.default {
            Some(v) => format!("{}={v}", p.name.name),
            None => p.name.name.clone(),
        })
        .collect();
    format!("{}({})", block.name.name, params.join(", "))
}

pub fn unknown_block_argument(key: &Ident, block: &netc_syntax::ast::BlockDecl) -> Diagnostic {
    let mut notes = Vec::new();
    if let Some(best) = did_you_mean(&key.name, block.params.iter().map(|p| p.name.name.as_str())) {
        notes.push(format!("help: did you mean `{best}`?"));
    }
    notes.push(format!("note: the block is `{}`", block_signature(block)));
    error(Code::UnknownArgument, format!("the block `{}` has no parameter `{}`", block.name.name, key.name))
        .with_labels(vec![primary(key.span, "unknown parameter"), secondary(block.name.span, "the block")])
        .with_notes(notes)
}

pub fn too_many_block_arguments(span: Span, block: &netc_syntax::ast::BlockDecl) -> Diagnostic {
    error(Code::Positional, format!("too many arguments for the block `{}`", block.name.name))
        .with_labels(vec![primary(span, "no parameter left for this")])
        .with_notes(vec![format!("note: the block is `{}`", block_signature(block))])
}

pub fn missing_block_argument(call: &Call, param: &Ident, block: &netc_syntax::ast::BlockDecl) -> Diagnostic {
    error(Code::MissingArgument, format!("the block `{}` is missing the argument `{}`", block.name.name, param.name))
        .with_labels(vec![
            primary(call.span, format!("missing `{}`", param.name)),
            secondary(param.span, "declared here"),
        ])
        .with_notes(vec![format!("help: write it as `{}`", block_signature(block))])
}
