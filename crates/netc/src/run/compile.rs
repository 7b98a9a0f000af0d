//! From a checked model to programs: lowering with diagnostics, autodiff, the executor's
//! kernels, the textual forms `netc ir` prints and the `netc summary` of fixed units.

use crate::{Error, Model, Source};
use netc_ir::{Mode, Program};
use netc_syntax::{Code, Label};
use netc_train::Named;
use std::time::{Duration, Instant};

/// Lowers the model's net (forward program, in training or evaluation mode).
pub fn lower(model: &Model, mode: Mode) -> Result<Program, Error> {
    let options = netc_lower::LowerOptions { mode, seed: model.train().seed };
    let program = netc_lower::lower(model.net(), options).map_err(|e| {
        model.source_error(
            Code::Lowering
                .error()
                .with_message(format!("cannot compile `{}`: {}", e.layer, e.message))
                .with_labels(vec![Label::primary((), e.span.range()).with_message("this layer")]),
        )
    })?;
    Ok(program.with_source_lines(&model.source.text))
}

/// The forward program and, with `grad`, its backward pass: the program that computes the
/// loss and the gradient of every parameter.
pub fn compile(model: &Model, mode: Mode, grad: bool) -> Result<Program, Error> {
    let forward = lower(model, mode)?;
    if !grad {
        return Ok(forward);
    }
    differentiate(model, &forward)
}

fn differentiate(model: &Model, forward: &Program) -> Result<Program, Error> {
    netc_ir::grad(forward).map_err(|e| Error::Internal(format!("cannot differentiate `{}`: {e}", model.net().name)))
}

/// The kernels the compiled executor runs, as `netc ir --fused` prints them.
pub fn fused_text(model: &Model, grad: bool) -> Result<String, Error> {
    let program = compile(model, Mode::Train, grad)?;
    netc_exec::describe(&program).map_err(executor_error)
}

/// A compiler stage and how long it took.
pub type StageTime = (&'static str, Duration);

/// Compiles one net of `source` from text to machine code for the compiled executor (the
/// training program with `grad`), timing each stage: parse, check, IR, autodiff, fusion,
/// machine code.
pub fn stage_times(
    source: &Source,
    set: &[(String, String)],
    net: Option<&str>,
    grad: bool,
) -> Result<Vec<StageTime>, Error> {
    let mut times = Vec::new();
    let start = Instant::now();
    let file = crate::parse(source)?;
    times.push(("parse", start.elapsed()));
    let start = Instant::now();
    let model = crate::pick_net(source, crate::check_file(source, &file, set)?, net)?;
    times.push(("check", start.elapsed()));
    let start = Instant::now();
    let mut program = lower(&model, Mode::Train)?;
    times.push(("IR", start.elapsed()));
    if grad {
        let start = Instant::now();
        program = differentiate(&model, &program)?;
        times.push(("autodiff", start.elapsed()));
    }
    let compiled = executor(&program, 1)?.compile_times();
    times.push(("fusion", compiled.fusion));
    times.push(("machine code", compiled.machine_code));
    Ok(times)
}

pub(crate) fn executor(program: &Program, threads: usize) -> Result<netc_exec::Executor, Error> {
    limited_executor(program, threads, None)
}

/// An executor whose batch plans may take at most `memory_limit` bytes.
pub(crate) fn limited_executor(
    program: &Program,
    threads: usize,
    memory_limit: Option<u64>,
) -> Result<netc_exec::Executor, Error> {
    netc_exec::Executor::new(program, netc_exec::ExecOptions { threads, memory_limit }).map_err(executor_error)
}

pub(crate) fn executor_error(e: netc_exec::ExecError) -> Error {
    Error::Io(format!("cannot start the executor: {e}"))
}

/// The textual IR `netc ir` prints.
pub fn ir_text(model: &Model, grad: bool) -> Result<String, Error> {
    let program = compile(model, Mode::Train, grad)?;
    Ok(program.to_string())
}

/// `netc summary`: the checker's table of layers, then the fixed, seeded choice of units of
/// every layer that has one (as lowering draws it): which units are NegLUs, min units,
/// inhibitory, and so on. Each part but a layer's first is listed, its units compressed into
/// ranges (`3, 17, 41-43`).
/// With `expand`, the layers of each block use are listed under its row.
pub fn summary(model: &Model, expand: bool) -> String {
    let mut out = netc_check::summary(model.net(), expand);
    let choices = netc_lower::all_fixed_units(model.net(), model.train().seed);
    if !choices.is_empty() {
        out.push_str(&format!("fixed units (seed {}):\n", model.train().seed));
    }
    for choice in &choices {
        let total = choice.part_of.len();
        let per = if choice.shape.len() > 1 { " (per position)" } else { "" };
        for (part, name) in choice.parts.iter().enumerate().skip(1) {
            let units = choice.units_of(part);
            let listed = if units.is_empty() { "none".to_string() } else { ranges(&units) };
            out.push_str(&format!("  {}: {} of {total} units{per} {name}: {listed}\n", choice.layer, units.len()));
        }
    }
    out
}

/// Increasing indices as a list with runs of three or more shown as ranges: `3, 17, 41-43`.
fn ranges(sorted: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut start = 0;
    while start < sorted.len() {
        let mut end = start;
        while end + 1 < sorted.len() && sorted[end + 1] == sorted[end] + 1 {
            end += 1;
        }
        match end - start {
            0 => parts.push(sorted[start].to_string()),
            1 => parts.extend([sorted[start].to_string(), sorted[end].to_string()]),
            _ => parts.push(format!("{}-{}", sorted[start], sorted[end])),
        }
        start = end + 1;
    }
    parts.join(", ")
}

/// Fresh parameters for the model, by its `train` block's `init` and seed.
pub fn init_params(model: &Model, program: &Program) -> Vec<Named> {
    netc_lower::init_params(program, &model.train().init, model.train().seed)
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn runs_of_three_or_more_units_become_ranges() {
        assert_eq!(ranges(&[3, 17, 41, 42, 43, 50, 51, 60]), "3, 17, 41-43, 50, 51, 60");
        assert_eq!(ranges(&[0, 1, 2, 3]), "0-3");
        assert_eq!(ranges(&[7]), "7");
    }
}
