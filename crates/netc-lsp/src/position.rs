//! Byte offsets to LSP positions and back: lines from 0, characters in UTF-16 code units, as
//! the protocol counts them by default.

use serde_json::{json, Value};
use std::ops::Range;

/// The LSP range of a byte range of `text` (clamped to it, and back onto character boundaries).
pub fn range(text: &str, bytes: Range<usize>) -> Value {
    json!({ "start": position(text, bytes.start), "end": position(text, bytes.end.max(bytes.start)) })
}

fn position(text: &str, offset: usize) -> Value {
    let (_, line, before) = netc::line_prefix(text, offset);
    json!({ "line": line, "character": before.chars().map(char::len_utf16).sum::<usize>() })
}

/// The byte offset of an LSP position, or `None` when it is not in the text.
pub fn offset(text: &str, position: &Value) -> Option<usize> {
    let line = usize::try_from(position["line"].as_u64()?).ok()?;
    let character = usize::try_from(position["character"].as_u64()?).ok()?;
    let start = if line == 0 { 0 } else { text.match_indices('\n').nth(line - 1)?.0 + 1 };
    let line_text = text[start..].split('\n').next().unwrap_or("");
    let mut units = 0;
    for (i, c) in line_text.char_indices() {
        if units >= character {
            return Some(start + i);
        }
        units += c.len_utf16();
    }
    Some(start + line_text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units_and_round_trip() {
        let text = "ab\n𝑥é = 1\n";
        let at = text.find('=').unwrap();
        // 𝑥 is two UTF-16 units, é one, then a space.
        assert_eq!(position(text, at), json!({ "line": 1, "character": 4 }));
        assert_eq!(offset(text, &json!({ "line": 1, "character": 4 })), Some(at));
        assert_eq!(offset(text, &json!({ "line": 0, "character": 99 })), Some(2));
        assert_eq!(offset(text, &json!({ "line": 9, "character": 0 })), None);
        assert_eq!(range(text, 5..999)["end"], json!({ "line": 2, "character": 0 }));
    }
}
