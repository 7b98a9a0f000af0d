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
                    let (start, end) = (clamp(text, l.range.start), clamp(text, l.range.end.max(l.range.start)));
                    let ((line_start, column_start), (line_end, column_end)) =
                        (position(text, start), position(text, end));
                    JsonLabel {
                        primary: l.style == LabelStyle::Primary,
                        message: &l.message,
                        byte_start: start,
                        byte_end: end,
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

/// `offset` moved back onto a character boundary within `text`.
fn clamp(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The 1-based line and column of a byte offset on a character boundary.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
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
