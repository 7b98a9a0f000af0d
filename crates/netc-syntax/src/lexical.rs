//! What is checked before the grammar runs: characters a `.net` file cannot hold, named so the
//! user can find an invisible one, and the depth of nested brackets, bounded so that the
//! recursive-descent parser (and every stage that walks a value) cannot run out of stack.

use crate::codes::Code;
use crate::diagnostics::{Diagnostic, Label};

/// The deepest brackets (`(`, `[`, `{`) may nest. A net block, a call, a list of lists and a
/// call inside it need four; the rest is room.
pub const MAX_NESTING: usize = 32;

/// At most this many distinct bad characters are reported; the rest are counted.
const MAX_REPORTED: usize = 8;

/// The byte-order mark a UTF-8 file may start with. It is part of no token; the grammar skips it.
pub const BYTE_ORDER_MARK: char = '\u{FEFF}';

/// Where a character is.
#[derive(Clone, Copy, PartialEq)]
enum Context {
    Code,
    /// Inside `"..."`; the flag is whether the previous character was a backslash.
    Str(bool),
    Comment,
}

/// The diagnostics of the checks this module makes, empty when `source` passes them.
pub fn check(source: &str) -> Vec<Diagnostic> {
    let mut bad: Vec<Bad> = Vec::new();
    let mut others = 0usize;
    let mut depth = 0usize;
    let mut context = Context::Code;
    let mut chars = source.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        let where_in = context;
        let allowed = match context {
            Context::Code => match c {
                '"' => {
                    context = Context::Str(false);
                    true
                }
                '#' => {
                    context = Context::Comment;
                    true
                }
                '(' | '[' | '{' => {
                    depth += 1;
                    if depth > MAX_NESTING {
                        return vec![too_deep(at)];
                    }
                    true
                }
                ')' | ']' | '}' => {
                    depth = depth.saturating_sub(1);
                    true
                }
                BYTE_ORDER_MARK => at == 0,
                '\r' => next == Some('\n'),
                ' ' | '\t' | '\n' => true,
                c => c.is_ascii_graphic(),
            },
            Context::Str(escaped) => {
                context = match c {
                    '\n' => Context::Code,
                    '"' if !escaped => Context::Code,
                    '\\' => Context::Str(!escaped),
                    _ => Context::Str(false),
                };
                c != '\0'
            }
            Context::Comment => {
                if c == '\n' {
                    context = Context::Code;
                }
                c != '\0' && (c != '\r' || next == Some('\n'))
            }
        };
        if !allowed {
            if let Some(b) = bad.iter_mut().find(|b| b.c == c) {
                b.count += 1;
            } else if bad.len() < MAX_REPORTED {
                bad.push(Bad { c, at, count: 1, context: where_in });
            } else {
                others += 1;
            }
        }
    }
    let mut diagnostics: Vec<Diagnostic> = bad.into_iter().map(bad_character).collect();
    if others > 0 {
        if let Some(last) = diagnostics.last_mut() {
            last.notes.push(format!("note: {others} more characters that cannot appear here are not shown"));
        }
    }
    diagnostics
}

/// The first of one kind of character that cannot be where it is.
struct Bad {
    c: char,
    at: usize,
    count: usize,
    context: Context,
}

fn too_deep(at: usize) -> Diagnostic {
    Code::TooDeep
        .error()
        .with_message(format!("brackets are nested more than {MAX_NESTING} deep"))
        .with_labels(vec![Label::primary((), at..at + 1).with_message(format!("level {} opens here", MAX_NESTING + 1))])
        .with_notes(vec![format!(
            "note: `(`, `[` and `{{` may nest at most {MAX_NESTING} deep; no net needs more than a few levels"
        )])
}

