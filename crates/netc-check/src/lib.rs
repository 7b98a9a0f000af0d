//! The checker: turns a parsed `.net` file into checked networks ([`Net`]) and a training
//! configuration ([`TrainConfig`]), or reports every problem it finds as diagnostics.

mod config;
mod model;

pub use config::*;
pub use model::*;

use netc_syntax::{ast, Diagnostic};

/// Everything a file defines, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    pub nets: Vec<Net>,
    pub train: TrainConfig,
}

/// Checks a parsed file. `set` overrides net parameters (`--set name=value`).
pub fn check(_file: &ast::File, _set: &[(String, ast::Value)]) -> Result<Checked, Vec<Diagnostic>> {
    Err(Vec::new())
}
