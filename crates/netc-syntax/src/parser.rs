//! pest parse tree → typed AST.

use crate::ast::*;
use crate::diagnostics::{Diagnostic, Label};
use pest::error::{ErrorVariant, InputLocation, LineColLocation};
use pest::iterators::Pair;
use pest::Parser;

#[derive(pest_derive::Parser)]
#[grammar = "../../grammar/net.pest"]
struct NetParser;

/// Parses a whole `.net` file. A syntax error is returned as one diagnostic saying what was
/// expected where; so is a literal that does not fit its type.
pub fn parse(source: &str) -> Result<File, Vec<Diagnostic>> {
    let mut pairs = NetParser::parse(Rule::file, source).map_err(|e| vec![syntax_error(e)])?;
    let file = pairs.next().into_iter().flat_map(Pair::into_inner);
    let mut errors = Vec::new();
    let mut out = File { nets: Vec::new(), trains: Vec::new() };
    for item in file {
        match item.as_rule() {
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
    let mut pairs = NetParser::parse(Rule::lone_value, text).map_err(|e| vec![syntax_error(e)])?;
    let mut errors = Vec::new();
    let parsed = pairs.next().and_then(|lone| lone.into_inner().next()).map(|pair| value(pair, &mut errors));
    match parsed {
        Some(v) if errors.is_empty() => Ok(v),
        _ => Err(errors),
    }
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
    let whole = span(&pair);
    let mut inner = pair.into_inner();
    let name = inner.next().map(ident).unwrap_or(Ident { name: String::new(), span: whole });
    let mut params = Vec::new();
    let mut body = Vec::new();
    for item in inner {
        match item.as_rule() {
            Rule::params => {
                for p in item.into_inner() {
                    let pspan = span(&p);
                    let mut parts = p.into_inner();
                    let Some(name) = parts.next().map(ident) else {
                        continue;
                    };
                    let default = parts.next().map(|v| value(v, errors));
                    params.push(ParamDecl { name, default, span: pspan });
                }
            }
            Rule::input => {
                let ispan = span(&item);
                let mut parts = item.into_inner();
                if let (Some(name), Some(shape)) = (parts.next(), parts.next()) {
                    body.push(Stmt::Input(InputDecl { name: ident(name), shape: value(shape, errors), span: ispan }));
                }
            }
            Rule::layer | Rule::loss => body.push(Stmt::Layer(layer(item, errors))),
            _ => {}
        }
    }
    NetDecl { name, params, body, span: whole }
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
    Diagnostic::error()
        .with_code("E0002")
        .with_message(message)
        .with_labels(vec![Label::primary((), span.range()).with_message("this literal")])
        .with_notes(vec![note.to_string()])
}

/// Turns pest's error into a diagnostic that names what was expected in the user's terms.
fn syntax_error(error: pest::error::Error<Rule>) -> Diagnostic {
    let at = match error.location {
        InputLocation::Pos(p) => p..p,
        InputLocation::Span((s, e)) => s..e,
    };
    let mut expected: Vec<String> = Vec::new();
    if let Some(attempts) = error.parse_attempts() {
        for token in attempts.expected_tokens() {
            let text = token.to_string();
            if !expected.contains(&text) {
                expected.push(text);
            }
        }
    }
    if let ErrorVariant::ParsingError { positives, .. } = &error.variant {
        for rule in positives {
            if let Some(name) = rule_name(*rule) {
                if !expected.iter().any(|e| e == name) {
                    expected.push(name.to_string());
                }
            }
        }
    }
    expected.retain(|e| !e.is_empty() && !e.contains("WHITESPACE") && !e.contains("COMMENT"));
    let column = match error.line_col {
        LineColLocation::Pos((_, col)) | LineColLocation::Span((_, col), _) => col,
    };
    let found = found_text(error.line(), column);
    let message = if expected.is_empty() {
        format!("syntax error: unexpected {found}")
    } else {
        format!("syntax error: expected {}, found {found}", one_of(&expected))
    };
    Diagnostic::error()
        .with_code("E0001")
        .with_message(message)
        .with_labels(vec![Label::primary((), at).with_message("unexpected here")])
}

fn found_text(line: &str, col: usize) -> String {
    let rest: String = line.chars().skip(col.saturating_sub(1)).collect();
    let token: String = rest.chars().take_while(|c| !c.is_whitespace()).take(16).collect();
    if token.is_empty() {
        if rest.is_empty() {
            "end of line or file".into()
        } else {
            "white space".into()
        }
    } else {
        format!("`{token}`")
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
        Rule::int => "an integer",
        Rule::float => "a number",
        Rule::string => "a string",
        Rule::list => "a list",
        Rule::call | Rule::layer => "a layer",
        Rule::net => "`net`",
        Rule::train => "`train`",
        Rule::input => "`input`",
        Rule::loss => "`loss`",
        Rule::from => "`from`",
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
    fn parses_command_line_values() {
        assert_eq!(parse_value("0.07").unwrap().kind, ValueKind::Float(0.07));
        assert_eq!(parse_value("-3").unwrap().kind, ValueKind::Int(-3));
        assert_eq!(parse_value("resample").unwrap().kind, ValueKind::Ident("resample".into()));
        assert!(parse_value("0.07 x").is_err());
    }
}
