//! The checker: turns a parsed `.net` file into checked networks ([`Net`]) and a training
//! configuration ([`TrainConfig`]), or reports every problem it finds as diagnostics.
//!
//! ```
//! let file = netc_syntax::parse("net mlp { input x: [784]\n dense(500)\n relu\n dense(10)\n loss softmax_xent(classes=10) }").unwrap();
//! let checked = netc_check::check(&file, &[]).unwrap();
//! assert_eq!(checked.nets[0].layers[2].out_shape, vec![10]);
//! ```

mod args;
mod config;
mod equivalence;
mod errors;
mod memory;
mod model;
mod net;
mod ops;
mod summary;
mod train;
mod units;

pub use config::*;
pub use memory::{Bytes, Step, StepMemory};
pub use model::*;
pub use net::{MAX_LAYERS, MAX_NAME_BYTES};
pub use ops::layer_signatures;
pub use summary::{describe_layer, summary};
pub use train::{count_override, lr_override, CountSetting};
pub use units::{prelude_unit, MAX_UNIT_TERMS};

use netc_syntax::ast::{self, Value, ValueKind};
use netc_syntax::{Diagnostic, Severity};
use std::collections::HashMap;

/// Everything a file defines, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    pub nets: Vec<Net>,
    pub train: TrainConfig,
    /// Warnings that did not stop the check.
    pub warnings: Vec<Diagnostic>,
}

impl Checked {
    /// The net called `name`, or the file's only net when no name is given.
    pub fn net(&self, name: Option<&str>) -> Result<&Net, String> {
        let names = || self.nets.iter().map(|n| format!("`{}`", n.name)).collect::<Vec<_>>().join(", ");
        match name {
            Some(name) => self
                .nets
                .iter()
                .find(|n| n.name == name)
                .ok_or_else(|| format!("no net named `{name}` in this file; it defines {}", names())),
            None => match &self.nets[..] {
                [only] => Ok(only),
                [] => Err("this file defines no net".to_string()),
                _ => Err(format!("this file defines several nets ({}); choose one with --net NAME", names())),
            },
        }
    }
}

/// Checks a parsed file. `set` overrides net parameters (`--set name=value`); an override must
/// name a parameter of some net in the file and match the type of its default.
pub fn check(file: &ast::File, set: &[(String, Value)]) -> Result<Checked, Vec<Diagnostic>> {
    let mut diagnostics = check_overrides(file, set);
    let units = units::check_units(file, &mut diagnostics);
    let definitions = net::Definitions { units: &units, blocks: blocks(file, &mut diagnostics) };
    let mut nets = Vec::new();
    let mut first_names: HashMap<&str, netc_syntax::Span> = HashMap::new();
    for decl in &file.nets {
        if let Some(&first) = first_names.get(decl.name.name.as_str()) {
            diagnostics.push(errors::duplicate_name("net", &decl.name, first));
        }
        first_names.entry(&decl.name.name).or_insert(decl.name.span);
        let params = net_params(decl, set, &mut diagnostics);
        if let Some(net) = net::check_net(decl, &params, &definitions, &mut diagnostics) {
            diagnostics.extend(equivalence::equivalences(&net));
            nets.push(net);
        }
    }
    let train = match &file.trains[..] {
        [] => TrainConfig::default(),
        [first, rest @ ..] => {
            // Point at the `train` keywords, not at the whole blocks.
            let head = |s: netc_syntax::Span| netc_syntax::Span::new(s.start, s.start + "train".len());
            for extra in rest {
                diagnostics.push(errors::duplicate_block(head(extra.span), head(first.span)));
            }
            train::check_train(first, &mut diagnostics)
        }
    };
    if diagnostics.iter().any(|d| d.severity >= Severity::Error) {
        diagnostics.sort_by_key(|d| d.labels.first().map_or(0, |l| l.range.start));
        return Err(diagnostics);
    }
    Ok(Checked { nets, train, warnings: diagnostics })
}

/// The blocks of `file` by name; a block named like a built-in or defined twice is reported
/// and left out.
fn blocks<'a>(file: &'a ast::File, errors: &mut Vec<Diagnostic>) -> HashMap<&'a str, &'a ast::BlockDecl> {
    let mut blocks: HashMap<&str, &ast::BlockDecl> = HashMap::new();
    for block in &file.blocks {
        let name = block.name.name.as_str();
        if let Some(what) = units::reserved(name) {
            errors.push(units::shadowing(&block.name, what, "block"));
        } else if let Some(first) = blocks.get(name) {
            errors.push(errors::duplicate_name("block", &block.name, first.name.span));
        } else {
            blocks.insert(name, block);
        }
    }
    blocks
}

/// The value of every parameter of `decl`: its `--set` override, else its default; `None` for
/// a parameter with neither (reported here).
fn net_params(
    decl: &ast::NetDecl,
    set: &[(String, Value)],
    errors: &mut Vec<Diagnostic>,
) -> HashMap<String, Option<Value>> {
    let mut params = HashMap::new();
    let mut first: HashMap<&str, netc_syntax::Span> = HashMap::new();
    for p in &decl.params {
        if let Some(&at) = first.get(p.name.name.as_str()) {
            errors.push(errors::duplicate_name("parameter", &p.name, at));
            continue;
        }
        first.insert(&p.name.name, p.name.span);
        let given = set.iter().rev().find(|(name, _)| *name == p.name.name).map(|(_, v)| v);
        let value = given.or(p.default.as_ref()).cloned();
        if value.is_none() {
            errors.push(errors::param_without_value(&p.name));
        }
        params.insert(p.name.name.clone(), value);
    }
    params
}

/// `--set` names must exist and their values must have the type of the default.
pub fn check_overrides(file: &ast::File, set: &[(String, Value)]) -> Vec<Diagnostic> {
    let declared: Vec<&ast::ParamDecl> = file.nets.iter().flat_map(|n| &n.params).collect();
    let mut errors = Vec::new();
    for (name, value) in set {
        let matching: Vec<&&ast::ParamDecl> = declared.iter().filter(|p| p.name.name == *name).collect();
        if matching.is_empty() {
            let known: Vec<&str> = declared.iter().map(|p| p.name.name.as_str()).collect();
            errors.push(errors::set_unknown(name, &known));
        }
        for p in matching {
            if let Some(default) = &p.default {
                if !same_type(&default.kind, &value.kind) {
                    errors.push(errors::set_wrong_type(name, value, default));
                }
            }
        }
    }
    errors
}

fn same_type(default: &ValueKind, given: &ValueKind) -> bool {
    use ValueKind::*;
    matches!(
        (default, given),
        (Int(_), Int(_))
            | (Float(_), Float(_) | Int(_))
            | (Bool(_), Bool(_))
            | (Str(_), Str(_))
            | (Ident(_), Ident(_))
            | (List(_), List(_))
    )
}
