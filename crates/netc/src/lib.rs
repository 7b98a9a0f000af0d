//! netc as a library: the compiler pipeline behind the `netc` command, for programs that embed it.
//!
//! ```
//! let source = netc::Source::new("mlp.net", "
//!     net mlp(width = 500) {
//!         input x: [784]
//!         dense(width)
//!         relu
//!         dense(10)
//!         loss softmax_xent(classes=10)
//!     }");
//! let checked = netc::check(&source, &[("width".into(), "64".into())]).unwrap();
//! let net = checked.net(None).unwrap();
//! assert_eq!(net.layers[0].out_shape, vec![64]);
//! print!("{}", netc::check::summary(net, false));
//! ```
//!
//! Compiling to IR with the backward pass, initialising parameters from the seed, and running
//! forward and backward on a batch:
//!
//! ```
//! use netc::ir::{Mode, Tensor};
//! use netc::interp::{Feed, Interpreter};
//!
//! let source = netc::Source::new("tiny.net", "
//!     net tiny { input x: [4]  dense(3)  neglu  dense(2)  loss softmax_xent(classes=2) }
//!     train { seed = 7 init = xavier }");
//! let model = netc::model(&source, &[], None).unwrap();
//! let program = netc::run::compile(&model, Mode::Train, true).unwrap();
//! let params = netc::run::init_params(&model, &program);
//! assert_eq!(params[0].0, "dense1.weight");
//!
//! let data = Tensor::new(vec![2, 4], vec![0.5, -1.0, 2.0, 0.0, 1.0, 1.0, -0.5, 0.25]).unwrap();
//! let labels = Tensor::new(vec![2], vec![1.0, 0.0]).unwrap();
//! let feed = Feed { data: Some(&data), labels: Some(&labels), step: 0, params: &params };
//! let outputs = Interpreter::default().run(&program, &feed).unwrap();
//! assert!(outputs.get("loss").unwrap().data()[0] > 0.0);
//! assert_eq!(outputs.get("dense1.weight").unwrap().shape(), &[3, 4]); // its gradient
//! ```

mod invocation;
mod json;
pub mod nir;
pub mod run;

pub use invocation::Invocation;
pub use json::{json_lines, line_prefix};
pub use netc_check as check;
pub use netc_data as data;
pub use netc_interp as interp;
pub use netc_ir as ir;
pub use netc_lower as lower;
pub use netc_onnx as onnx;
pub use netc_syntax as syntax;
pub use netc_train as train;

use netc_syntax::{ast, Diagnostic};
use std::fmt;
use std::path::Path;

/// The largest `.net` file netc reads: a net of 50,000 layers is under 1 MiB, and the front
/// end's memory grows with the text (the parse tree, every net checked).
pub const MAX_SOURCE_BYTES: u64 = 4 << 20;

