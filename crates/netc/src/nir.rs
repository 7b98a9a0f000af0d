//! Programs in the textual IR (`.nir` files): read back what `netc ir` printed, and run any
//! stage after lowering on it — autodiff, fusion and planning — without a `.net` file.

use crate::{Error, Source};
use netc_ir::Program;
use netc_syntax::{Code, Diagnostic, Label};

/// Whether a file holds a textual IR program rather than a `.net` source, by its extension.
pub fn is_ir_file(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| e == "nir")
}

/// Parses a textual IR program; every mistake is a diagnostic against the file.
pub fn read(source: &Source) -> Result<Program, Error> {
    netc_ir::parse(&source.text).map_err(|e| Error::Source {
        source: source.clone(),
        diagnostics: vec![Code::MalformedIr
            .error()
            .with_message(format!("malformed IR program: {}", e.message))
            .with_labels(vec![Label::primary((), e.span.range())])],
    })
}

/// The program with its backward pass appended.
pub fn differentiate(program: &Program) -> Result<Program, Error> {
    netc_ir::grad(program).map_err(|e| Error::Usage {
        source: None,
        diagnostics: vec![Diagnostic::error().with_message(format!("cannot differentiate `{}`: {e}", program.name()))],
    })
}

/// The kernels the compiled executor runs for `program`, as `netc ir --fused` prints them.
pub fn fused_text(program: &Program) -> Result<String, Error> {
    netc_exec::describe(program).map_err(|e| Error::Io(format!("cannot compile `{}`: {e}", program.name())))
}
