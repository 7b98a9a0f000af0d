//! Front end of netc: parses `.net` source text into a typed [`ast`] whose nodes keep their
//! source spans, and renders diagnostics against that source.
//!
//! ```
//! let file = netc_syntax::parse("net tiny { input x: [4]\n dense(2)\n loss softmax_xent(classes=2) }").unwrap();
//! assert_eq!(file.nets[0].name.name, "tiny");
//! ```

pub mod ast;
mod codes;
mod diagnostics;
mod format;
mod lexical;
mod parser;

pub use ast::Span;
pub use codes::Code;
pub use diagnostics::{did_you_mean, render, Diagnostic, Label, LabelStyle, Severity};
pub use format::format;
pub use lexical::MAX_NESTING;
pub use parser::{parse, parse_value, MAX_EXPR_NODES};
