//! Diagnostics shared by every stage: codespan-reporting diagnostics over one source file.

use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor::Buffer, Config};

pub use codespan_reporting::diagnostic::{Label, Severity};

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

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(word, c), c))
        .filter(|&(d, c)| d <= (c.len().max(word.len()) / 3).max(1))
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
}
