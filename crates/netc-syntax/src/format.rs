//! `netc fmt`: one canonical layout of a `.net` file. Items and statements are printed from the
//! syntax tree (four-space indentation, `key=value` arguments, `name = value` parameters and
//! settings, spaces around operators, the fewest parentheses an expression needs); comments are
//! taken from the source between them and kept, trailing comments of consecutive lines aligned.
//! A statement with a comment inside it is kept as written, so no comment is ever lost.

use crate::ast::*;
use crate::Diagnostic;
use std::fmt::Write;

/// The file in canonical layout, or its syntax errors.
pub fn format(source: &str) -> Result<String, Vec<Diagnostic>> {
    let file = crate::parse(source)?;
    let mut items: Vec<(Span, Item)> = Vec::new();
    items.extend(file.units.iter().map(|u| (u.span, Item::Unit(u))));
    items.extend(file.blocks.iter().map(|b| (b.span, Item::Body("block", &b.name, &b.params, &b.body))));
    items.extend(file.nets.iter().map(|n| (n.span, Item::Body("net", &n.name, &n.params, &n.body))));
    items.extend(file.trains.iter().map(|t| (t.span, Item::Train(t))));
    items.sort_by_key(|(span, _)| span.start);
    let text = source.strip_prefix('\u{FEFF}').map_or(source, |_| &source[3..]);
    let offset = source.len() - text.len();
    let mut out = Lines::default();
    let mut at = offset;
    for (span, item) in &items {
        out.gap(source, at, span.start, 0);
        item.print(source, *span, &mut out);
        at = span.end;
    }
    out.gap(source, at, source.len(), 0);
    Ok(out.finish())
}

enum Item<'a> {
    Unit(&'a UnitDecl),
    Body(&'static str, &'a Ident, &'a [ParamDecl], &'a [Stmt]),
    Train(&'a TrainBlock),
}

impl Item<'_> {
    fn print(&self, source: &str, span: Span, out: &mut Lines) {
        match self {
            Item::Unit(unit) => {
                if has_comment(source, unit.span) {
                    return out.verbatim(source, unit.span, 0);
                }
                let mut line = format!("unit {}{} = {}", unit.name.name, params(&unit.params), expr(&unit.body));
                if let Some(grad) = &unit.grad {
                    let _ = write!(line, " grad {}", expr(grad));
                }
                out.code(0, line);
            }
            Item::Body(keyword, name, decl_params, body) => {
                let first = body.first().map_or(span.end.saturating_sub(1), |s| stmt_span(s).start);
                let Some(brace) = opening_brace(source, Span::new(span.start, first)) else {
                    return out.verbatim(source, span, 0);
                };
                out.code(0, format!("{keyword} {}{} {{", name.name, params(decl_params)));
                let mut at = brace + 1;
                for stmt in body.iter() {
                    let s = stmt_span(stmt);
                    out.gap(source, at, s.start, 1);
                    if has_comment(source, s) {
                        out.verbatim(source, s, 1);
                    } else {
                        out.code(1, statement(stmt));
                    }
                    at = s.end;
                }
                out.gap(source, at, span.end.saturating_sub(1), 1);
                out.code(0, "}".into());
            }
            Item::Train(train) => {
                let first = train.settings.first().map_or(span.end.saturating_sub(1), |s| s.span.start);
                let Some(brace) = opening_brace(source, Span::new(span.start, first)) else {
                    return out.verbatim(source, span, 0);
                };
                out.code(0, "train {".into());
                let mut at = brace + 1;
                for setting in &train.settings {
                    out.gap(source, at, setting.span.start, 1);
                    if has_comment(source, setting.span) {
                        out.verbatim(source, setting.span, 1);
                    } else {
                        out.code(1, format!("{} = {}", setting.key.name, setting.value));
                    }
                    at = setting.span.end;
                }
                out.gap(source, at, span.end.saturating_sub(1), 1);
                out.code(0, "}".into());
            }
        }
    }
}

