//! Diagnostics shared by every stage: codespan-reporting diagnostics over one source file.

use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor::Buffer, Config};

pub use codespan_reporting::diagnostic::{Label, LabelStyle, Severity};

/// A diagnostic about the one source file a compilation reads.
pub type Diagnostic = codespan_reporting::diagnostic::Diagnostic<()>;

/// Renders diagnostics as the terminal shows them (`error[..]: ..`, `┌─ file:line:col`, labelled
/// source lines, notes). With `color` the text carries ANSI colour codes.
pub fn render(diagnostics: &[Diagnostic], file_name: &str, source: &str, color: bool) -> String {
    let file = SimpleFile::new(file_name, source);
    let config = Config::default();
    let styles = term::Styles::default();
    let mut out = String::new();
    for diagnostic in diagnostics {
        let text = if color {
            let mut buffer = Buffer::ansi();
            let mut writer = term::StylesWriter::new(&mut buffer, &styles);
            term::emit_to_write_style(&mut writer, &config, &file, diagnostic)
                .map(|()| String::from_utf8_lossy(buffer.as_slice()).into_owned())
        } else {
            term::emit_into_string(&config, &file, diagnostic)
        };
        // Spans always come from this source, so rendering cannot fail; fall back to the message.
        out.push_str(&text.unwrap_or_else(|_| format!("error: {}\n", diagnostic.message)));
    }
    out
}

/// Names longer than this (in bytes) get no suggestion and are never suggested: a typo is a
/// small edit of a name someone typed, and the comparison costs the product of the lengths.
const SUGGEST_MAX_LEN: usize = 64;
/// At most this many candidates are compared, so that a file with thousands of names does
/// not make each of its mistakes cost thousands of comparisons.
const SUGGEST_MAX_CANDIDATES: usize = 500;

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo. The work
/// is bounded: at most [`SUGGEST_MAX_CANDIDATES`] comparisons of at most [`SUGGEST_MAX_LEN`]
/// bytes each, whatever the sizes of the inputs (callers put the likeliest candidates first).
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    closest(word, candidates, &mut 0)
}

/// [`did_you_mean`], adding to `work` the number of edit-distance table cells it computed.
fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>, work: &mut usize) -> Option<&'a str> {
    if word.len() > SUGGEST_MAX_LEN {
        return None;
    }
    candidates
        .into_iter()
        .take(SUGGEST_MAX_CANDIDATES)
        .filter(|c| c.len() <= SUGGEST_MAX_LEN)
        .filter_map(|c| {
            let limit = (c.len().max(word.len()) / 3).max(1);
            // The distance is at least the difference in length; skip what cannot be close.
            if c.len().abs_diff(word.len()) > limit {
                return None;
            }
            *work += (c.len() + 1) * (word.len() + 1);
            let d = strsim::osa_distance(word, c);
            (d <= limit).then_some((d, c))
        })
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let ops = ["conv", "maxpool", "mixlu", "relu"];
        assert_eq!(did_you_mean("cnov", ops), Some("conv"));
        assert_eq!(did_you_mean("maxpol", ops), Some("maxpool"));
        assert_eq!(did_you_mean("mixlus", ops), Some("mixlu"));
        assert_eq!(did_you_mean("softmax", ops), None);
    }

    #[test]
    fn suggestion_work_is_bounded_by_the_limits_not_the_input() {
        // A 100,000-character name: rejected before any comparison.
        let long = "x".repeat(100_000);
        let mut work = 0;
        assert_eq!(closest(&long, [long.as_str(), "conv"], &mut work), None);
        assert_eq!(work, 0);

        // Thousands of near-miss names of the longest length compared: the cost of one
        // suggestion stays within the candidate and length limits.
        let names: Vec<String> = (0..20_000).map(|i| format!("{:0>64}", i)).collect();
        let word = format!("{}x1", "0".repeat(62));
        let mut work = 0;
        let best = closest(&word, names.iter().map(String::as_str), &mut work);
        assert_eq!(best, Some(names[1].as_str()));
        let bound = SUGGEST_MAX_CANDIDATES * (SUGGEST_MAX_LEN + 1) * (SUGGEST_MAX_LEN + 1);
        assert!(work <= bound, "{work} cells, more than the bound {bound}");
        assert!(work > 0);

        // Ten times the candidates cost no more than the bound either.
        let more: Vec<String> = (0..200_000).map(|i| format!("{:0>64}", i)).collect();
        let mut more_work = 0;
        closest(&word, more.iter().map(String::as_str), &mut more_work);
        assert_eq!(more_work, work);
    }
}