/// A `.net` source text and the name diagnostics show for it.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Source {
        Source { name: name.into(), text: text.into() }
    }

    /// Reads a file; a missing or unreadable file, one larger than [`MAX_SOURCE_BYTES`], or one
    /// that is not UTF-8, is an [`Error::Io`].
    pub fn read(path: &Path) -> Result<Source, Error> {
        use std::io::Read;
        let cannot = |e: std::io::Error| Error::Io(format!("cannot read {}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(cannot)?;
        // Read at most one byte past the limit, whatever the file claims its size is (a device
        // or a growing file may claim none).
        let mut bytes = Vec::new();
        file.take(MAX_SOURCE_BYTES + 1).read_to_end(&mut bytes).map_err(cannot)?;
        if bytes.len() as u64 > MAX_SOURCE_BYTES {
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0).max(bytes.len() as u64);
            return Err(Error::Io(format!(
                "{} is {size} bytes, more than a .net source may be ({MAX_SOURCE_BYTES} bytes, 4 MiB): \
                 split its nets over several files",
                path.display()
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::Io(format!(
                "{} is not UTF-8 text (invalid byte at offset {})",
                path.display(),
                e.utf8_error().valid_up_to()
            ))
        })?;
        Ok(Source::new(path.display().to_string(), text))
    }
}

/// Why compilation stopped.
#[derive(Debug)]
pub enum Error {
    /// Mistakes in the source file, as diagnostics against it.
    Source { source: Source, diagnostics: Vec<Diagnostic> },
    /// Mistakes in how netc was called (`--set` of an unknown parameter, `--net` of an unknown net).
    Usage { source: Option<Source>, diagnostics: Vec<Diagnostic> },
    /// A file could not be read or written, or data could not be loaded.
    Io(String),
    /// A bug in netc: a checked model that a later stage could not handle.
    Internal(String),
    /// Training stopped because a value became NaN or infinite; the diagnostic points at the
    /// layer that produced the first one.
    Diverged { source: Source, divergence: netc_train::Divergence },
    /// `--resume` of a run folder that records a different run (net, parameters, seed, batch
    /// size or data): a usage error.
    ResumeMismatch { folder: netc_train::RunFolder, mismatch: netc_train::Mismatch },
    /// Another process is training into the run folder.
    Locked { folder: netc_train::RunFolder, pid: Option<u32> },
    /// A data set asked for by name is in none of the places netc looks; `message` lists them.
    DataNotFound { name: String, message: String },
    /// A fresh run into a folder that already holds one: a usage error.
    Occupied { folder: netc_train::RunFolder },
    /// Training was asked to stop; the run folder's checkpoint holds where it stopped.
    Interrupted { folder: netc_train::RunFolder, at: netc_train::Stopped },
}

impl Error {
    /// The error as the terminal shows it, with or without colour, its hints naming an
    /// installed `netc`.
    pub fn render(&self, color: bool) -> String {
        self.render_for(color, &Invocation::default())
    }

    /// The error as the terminal shows it, its hints naming commands as `invocation` runs netc.
    pub fn render_for(&self, color: bool, invocation: &Invocation) -> String {
        let (file, diagnostics) = self.diagnostics(invocation);
        match self {
            Error::Internal(message) => format!("internal error (a bug in netc, please report it): {message}\n"),
            Error::Interrupted { .. } => diagnostics
                .iter()
                .map(|d| d.notes.iter().fold(format!("{}\n", d.message), |text, note| text + note + "\n"))
                .collect(),
            // About no source: the message and its note and help lines, as plain lines.
            Error::Io(_)
            | Error::ResumeMismatch { .. }
            | Error::Locked { .. }
            | Error::DataNotFound { .. }
            | Error::Occupied { .. } => diagnostics
                .iter()
                .map(|d| {
                    let notes: String = d.notes.iter().map(|n| format!("{n}\n")).collect();
                    format!("error: {}\n{notes}", d.message)
                })
                .collect(),
            Error::Source { .. } | Error::Usage { .. } | Error::Diverged { .. } => {
                let (name, text) = file.unwrap_or(("<command line>", ""));
                netc_syntax::render(&diagnostics, name, text, color)
            }
        }
    }

    /// The error as JSON lines, one per diagnostic (`--message-format json`), its hints naming
    /// commands as `invocation` runs netc.
    pub fn json(&self, invocation: &Invocation) -> String {
        let (file, diagnostics) = self.diagnostics(invocation);
        json::json_lines(&diagnostics, file)
    }

    /// The error's diagnostics and the file (name and text) their labels point into, if any.
    fn diagnostics(&self, invocation: &Invocation) -> (Option<(&str, &str)>, Vec<Diagnostic>) {
        fn file(s: &Source) -> (&str, &str) {
            (s.name.as_str(), s.text.as_str())
        }
        match self {
            Error::Source { source, diagnostics } => (Some(file(source)), diagnostics.clone()),
            Error::Usage { source, diagnostics } => (source.as_ref().map(file), diagnostics.clone()),
            Error::Diverged { source, divergence } => {
                let netc_train::Divergence { epoch, step, layer, span } = divergence;
                let diagnostic = netc_syntax::Code::Diverged
                    .error()
                    .with_message(format!("training diverged in epoch {epoch}, step {step}"))
                    .with_labels(vec![netc_syntax::Label::primary((), span.range())
                        .with_message(format!("`{layer}` produced the first NaN or infinity"))])
                    .with_notes(vec![
                        "note: the last good checkpoint is kept in the run folder".into(),
                        "help: lower the learning rate, or check the initialisation".into(),
                    ]);
                (Some(file(source)), vec![diagnostic])
            }
            Error::Io(message) => (None, vec![Diagnostic::error().with_message(message.clone())]),
            Error::Internal(message) => {
                (None, vec![Diagnostic::bug().with_message(format!("internal error (a bug in netc): {message}"))])
            }
            Error::ResumeMismatch { folder, mismatch } => (
                None,
                vec![Diagnostic::error()
                    .with_message(format!("cannot resume {}: it records a different run", folder.dir().display()))
                    .with_notes(vec![
                        format!("  {}: {} in the folder, {} now", mismatch.what, mismatch.recorded, mismatch.requested),
                        "help: resume with the settings the run was started with, or start a new run with --out".into(),
                    ])],
            ),
            Error::Locked { folder, pid } => {
                let holder = pid.map_or("another process".to_string(), |pid| format!("process {pid}"));
                let message = format!(
                    "{} is in use: {holder} is training into it (it holds {})",
                    folder.dir().display(),
                    folder.lock_file().display()
                );
                let help = "help: wait for it to finish, or choose another folder with --out";
                (None, vec![Diagnostic::error().with_message(message).with_notes(vec![help.into()])])
            }
            Error::DataNotFound { name, message } => {
                let fetch = invocation.command(&["data", "fetch", name]);
                let help = format!("help: to get it, run `{fetch}`, or set NETC_DATA to a folder that holds {name}/");
                (None, vec![Diagnostic::error().with_message(message.clone()).with_notes(vec![help])])
            }
            Error::Occupied { folder } => {
                let message = format!("{} already holds a run", folder.dir().display());
                let help = format!(
                    "help: continue it with {}, or choose another folder with --out",
                    invocation.resume(folder.dir())
                );
                (None, vec![Diagnostic::error().with_message(message).with_notes(vec![help])])
            }
            Error::Interrupted { folder, at } => {
                let message = format!("training interrupted {at}");
                let notes = vec![
                    format!("note: the checkpoint in {} holds this position", folder.dir().display()),
                    format!("help: continue the run with {}", invocation.resume(folder.dir())),
                ];
                (None, vec![Diagnostic::note().with_message(message).with_notes(notes)])
            }
        }
    }

    fn usage(source: &Source, message: String) -> Error {
        Error::Usage { source: Some(source.clone()), diagnostics: vec![Diagnostic::error().with_message(message)] }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(false))
    }
}

impl std::error::Error for Error {}

/// Parses `name=value` overrides as the command line gives them.
pub fn parse_overrides(set: &[(String, String)]) -> Result<Vec<(String, ast::Value)>, Error> {
    set.iter()
        .map(|(name, text)| {
            netc_syntax::parse_value(text).map(|v| (name.clone(), v)).map_err(|problems| {
                // A literal too large for its type is a value, just not one netc can hold.
                let range = problems.iter().find(|d| netc_syntax::Code::LiteralRange.is_code_of(d));
                let (what, note) = match range {
                    Some(d) => ("is out of range", d.notes.first().cloned().unwrap_or_default()),
                    None => (
                        "is not a value",
                        "help: write a number, `true`/`false`, a name, a \"string\" or a [list]".to_string(),
                    ),
                };
                Error::Usage {
                    source: None,
                    diagnostics: vec![netc_syntax::Code::SetNotAValue
                        .error()
                        .with_message(format!("--set {name}={text}: `{text}` {what}"))
                        .with_notes(vec![note])],
                }
            })
        })
        .collect()
}

/// The source in the canonical layout of `netc fmt` (comments kept), or its syntax errors.
pub fn format(source: &Source) -> Result<String, Error> {
    netc_syntax::format(&source.text).map_err(|diagnostics| Error::Source { source: source.clone(), diagnostics })
}

/// Writes `text` over `path` atomically (a temporary file renamed over it).
pub fn write_source(path: &std::path::Path, text: &str) -> Result<(), Error> {
    netc_train::write_text(path, text).map_err(Error::Io)
}

/// Parses and checks a source with `--set` style overrides (`("negfrac", "0.07")`).
pub fn check(source: &Source, set: &[(String, String)]) -> Result<netc_check::Checked, Error> {
    check_file(source, &parse(source)?, set)
}

pub(crate) fn parse(source: &Source) -> Result<ast::File, Error> {
    netc_syntax::parse(&source.text).map_err(|diagnostics| Error::Source { source: source.clone(), diagnostics })
}

pub(crate) fn check_file(
    source: &Source,
    file: &ast::File,
    set: &[(String, String)],
) -> Result<netc_check::Checked, Error> {
    let set = parse_overrides(set)?;
    let usage = netc_check::check_overrides(file, &set);
    if !usage.is_empty() {
        return Err(Error::Usage { source: Some(source.clone()), diagnostics: usage });
    }
    netc_check::check(file, &set).map_err(|diagnostics| Error::Source { source: source.clone(), diagnostics })
}

/// One checked net of a source, with the file's training configuration.
#[derive(Clone, Debug)]
pub struct Model {
    pub source: Source,
    pub checked: netc_check::Checked,
    index: usize,
}

impl Model {
    pub fn net(&self) -> &netc_check::Net {
        &self.checked.nets[self.index]
    }

    pub fn train(&self) -> &netc_check::TrainConfig {
        &self.checked.train
    }

    /// Refuses a step of this model's net that needs more than `limit` bytes, before anything is
    /// allocated: a usage error naming the step's figure and the limit.
    pub fn check_memory(&self, step: netc_check::Step, limit: u64) -> Result<(), Error> {
        let what = match step {
            netc_check::Step::Train { .. } => format!("training `{}`", self.net().name),
            netc_check::Step::Evaluate { .. } => format!("evaluating `{}`", self.net().name),
        };
        netc_check::StepMemory::of(self.net(), step)
            .check(&what, limit)
            .map_err(|d| Error::Usage { source: Some(self.source.clone()), diagnostics: vec![d] })
    }

    /// A diagnostic against this model's source.
    pub fn source_error(&self, diagnostic: Diagnostic) -> Error {
        Error::Source { source: self.source.clone(), diagnostics: vec![diagnostic] }
    }
}

/// Checks a source and picks one net from it: the one called `net`, or the file's only one.
pub fn model(source: &Source, set: &[(String, String)], net: Option<&str>) -> Result<Model, Error> {
    pick_net(source, check(source, set)?, net)
}

pub(crate) fn pick_net(source: &Source, checked: netc_check::Checked, net: Option<&str>) -> Result<Model, Error> {
    let index = match checked.net(net) {
        Ok(chosen) => checked.nets.iter().position(|n| std::ptr::eq(n, chosen)).unwrap_or(0),
        Err(message) => return Err(Error::usage(source, message)),
    };
    Ok(Model { source: source.clone(), checked, index })
}