fn bad_character(Bad { c, at, count, context }: Bad) -> Diagnostic {
    let name = character_name(c);
    let shown = format!("U+{:04X} {name}", u32::from(c));
    let (message, help) = match c {
        BYTE_ORDER_MARK => (
            format!("a {shown} may only start the file"),
            "help: remove it; a byte-order mark is accepted only as the file's first character".to_string(),
        ),
        '\r' => (
            format!("{shown} that is not followed by a line feed"),
            "help: end lines with LF or CR LF; a lone CR is not a line ending here".to_string(),
        ),
        '\0' => (format!("a {shown} byte"), "help: .net files are text; is this a binary file?".to_string()),
        c if c.is_alphabetic() => (
            format!("a non-ASCII letter, {shown}, outside a string"),
            "help: names are made of ASCII letters, digits and `_`".to_string(),
        ),
        c if c.is_whitespace() || is_invisible(c) => (
            format!("a {shown} where only ASCII white space may be"),
            "help: replace it with an ordinary space, or delete it".to_string(),
        ),
        _ => (
            format!("the character {shown} cannot appear outside a string or comment"),
            match c {
                '\u{2212}' | '\u{2013}' | '\u{2014}' => "help: write the ASCII minus sign `-`".to_string(),
                '\u{201C}' | '\u{201D}' => "help: write strings with the ASCII quote `\"`".to_string(),
                _ => "help: outside strings and comments a .net file is ASCII".to_string(),
            },
        ),
    };
    let mut notes = vec![help];
    if count > 1 {
        notes.push(format!("note: the file holds {count} of them; this is the first"));
    }
    let label = match context {
        Context::Code => "here",
        Context::Str(_) => "here, in a string",
        Context::Comment => "here, in a comment",
    };
    Code::BadCharacter
        .error()
        .with_message(format!("syntax error: {message}"))
        .with_labels(vec![Label::primary((), at..at + c.len_utf8()).with_message(label)])
        .with_notes(notes)
}

/// Characters that render as nothing.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}' | '\u{180E}')
}

/// How the user would call a character they may not see.
fn character_name(c: char) -> String {
    let named = match c {
        '\0' => "NUL",
        '\r' => "carriage return",
        '\u{7F}' => "delete",
        '\u{00A0}' => "no-break space",
        '\u{00AD}' => "soft hyphen",
        '\u{1680}' => "ogham space mark",
        '\u{180E}' => "Mongolian vowel separator",
        '\u{2000}'..='\u{200A}' => "typographic space",
        '\u{200B}' => "zero-width space",
        '\u{200C}' => "zero-width non-joiner",
        '\u{200D}' => "zero-width joiner",
        '\u{200E}' | '\u{200F}' => "direction mark",
        '\u{2013}' => "en dash",
        '\u{2014}' => "em dash",
        '\u{2018}' | '\u{2019}' => "curly single quote",
        '\u{201C}' | '\u{201D}' => "curly double quote",
        '\u{2028}' => "line separator",
        '\u{2029}' => "paragraph separator",
        '\u{202F}' => "narrow no-break space",
        '\u{205F}' => "medium mathematical space",
        '\u{2060}' => "word joiner",
        '\u{2212}' => "minus sign",
        '\u{3000}' => "ideographic space",
        BYTE_ORDER_MARK => "byte-order mark",
        c if c.is_control() => "control character",
        c => return format!("`{c}`"),
    };
    named.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(source: &str) -> Vec<String> {
        check(source).into_iter().map(|d| d.message).collect()
    }

    #[test]
    fn ordinary_text_passes() {
        assert!(check("net a {\r\n  input x: [4] # café ☕\r\n}\ntrain { data = \"données\" }\n").is_empty());
        assert!(check("\u{FEFF}net a { }").is_empty());
    }

    #[test]
    fn invisible_and_foreign_characters_are_named_with_their_place() {
        let d = check("net a {\n  input\u{00A0}x: [4]\n}");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, "syntax error: a U+00A0 no-break space where only ASCII white space may be");
        assert_eq!(d[0].labels[0].range, 15..17);
        assert_eq!(
            messages("net a {\u{200B} }"),
            ["syntax error: a U+200B zero-width space where only ASCII white space may be"]
        );
        assert_eq!(messages("net caf\u{E9} { }"), ["syntax error: a non-ASCII letter, U+00E9 `é`, outside a string"]);
        assert_eq!(messages("net a {\0}"), ["syntax error: a U+0000 NUL byte"]);
        assert_eq!(messages("# \0\nnet a { }"), ["syntax error: a U+0000 NUL byte"]);
        assert_eq!(
            messages("net a {\r input x: [4] }"),
            ["syntax error: U+000D carriage return that is not followed by a line feed"]
        );
        assert_eq!(messages("net a { }\u{FEFF}"), ["syntax error: a U+FEFF byte-order mark may only start the file"]);
    }

    #[test]
    fn each_character_is_reported_once_with_a_count() {
        let d = check("net a {\u{A0}\u{A0}\u{A0} input\u{200B}x }");
        assert_eq!(d.len(), 2);
        assert!(d[0].notes.iter().any(|n| n == "note: the file holds 3 of them; this is the first"), "{:?}", d[0]);
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        assert!(check(&ok).is_empty());
        let deep = "[".repeat(10_000);
        let d = check(&deep);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, format!("brackets are nested more than {MAX_NESTING} deep"));
        assert_eq!(d[0].labels[0].range, MAX_NESTING..MAX_NESTING + 1);
        // Brackets in strings and comments do not count.
        assert!(check(&format!("\"{deep}\" # {deep}")).is_empty());
    }
}