fn stmt_span(stmt: &Stmt) -> Span {
    match stmt {
        Stmt::Input(i) => i.span,
        Stmt::Layer(l) => l.span,
    }
}

fn statement(stmt: &Stmt) -> String {
    match stmt {
        Stmt::Input(input) => match &input.shape {
            Some(shape) => format!("input {}: {shape}", input.name.name),
            None => format!("input {}", input.name.name),
        },
        Stmt::Layer(layer) => {
            let mut line = String::new();
            if layer.is_loss {
                line.push_str("loss ");
            }
            if let Some(name) = &layer.name {
                let _ = write!(line, "{} = ", name.name);
            }
            let _ = write!(line, "{}", layer.call);
            if let Some(from) = &layer.from {
                let _ = write!(line, " from {}", from.name);
            }
            line
        }
    }
}

fn params(params: &[ParamDecl]) -> String {
    if params.is_empty() {
        return String::new();
    }
    let each: Vec<String> = params
        .iter()
        .map(|p| match &p.default {
            Some(v) => format!("{} = {v}", p.name.name),
            None => p.name.name.clone(),
        })
        .collect();
    format!("({})", each.join(", "))
}

/// How tightly an expression binds: a part of a looser kind needs parentheses.
fn precedence(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Binary(op, ..) => op_precedence(*op),
        ExprKind::Neg(_) => 4,
        ExprKind::Number(_) | ExprKind::Name(_) | ExprKind::Call { .. } => 5,
    }
}

fn op_precedence(op: BinOp) -> u8 {
    match op {
        BinOp::Less | BinOp::LessEqual | BinOp::Greater | BinOp::GreaterEqual | BinOp::Equal | BinOp::NotEqual => 1,
        BinOp::Add | BinOp::Sub => 2,
        BinOp::Mul | BinOp::Div => 3,
    }
}

/// The expression with the fewest parentheses that parse back to the same tree: operators are
/// left-associative, and comparisons do not chain.
pub fn expr(e: &Expr) -> String {
    let wrap = |e: &Expr, parens: bool| if parens { format!("({})", expr(e)) } else { expr(e) };
    match &e.kind {
        // The shorter of the plain (`2`, `0.25`) and the exponent form (`1e-7`); both read back
        // as the same f64.
        ExprKind::Number(v) => {
            let (plain, short) = (format!("{v}"), format!("{v:?}"));
            if plain.len() <= short.len() {
                plain
            } else {
                short
            }
        }
        ExprKind::Name(name) => name.clone(),
        ExprKind::Neg(a) => format!("-{}", wrap(a, precedence(a) < 4)),
        ExprKind::Binary(op, a, b) => {
            let p = op_precedence(*op);
            let left = wrap(a, precedence(a) < p || (p == 1 && precedence(a) == 1));
            let right = wrap(b, precedence(b) <= p);
            format!("{left} {} {right}", op.symbol())
        }
        ExprKind::Call { func, args } => {
            let each: Vec<String> = args
                .iter()
                .map(|a| match &a.key {
                    Some(key) => format!("{}={}", key.name, expr(&a.value)),
                    None => expr(&a.value),
                })
                .collect();
            format!("{}({})", func.name, each.join(", "))
        }
    }
}

/// The `{` that opens a body, in the head `span` (from the keyword to the first statement):
/// the last one before any comment. `None` when a comment comes before it.
fn opening_brace(source: &str, span: Span) -> Option<usize> {
    let head = source.get(span.range())?;
    let code_end = comment_start(head).unwrap_or(head.len());
    let brace = head[..code_end].rfind('{')?;
    // Parameters come before the brace; a comment among them keeps the item as written.
    (!has_comment(source, Span::new(span.start, span.start + brace))).then_some(span.start + brace)
}

fn comment_start(text: &str) -> Option<usize> {
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '#' if !in_string => return Some(i),
            _ => {}
        }
    }
    None
}

