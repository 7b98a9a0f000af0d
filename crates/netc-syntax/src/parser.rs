//! pest parse tree → typed AST.

use crate::ast::*;
use crate::codes::Code;
use crate::diagnostics::{Diagnostic, Label};
use crate::lexical;
use pest::error::{ErrorVariant, InputLocation};
use pest::iterators::Pair;
use pest::Parser;

#[derive(pest_derive::Parser)]
#[grammar = "../../grammar/net.pest"]
struct NetParser;

/// Parses a whole `.net` file. A syntax error is returned as one diagnostic saying what was
/// expected where; so is a literal that does not fit its type.
pub fn parse(source: &str) -> Result<File, Vec<Diagnostic>> {
    let unfit = lexical::check(source);
    if !unfit.is_empty() {
        return Err(unfit);
    }
    let mut pairs = NetParser::parse(Rule::file, source)
        .map_err(|e| vec![syntax_error(source, detailed(Rule::file, source, e))])?;
    let file = pairs.next().into_iter().flat_map(Pair::into_inner);
    let mut errors = Vec::new();
    let mut out = File::default();
    for item in file {
        match item.as_rule() {
            Rule::unit => out.units.push(unit(item, &mut errors)),
            Rule::block => out.blocks.push(block(item, &mut errors)),
            Rule::net => out.nets.push(net(item, &mut errors)),
            Rule::train => out.trains.push(train_block(item, &mut errors)),
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Parses one value written on the command line, such as the `0.07` of `--set negfrac=0.07`.
pub fn parse_value(text: &str) -> Result<Value, Vec<Diagnostic>> {
    let unfit = lexical::check(text);
    if !unfit.is_empty() {
        return Err(unfit);
    }
    let mut pairs = NetParser::parse(Rule::lone_value, text)
        .map_err(|e| vec![syntax_error(text, detailed(Rule::lone_value, text, e))])?;
    let mut errors = Vec::new();
    let parsed = pairs.next().and_then(|lone| lone.into_inner().next()).map(|pair| value(pair, &mut errors));
    match parsed {
        Some(v) if errors.is_empty() => Ok(v),
        _ => Err(errors),
    }
}

/// The error of a failed parse, parsed again with pest's detailed tracking of what each failed
/// attempt expected (which names missing punctuation). Tracking is off until the first error, so
/// correct files parse at full speed; it stays on afterwards (the switch is process-wide, and
/// turning it off could race with another thread's parse).
fn detailed(rule: Rule, source: &str, error: pest::error::Error<Rule>) -> pest::error::Error<Rule> {
    pest::set_error_detail(true);
    NetParser::parse(rule, source).err().unwrap_or(error)
}

/// The pair's span without the white space and comments pest skips after a rule's trailing
/// optional part (`relu` followed by a new line would otherwise own the new line).
fn span(pair: &Pair<Rule>) -> Span {
    Span::new(pair.as_span().start(), tight_end(pair))
}

fn tight_end(pair: &Pair<Rule>) -> usize {
    let end = pair.as_span().end();
    match pair.clone().into_inner().last() {
        Some(last) if is_trivia(&pair.get_input()[last.as_span().end()..end]) => tight_end(&last),
        _ => end,
    }
}

fn is_trivia(mut text: &str) -> bool {
    loop {
        text = text.trim_start();
        match text.strip_prefix('#') {
            Some(comment) => text = comment.split_once('\n').map_or("", |(_, rest)| rest),
            None => return text.is_empty(),
        }
    }
}

fn ident(pair: Pair<Rule>) -> Ident {
    Ident { name: pair.as_str().to_string(), span: span(&pair) }
}

fn net(pair: Pair<Rule>, errors: &mut Vec<Diagnostic>) -> NetDecl {
    let (name, params, body, span) = definition(pair, errors);
    NetDecl { name, params, body, span }
}

fn block(pair: Pair<Rule>, errors: &mut Vec<Diagnostic>) -> BlockDecl {
    let (name, params, body, span) = definition(pair, errors);
    BlockDecl { name, params, body, span }
}

/// The parts a `net` and a `block` share: name, parameters and statements.
fn definition(pair: Pair<Rule>, errors: &mut Vec<Diagnostic>) -> (Ident, Vec<ParamDecl>, Vec<Stmt>, Span) {
    let whole = span(&pair);
    let mut inner = pair.into_inner();
    let name = inner.next().map(ident).unwrap_or(Ident { name: String::new(), span: whole });
    let mut params = Vec::new();
    let mut body = Vec::new();
    for item in inner {
        match item.as_rule() {
            Rule::params => params = param_list(item, errors),
            Rule::input => {
                let ispan = span(&item);
                let mut parts = item.into_inner();
                if let Some(name) = parts.next() {
                    let shape = parts.next().map(|shape| value(shape, errors));
                    body.push(Stmt::Input(InputDecl { name: ident(name), shape, span: ispan }));
                }
            }
            Rule::layer | Rule::loss => body.push(Stmt::Layer(layer(item, errors))),
            _ => {}
        }
    }
    (name, params, body, whole)
}

fn param_list(pair: Pair<Rule>, errors: &mut Vec<Diagnostic>) -> Vec<ParamDecl> {
    pair.into_inner()
        .filter_map(|p| {
            let pspan = span(&p);
            let mut parts = p.into_inner();
            let name = parts.next().map(ident)?;
            let default = parts.next().map(|v| value(v, errors));
            Some(ParamDecl { name, default, span: pspan })
        })
        .collect()
}

fn unit(pair: Pair<Rule>, errors: &mut Vec<Diagnostic>) -> UnitDecl {
    let whole = span(&pair);
    let mut name = Ident { name: String::new(), span: whole };
    let mut params = Vec::new();
    let mut body = None;
    let mut grad = None;
    let mut nodes = 0;
    for item in pair.into_inner() {
        match item.as_rule() {
            Rule::ident => name = ident(item),
            Rule::params => params = param_list(item, errors),
            Rule::expr => body = Some(expr(item, &mut nodes, errors)),
            Rule::unit_grad => grad = item.into_inner().next().map(|e| expr(e, &mut nodes, errors)),
            _ => {}
        }
    }
    if nodes > MAX_EXPR_NODES {
        errors.push(
            Code::TooLong
                .error()
                .with_message(format!("the expression of unit `{}` has {nodes} terms", name.name))
                .with_labels(vec![Label::primary((), name.span.range()).with_message("this unit")])
                .with_notes(vec![format!(
                    "note: a unit's expression and its `grad` may have at most {MAX_EXPR_NODES} terms; \
                     split it into units that call each other"
                )]),
        );
    }
    // The grammar guarantees a body.
    let body = body.unwrap_or(Expr { kind: ExprKind::Number(0.0), span: whole });
    UnitDecl { name, params, body, grad, span: whole }
}

/// The terms a unit's expression may have, so that every later walk over it (recursive, as
/// expressions are trees) stays shallow.
pub const MAX_EXPR_NODES: usize = 2000;

/// An expression; `nodes` counts its terms.
fn expr(pair: Pair<Rule>, nodes: &mut usize, errors: &mut Vec<Diagnostic>) -> Expr {
    let whole = span(&pair);
    let text = pair.as_str();
    let leaf = |kind| Expr { kind, span: whole };
    match pair.as_rule() {
        // Left-associative chains `a op b op c`, and the one comparison of an `expr`.
        Rule::expr | Rule::sum | Rule::product => {
            let mut inner = pair.into_inner();
            let Some(first) = inner.next() else { return leaf(ExprKind::Number(0.0)) };
            let mut acc = expr(first, nodes, errors);
            while let (Some(op), Some(rhs)) = (inner.next(), inner.next()) {
                *nodes += 1;
                let rhs = expr(rhs, nodes, errors);
                let span = acc.span.to(rhs.span);
                acc = Expr { kind: ExprKind::Binary(bin_op(op.as_str()), Box::new(acc), Box::new(rhs)), span };
            }
            acc
        }
        Rule::factor => {
            let parts: Vec<Pair<Rule>> = pair.into_inner().collect();
            let Some((atom, negations)) = parts.split_last() else { return leaf(ExprKind::Number(0.0)) };
            let mut e = expr(atom.clone(), nodes, errors);
            for negation in negations.iter().rev() {
                *nodes += 1;
                e = Expr { span: span(negation).to(e.span), kind: ExprKind::Neg(Box::new(e)) };
            }
            e
        }
        Rule::number => {
            *nodes += 1;
            number(text, whole, errors)
        }
        Rule::apply => {
            *nodes += 1;
            let mut inner = pair.into_inner();
            let func = inner.next().map(ident).unwrap_or(Ident { name: String::new(), span: whole });
            let args = inner
                .map(|arg| {
                    let aspan = span(&arg);
                    let mut parts: Vec<Pair<Rule>> = arg.into_inner().collect();
                    let value = match parts.pop() {
                        Some(v) => expr(v, nodes, errors),
                        None => Expr { kind: ExprKind::Number(0.0), span: aspan },
                    };
                    let key = parts.pop().map(ident);
                    ExprArg { key, value, span: aspan }
                })
                .collect();
            leaf(ExprKind::Call { func, args })
        }
        _ => {
            *nodes += 1;
            leaf(ExprKind::Name(text.to_string()))
        }
    }
}

fn number(text: &str, span: Span, errors: &mut Vec<Diagnostic>) -> Expr {
    let value = match text.parse::<f64>() {
        Ok(v) if v.is_finite() => v,
        _ => {
            errors.push(literal_error(span, "number literal is out of range", "numbers must be finite 64-bit floats"));
            0.0
        }
    };
    Expr { kind: ExprKind::Number(value), span }
}

fn bin_op(symbol: &str) -> BinOp {
    match symbol {
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "<" => BinOp::Less,
        "<=" => BinOp::LessEqual,
        ">" => BinOp::Greater,
        ">=" => BinOp::GreaterEqual,
        "==" => BinOp::Equal,
        // The grammar's last operator.
        _ => BinOp::NotEqual,
    }
}

fn train_block(pair: Pair<Rule>, errors: &mut Vec<Diagnostic>) -> TrainBlock {
    let whole = span(&pair);
    let settings = pair
        .into_inner()
        .filter_map(|setting| {
            let sspan = span(&setting);
            let mut parts = setting.into_inner();
            let key = ident(parts.next()?);
            let value = value(parts.next()?, errors);
            Some(Setting { key, value, span: sspan })
        })
        .collect();
    TrainBlock { settings, span: whole }
}

fn layer(pair: Pair<Rule>, errors: &mut Vec<Diagnostic>) -> LayerStmt {
    let is_loss = pair.as_rule() == Rule::loss;
    let whole = span(&pair);
    let mut name = None;
    let mut parsed_call = None;
    let mut from = None;
    for part in pair.into_inner() {
        match part.as_rule() {
            Rule::ident => name = Some(ident(part)),
            Rule::call => parsed_call = Some(call(part, errors)),
            Rule::from => from = part.into_inner().next().map(ident),
            _ => {}
        }
    }
    // The grammar guarantees a call in every layer statement.
    let call =
        parsed_call.unwrap_or_else(|| Call { op: Ident { name: String::new(), span: whole }, args: None, span: whole });
    LayerStmt { name, call, from, is_loss, span: whole }
}

fn call(pair: Pair<Rule>, errors: &mut Vec<Diagnostic>) -> Call {
    let whole = span(&pair);
    let mut inner = pair.into_inner();
    let op = inner.next().map(ident).unwrap_or(Ident { name: String::new(), span: whole });
    let args = inner.next().map(|args| {
        args.into_inner()
            .map(|arg| {
                let aspan = span(&arg);
                let mut parts: Vec<Pair<Rule>> = arg.into_inner().collect();
                let value_pair = parts.pop();
                let key = parts.pop().map(ident);
                let value = match value_pair {
                    Some(v) => value(v, errors),
                    None => Value { kind: ValueKind::Ident(String::new()), span: aspan },
                };
                Arg { key, value, span: aspan }
            })
            .collect()
    });
    Call { op, args, span: whole }
}

fn value(pair: Pair<Rule>, errors: &mut Vec<Diagnostic>) -> Value {
    let vspan = span(&pair);
    let inner = match pair.as_rule() {
        Rule::value => pair.into_inner().next(),
        _ => Some(pair),
    };
    let Some(inner) = inner else {
        return Value { kind: ValueKind::Ident(String::new()), span: vspan };
    };
    let text = inner.as_str();
    let kind = match inner.as_rule() {
        Rule::int => match text.parse::<i64>() {
            Ok(v) => ValueKind::Int(v),
            Err(_) => {
                errors.push(literal_error(vspan, "integer literal is too large", "integers must fit in 64 bits"));
                ValueKind::Int(0)
            }
        },
        Rule::float => match text.parse::<f64>() {
            Ok(v) if v.is_finite() => ValueKind::Float(v),
            _ => {
                errors.push(literal_error(
                    vspan,
                    "number literal is out of range",
                    "numbers must be finite 64-bit floats",
                ));
                ValueKind::Float(0.0)
            }
        },
        Rule::boolean => ValueKind::Bool(text == "true"),
        Rule::string => ValueKind::Str(unescape(inner.into_inner().next().map_or("", |c| c.as_str()))),
        Rule::list => ValueKind::List(inner.into_inner().map(|v| value(v, errors)).collect()),
        Rule::call => {
            let c = call(inner, errors);
            if c.args.is_none() {
                ValueKind::Ident(c.op.name)
            } else {
                ValueKind::Call(c)
            }
        }
        _ => ValueKind::Ident(text.to_string()),
    };
    Value { kind, span: vspan }
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn literal_error(span: Span, message: &str, note: &str) -> Diagnostic {
    Code::LiteralRange
        .error()
        .with_message(message)
        .with_labels(vec![Label::primary((), span.range()).with_message("this literal")])
        .with_notes(vec![note.to_string()])
}

/// The words the grammar reserves; they cannot name a net, layer, parameter or setting.
const KEYWORDS: [&str; 7] = ["net", "input", "loss", "train", "from", "true", "false"];

/// Punctuation worth naming when the parser expected it (`}`, `,`, ...). Other expected
/// characters (letters, digits, quotes, white space) are summarised by the rule names instead.
const PUNCTUATION: [&str; 8] = ["}", "]", ")", ",", "=", ":", "{", "("];

/// Turns pest's error into a diagnostic that names what was expected in the user's terms.
fn syntax_error(source: &str, error: pest::error::Error<Rule>) -> Diagnostic {
    let mut at = match error.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<String> = Vec::new();
    let mut in_block = false;
    if let ErrorVariant::ParsingError { positives, .. } = &error.variant {
        // A statement can always be followed by the `}` that closes its block.
        in_block = positives.iter().any(|r| matches!(r, Rule::layer | Rule::setting));
        for rule in positives {
            if let Some(name) = rule_name(*rule) {
                if !expected.iter().any(|e| e == name) {
                    expected.push(name.to_string());
                }
            }
        }
    }
    // pest reports the last rule it tried at the furthest position a rule started; the detailed
    // attempts also know the punctuation it expected, possibly further on (after a complete
    // value, where a `,` or `]` was due).
    let mut after_value = false;
    if let Some(attempts) = error.parse_attempts() {
        let raw: Vec<String> = attempts.expected_tokens().iter().map(ToString::to_string).collect();
        let further = attempts.max_position > at;
        if further && raw == ["\""] && source.get(at..).is_some_and(|rest| rest.starts_with('"')) {
            return unterminated_string(at..attempts.max_position);
        }
        let tokens: Vec<String> =
            raw.iter().filter(|t| PUNCTUATION.contains(&t.as_str())).map(|t| format!("`{t}`")).collect();
        let escape =
            attempts.max_position.checked_sub(1).filter(|&b| source.get(b..).is_some_and(|r| r.starts_with('\\')));
        if let (true, Some(backslash)) = (further && raw.iter().any(|t| t == "\\"), escape) {
            return bad_escape(source, backslash);
        }
        if further && !tokens.is_empty() {
            at = attempts.max_position;
            expected = tokens;
            after_value = true;
            in_block = false;
        } else if !further {
            for token in tokens {
                if !expected.contains(&token) {
                    expected.push(token);
                }
            }
        }
    }
    // Before the first block pest names nothing; a file is made of definitions and blocks.
    let at_start = source.get(..at).is_some_and(|before| {
        let before = before.trim_start_matches(lexical::BYTE_ORDER_MARK);
        before.lines().all(|l| l.trim().is_empty() || l.trim().starts_with('#'))
    });
    if expected.is_empty() && at_start {
        expected = vec!["`unit`".into(), "`block`".into(), "`net`".into(), "`train`".into()];
    }
    // An expression may start with `(`; saying both repeats it.
    if expected.iter().any(|e| e == "an expression") {
        expected.retain(|e| e != "`(`");
    }
    if in_block && !expected.iter().any(|e| e == "`}`") {
        expected.push("`}`".into());
    }
    let token = found_token(source, at);
    let found_span = at..at + token.len();
    let mut notes = Vec::new();
    if KEYWORDS.contains(&token) && !expected.iter().any(|e| e.trim_matches('`') == token) {
        if in_block && (token == "net" || token == "train") {
            notes.push(format!("help: `{token}` starts a new block; is the `}}` closing the block above missing?"));
        } else if expected.iter().any(|e| ["a name", "a layer", "a value", "an argument"].contains(&e.as_str())) {
            let keywords: Vec<String> = KEYWORDS.iter().map(|k| format!("`{k}`")).collect();
            return Code::Syntax
                .error()
                .with_message(format!("syntax error: `{token}` is a keyword and cannot be used as a name"))
                .with_labels(vec![Label::primary((), found_span).with_message("keyword")])
                .with_notes(vec![format!("help: choose another name; the keywords are {}", keywords.join(", "))]);
        }
    }
    if in_block && at >= source.trim_end().len() {
        notes.push("help: the last block is not closed; add a `}`".into());
    }
    let found = describe_found(source, at, token);
    let message = if expected.is_empty() {
        format!("syntax error: unexpected {found}")
    } else {
        format!("syntax error: expected {}, found {found}", one_of(&expected))
    };
    // When what is missing was due at the end of an earlier line, point there too.
    let labels = match end_of_previous_line(source, at) {
        Some(end) if token.is_empty() && at >= source.len() => {
            vec![Label::primary((), end..end).with_message("the file ends after this")]
        }
        Some(end) if after_value => vec![
            Label::primary((), end..end).with_message(format!("expected {} after this", one_of(&expected))),
            Label::secondary((), found_span).with_message(format!("found {found}")),
        ],
        _ => vec![Label::primary((), found_span).with_message("unexpected here")],
    };
    Code::Syntax.error().with_message(message).with_labels(labels).with_notes(notes)
}

/// The end of the code before `at`, when it lies on an earlier line: the place a token missing
/// at the end of that line was due. `None` when a comment ends that line (its `#` may be inside
/// a string, so the end of the code is not certain).
fn end_of_previous_line(source: &str, at: usize) -> Option<usize> {
    let before = source.get(..at)?;
    let end = before.trim_end().len();
    if end == 0 || !before[end..].contains('\n') {
        return None;
    }
    let line_start = before[..end].rfind('\n').map_or(0, |n| n + 1);
    if before[line_start..end].contains('#') {
        return None;
    }
    Some(end)
}

fn bad_escape(source: &str, backslash: usize) -> Diagnostic {
    let len = source.get(backslash + 1..).and_then(|r| r.chars().next()).map_or(1, |c| 1 + c.len_utf8());
    let text = source.get(backslash..backslash + len).unwrap_or("\\");
    Code::Syntax
        .error()
        .with_message(format!("syntax error: unknown escape `{}` in a string", text.trim_end()))
        .with_labels(vec![Label::primary((), backslash..backslash + len).with_message("unknown escape")])
        .with_notes(vec!["note: the escapes are `\\\"`, `\\\\`, `\\n` and `\\t`".into()])
}

fn unterminated_string(span: std::ops::Range<usize>) -> Diagnostic {
    Code::Syntax
        .error()
        .with_message("syntax error: unterminated string")
        .with_labels(vec![Label::primary((), span).with_message("this string is not closed")])
        .with_notes(vec!["help: close it with `\"` on the same line; a string cannot span lines".into()])
}

/// The token at `at`: a word or number, or one character.
fn found_token(source: &str, at: usize) -> &str {
    let rest = source.get(at..).unwrap_or("");
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == '.';
    let len = match rest.chars().next() {
        Some(c) if word(c) || c == '-' => {
            rest[c.len_utf8()..].find(|c: char| !word(c)).map_or(rest.len(), |n| n + c.len_utf8())
        }
        Some(c) if !c.is_whitespace() => c.len_utf8(),
        _ => 0,
    };
    &rest[..len]
}

fn describe_found(source: &str, at: usize, token: &str) -> String {
    if !token.is_empty() {
        return format!("`{token}`");
    }
    match source.get(at..).and_then(|rest| rest.chars().next()) {
        None => "end of file".into(),
        Some('\n' | '\r') => "end of line".into(),
        Some(_) => "white space".into(),
    }
}

fn one_of(items: &[String]) -> String {
    match items {
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
        [] => String::new(),
    }
}

fn rule_name(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::ident => "a name",
        Rule::value | Rule::lone_value => "a value",
        Rule::arg => "an argument",
        Rule::int => "an integer",
        Rule::float => "a number",
        Rule::string => "a string",
        Rule::list => "a list",
        Rule::call | Rule::layer => "a layer",
        Rule::net | Rule::kw_net => "`net`",
        Rule::train | Rule::kw_train => "`train`",
        Rule::input | Rule::kw_input => "`input`",
        Rule::loss | Rule::kw_loss => "`loss`",
        Rule::from | Rule::kw_from => "`from`",
        Rule::setting => "a setting",
        Rule::expr | Rule::sum | Rule::product | Rule::factor | Rule::apply_arg => "an expression",
        Rule::number => "a number",
        Rule::apply => "a call",
        Rule::compare_op | Rule::sum_op | Rule::product_op => "an operator",
        Rule::unit | Rule::kw_unit => "`unit`",
        Rule::block | Rule::kw_block => "`block`",
        Rule::unit_grad | Rule::kw_grad => "`grad`",
        Rule::EOI => "end of file",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nets_params_layers_and_train() {
        let src = r#"
            # comment
            net lenet(negfrac = 0.04, width) {
                input image: [1, 28, 28]
                c1 = conv(20, k=5)   # trailing comment
                relu
                b = conv(20, k=3, pad=1) from c1
                add(c1, b)
                mixlu(negfrac=negfrac, mask=fixed)
                loss softmax_xent(classes=10)
            }
            train { optimizer = sgd(lr=0.001) name = "run \"a\"" flag = true sched = [[0.05, 15], [5e-3, 10]] }
        "#;
        let file = parse(src).unwrap();
        let net = &file.nets[0];
        assert_eq!(net.name.name, "lenet");
        assert_eq!(net.params.len(), 2);
        assert_eq!(net.params[0].default.as_ref().unwrap().kind, ValueKind::Float(0.04));
        assert!(net.params[1].default.is_none());
        assert_eq!(net.body.len(), 7);
        let Stmt::Layer(b) = &net.body[3] else { panic!("expected a layer") };
        assert_eq!(b.name.as_ref().unwrap().name, "b");
        assert_eq!(b.from.as_ref().unwrap().name, "c1");
        assert_eq!(&src[b.span.range()], "b = conv(20, k=3, pad=1) from c1");
        let Stmt::Layer(relu) = &net.body[2] else { panic!("expected a layer") };
        assert!(relu.call.args.is_none());
        assert_eq!(&src[relu.span.range()], "relu");
        let Stmt::Layer(loss) = &net.body[6] else { panic!("expected a layer") };
        assert!(loss.is_loss);
        let train = &file.trains[0];
        assert_eq!(train.settings.len(), 4);
        assert_eq!(train.settings[1].value.kind, ValueKind::Str("run \"a\"".into()));
        assert_eq!(train.settings[3].value.to_string(), "[[0.05, 15], [0.005, 10]]");
    }

    #[test]
    fn keywords_are_not_names() {
        assert!(parse("net input { }").is_err());
        assert!(parse("net inputs { }").is_ok());
    }

    #[test]
    fn keywords_are_whole_words() {
        let file = parse("net a { input x: [4]\n loss_branch = dense(2)\n from_x = relu\n inputs = relu }").unwrap();
        let names: Vec<_> = file.nets[0]
            .body
            .iter()
            .filter_map(|s| if let Stmt::Layer(l) = s { l.name.clone() } else { None })
            .collect();
        assert_eq!(names.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["loss_branch", "from_x", "inputs"]);
        assert!(parse("netx a { }").is_err());
        let err = parse("net a { from = relu }").unwrap_err();
        assert_eq!(err[0].message, "syntax error: `from` is a keyword and cannot be used as a name");
    }

    #[test]
    fn syntax_errors_name_missing_punctuation() {
        let err = parse("net a { input x: [4\n relu }").unwrap_err();
        assert_eq!(err[0].message, "syntax error: expected `,` or `]`, found `relu`");
        // Pointed at the end of the line where the `]` was due.
        assert_eq!(err[0].labels[0].range, 19..19);
        let err = parse("net a { input x: [4] }\ntrain { data = \"mnist\n }").unwrap_err();
        assert_eq!(err[0].message, "syntax error: unterminated string");
        let err = parse("net a { input x: [4] relu").unwrap_err();
        assert!(err[0].message.contains("or `}`, found end of file"), "{}", err[0].message);
    }

    #[test]
    fn syntax_error_says_what_was_expected() {
        let err = parse("net a {\n  conv(20, k=)\n}").unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err[0].message.contains("expected"), "{}", err[0].message);
        assert_eq!(err[0].labels[0].range.start, 21);
        assert_eq!(err[0].message, "syntax error: expected a value, found `)`");
    }

    #[test]
    fn oversized_literals_are_errors_not_panics() {
        assert!(parse("net a { conv(99999999999999999999) }").is_err());
        assert!(parse("net a { conv(1e999) }").is_err());
    }

    #[test]
    fn a_byte_order_mark_and_crlf_line_ends_are_accepted() {
        let file = parse("\u{FEFF}net a {\r\n  input x: [4] # note\r\n  dense(2)\r\n}\r\n").unwrap();
        assert_eq!(file.nets[0].name.name, "a");
        assert_eq!(file.nets[0].body.len(), 2);
    }

    #[test]
    fn nesting_at_the_limit_parses_and_deeper_is_an_error_not_an_overflow() {
        // The net block and the call take two levels; the list the rest.
        let lists = crate::MAX_NESTING - 2;
        let deep = |n: usize| format!("net a {{ conv(k={}1{}) }}", "[".repeat(n), "]".repeat(n));
        assert!(parse(&deep(lists)).is_ok());
        let err = parse(&deep(10_000)).unwrap_err();
        assert_eq!(err[0].code.as_deref(), Some("E0004"));
        let err = parse(&format!("train {{ lr_schedule = {}", "[".repeat(10_000))).unwrap_err();
        assert_eq!(err[0].code.as_deref(), Some("E0004"));
        let err = parse(&format!("net a(w = {}0{}) {{ }}", "[".repeat(10_000), "]".repeat(10_000))).unwrap_err();
        assert_eq!(err[0].code.as_deref(), Some("E0004"));
        // A failing parse at the limit reparses with error tracking; that must fit the stack too.
        assert!(parse(&format!("net a {{ conv(k={}1 }}", "[".repeat(lists))).is_err());
        assert!(parse_value(&"[".repeat(10_000)).is_err());
    }

    #[test]
    fn parses_command_line_values() {
        assert_eq!(parse_value("0.07").unwrap().kind, ValueKind::Float(0.07));
        assert_eq!(parse_value("-3").unwrap().kind, ValueKind::Int(-3));
        assert_eq!(parse_value("resample").unwrap().kind, ValueKind::Ident("resample".into()));
        assert!(parse_value("0.07 x").is_err());
    }
}
