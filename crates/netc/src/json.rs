//! Diagnostics as JSON (`--message-format json`): one object per diagnostic, one per line, for
//! editors and scripts. The schema is documented in docs/cli.md; lines and columns count from 1,
//! columns in Unicode scalar values, as rustc's JSON diagnostics do.

use netc_syntax::{Diagnostic, LabelStyle, Severity};
use serde::Serialize;

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: Option<&'a str>,
    severity: &'static str,
    message: &'a str,
    /// The file the diagnostic is about; `null` for mistakes on the command line.
    file: Option<&'a str>,
    labels: Vec<JsonLabel<'a>>,
    notes: Vec<&'a str>,
    help: Vec<&'a str>,
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    primary: bool,
    message: &'a str,
    byte_start: usize,
    byte_end: usize,
    line_start: usize,
    column_start: usize,
    line_end: usize,
    column_end: usize,
}

/// The diagnostics as JSON lines. `file` is the name and text the labels point into.
pub fn json_lines(diagnostics: &[Diagnostic], file: Option<(&str, &str)>) -> String {
    let text = file.map_or("", |(_, text)| text);
    let mut out = String::new();
    for d in diagnostics {
        let (help, notes): (Vec<&str>, Vec<&str>) =
            d.notes.iter().map(|n| n.trim()).partition(|n| n.starts_with("help:"));
        let json = JsonDiagnostic {
            code: d.code.as_deref(),
            severity: severity(d.severity),
            message: &d.message,
            file: file.map(|(name, _)| name),
            labels: d
                .labels
                .iter()
                .map(|l| {
                    let end = l.range.end.max(l.range.start);
                    let ((line_start, column_start), (line_end, column_end)) =
                        (position(text, l.range.start), position(text, end));
                    let byte = |offset: usize| line_prefix(text, offset).0;
                    JsonLabel {
                        primary: l.style == LabelStyle::Primary,
                        message: &l.message,
                        byte_start: byte(l.range.start),
                        byte_end: byte(end),
                        line_start,
                        column_start,
                        line_end,
                        column_end,
                    }
                })
                .collect(),
            notes: notes.into_iter().map(|n| n.strip_prefix("note:").map_or(n, str::trim)).collect(),
            help: help.into_iter().map(|h| h["help:".len()..].trim()).collect(),
        };
        // Serialising strings and numbers cannot fail.
        if let Ok(line) = serde_json::to_string(&json) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Bug => "bug",
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
        Severity::Help => "help",
    }
}

/// The 1-based line and column (in characters) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let (_, line, before) = line_prefix(text, offset);
    (line + 1, before.chars().count() + 1)
}

/// A byte offset clamped into `text` and back onto a character boundary, its 0-based line and
/// the text of that line before it: what any line/column convention is counted from.
pub fn line_prefix(text: &str, offset: usize) -> (usize, usize, &str) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (offset, before.matches('\n').count(), &before[line_start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use netc_syntax::Label;

    #[test]
    fn labels_carry_lines_and_character_columns() {
        let text = "net a {\n  inpüt x\n}\n";
        let start = text.find("inpüt").unwrap();
        let d = netc_syntax::Code::ShapeMismatch
            .error()
            .with_message("unknown")
            .with_labels(vec![Label::primary((), start..start + "inpüt".len()).with_message("here")])
            .with_notes(vec!["help: did you mean `input`?".into(), "note: a note".into()]);
        let line = json_lines(&[d], Some(("a.net", text)));
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["code"], "E0301");
        assert_eq!(value["file"], "a.net");
        let label = &value["labels"][0];
        assert_eq!((label["line_start"].as_u64(), label["column_start"].as_u64()), (Some(2), Some(3)));
        // Five characters, six bytes: the column counts characters.
        assert_eq!((label["line_end"].as_u64(), label["column_end"].as_u64()), (Some(2), Some(8)));
        assert_eq!(label["byte_end"].as_u64().unwrap() - label["byte_start"].as_u64().unwrap(), 6);
        assert_eq!(value["help"][0], "did you mean `input`?");
        assert_eq!(value["notes"][0], "a note");
    }

    #[test]
    fn ranges_past_the_text_are_clamped_not_a_panic() {
        let d = Diagnostic::error().with_labels(vec![Label::primary((), 2..400)]);
        let line = json_lines(&[d], Some(("a.net", "aé")));
        let value: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(value["labels"][0]["byte_start"], 1);
        assert_eq!(value["labels"][0]["byte_end"], 3);
    }
}