/// Whether the source of `span` holds a comment: a `#` outside a string.
fn has_comment(source: &str, span: Span) -> bool {
    comment_start(source.get(span.range()).unwrap_or("")).is_some()
}

/// The output, line by line, with the trailing comment of each code line kept apart so that
/// the comments of consecutive lines can be aligned.
#[derive(Default)]
struct Lines {
    lines: Vec<Line>,
}

struct Line {
    depth: usize,
    code: String,
    comment: Option<String>,
}

impl Lines {
    fn code(&mut self, depth: usize, code: String) {
        self.lines.push(Line { depth, code, comment: None });
    }

    fn blank(&mut self) {
        if self.lines.last().is_some_and(|l| !l.code.is_empty() || l.comment.is_some()) {
            self.lines.push(Line { depth: 0, code: String::new(), comment: None });
        }
    }

    /// The text between two nodes: a comment on the line the last node ends becomes its trailing
    /// comment; the others are comment lines at `depth`; one blank line is kept where any was.
    fn gap(&mut self, source: &str, from: usize, to: usize, depth: usize) {
        let text = source.get(from..to.max(from)).unwrap_or("");
        for (i, raw) in text.split('\n').enumerate() {
            let line = raw.trim();
            let last = text.split('\n').count() - 1;
            if line.starts_with('#') {
                let same_line = i == 0 && !self.lines.is_empty();
                match self.lines.last_mut() {
                    Some(code) if same_line && code.comment.is_none() && !code.code.is_empty() => {
                        code.comment = Some(line.to_string());
                    }
                    _ => self.lines.push(Line { depth, code: String::new(), comment: Some(line.to_string()) }),
                }
            } else if line.is_empty() && i > 0 && i < last {
                self.blank();
            }
        }
    }

    /// A node kept as written, its lines re-indented to `depth` relative to its first line.
    fn verbatim(&mut self, source: &str, span: Span, depth: usize) {
        let text = source.get(span.range()).unwrap_or("");
        let line_start = source[..span.start].rfind('\n').map_or(0, |n| n + 1);
        let indent = source[line_start..span.start].chars().take_while(|c| c.is_whitespace()).count();
        for (i, line) in text.split('\n').enumerate() {
            let line = line.trim_end();
            let own = line.len() - line.trim_start().len();
            let extra = if i == 0 { 0 } else { own.saturating_sub(indent) };
            let code = format!("{}{}", " ".repeat(extra), line.trim_start());
            self.lines.push(Line { depth, code, comment: None });
        }
    }

    fn finish(self) -> String {
        let mut out = String::new();
        let width = |l: &Line| 4 * l.depth + l.code.chars().count();
        let mut i = 0;
        while i < self.lines.len() {
            // A run of consecutive code lines with trailing comments aligns them.
            let mut end = i;
            while end < self.lines.len() && !self.lines[end].code.is_empty() && self.lines[end].comment.is_some() {
                end += 1;
            }
            let column = self.lines[i..end].iter().map(width).max().unwrap_or(0);
            for line in &self.lines[i..end.max(i + 1)] {
                let indent = " ".repeat(4 * line.depth);
                match (&line.comment, line.code.is_empty()) {
                    (Some(comment), false) => {
                        let pad = column.max(width(line)) - width(line);
                        let _ = writeln!(out, "{indent}{}{}  {comment}", line.code, " ".repeat(pad));
                    }
                    (Some(comment), true) => {
                        let _ = writeln!(out, "{indent}{comment}");
                    }
                    (None, true) => out.push('\n'),
                    (None, false) => {
                        let _ = writeln!(out, "{indent}{}", line.code);
                    }
                }
            }
            i = end.max(i + 1);
        }
        // One blank line between top-level items is kept, none at the end.
        let trimmed = out.trim_end_matches('\n');
        format!("{trimmed}\n")
    }
}
