//! The text form of a compiled program: its steps in run order, what each fused, and the
//! compiled elementwise kernels (`netc ir --fused`).

use crate::plan::{Compiled, Kernel, Origin};
use crate::{compile, ExecError};
use netc_ir::{Program, ValueId};
use std::fmt::Write;

/// Steps are padded to this width before their `# source` comment.
const COMMENT_COLUMN: usize = 64;

/// The steps `program` compiles to, one per line with the IR values they read and compute,
/// followed by each distinct fused kernel's body. Each step names its layer, and its line when
/// the program knows it ([`Program::with_source_lines`]).
pub fn describe(program: &Program) -> Result<String, ExecError> {
    // What the executor runs: the program without its gradient markers.
    let program = &program.clone().without_gradient_markers();
    let compiled = compile(program)?;
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_steps(&mut s, program, &compiled);
    Ok(s)
}

fn write_steps(s: &mut String, program: &Program, compiled: &Compiled) -> std::fmt::Result {
    let values = |vs: &[ValueId]| vs.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ");
    let fused_count = compiled.steps.iter().filter(|s| matches!(s.kernel, Kernel::Fused(_))).count();
    writeln!(
        s,
        "kernels {} ({} steps; {} fused elementwise, compiled as {} distinct) {{",
        program.name(),
        compiled.steps.len(),
        fused_count,
        compiled.kernels.len()
    )?;
    let insts = program.insts();
    for (i, step) in compiled.steps.iter().enumerate() {
        let out = step.out;
        let shape = &insts[out.0].shape;
        let mut line = match &step.kernel {
            Kernel::Fused(f) => {
                let grid = match f.inner {
                    Some(w) => format!("rows of {w}"),
                    None => "flat".to_string(),
                };
                let inside: Vec<String> =
                    f.values.iter().flatten().map(|v| format!("{} {v}", insts[v.0].op.name())).collect();
                let stored: Vec<String> =
                    std::iter::once(out).chain(f.also.iter().copied()).map(|v| v.to_string()).collect();
                format!(
                    "  k{i}: {}: {shape} = fused#{} {} [{grid}] {{ {} }}",
                    stored.join(", "),
                    f.kernel,
                    values(&step.args),
                    inside.join("; ")
                )
            }
            kernel => {
                let name = insts[step.fused.first().unwrap_or(&out).0].op.name();
                let mut line = format!("  k{i}: {out}: {shape} = {name} {}", values(&step.args));
                if let (Kernel::ConvFilter { bias: true, .. }, Some(db)) = (kernel, step.also.first()) {
                    write!(line, " +bias_grad {db}")?;
                }
                match kernel {
                    Kernel::ConvPair { .. } => write!(line, " +sum of {}", values(&step.fused))?,
                    Kernel::ConvDataPair { .. } | Kernel::ConvFilterPair { .. } => {
                        write!(line, " +second {}", values(&step.also))?
                    }
                    _ => {}
                }
                if let Kernel::Conv { epilogue, .. } | Kernel::MatMul { epilogue, .. } = kernel {
                    if epilogue.bias {
                        line.push_str(" +bias");
                    }
                    if let Some(act) = epilogue.act {
                        write!(line, " +{}", act.name())?;
                    }
                    if let (true, Some(pre)) = (epilogue.keep_pre, step.also.first()) {
                        write!(line, " +pre {pre}")?;
                    }
                }
                line
            }
        };
        if let Some(src) = program.source_of(out) {
            // Padded by hand: a format width is limited to u16::MAX, and a step joining
            // thousands of values writes a longer line.
            let pad = COMMENT_COLUMN.saturating_sub(line.chars().count()).max(2);
            line.extend(std::iter::repeat_n(' ', pad));
            write!(line, "# {}", src.name)?;
            if let Some(n) = src.line {
                write!(line, " (line {n})")?;
            }
        }
        writeln!(s, "{line}")?;
    }
    let unstored = compiled.origins.iter().filter(|o| **o == Origin::Fused).count();
    writeln!(s, "  # {unstored} values are computed inside fused steps and never stored")?;
    for (k, kernel) in compiled.kernels.iter().enumerate() {
        writeln!(s, "  fused#{k} {{")?;
        for line in kernel.to_string().lines() {
            writeln!(s, "  {line}")?;
        }
        writeln!(s, "  }}")?;
    }
    writeln!(s, "}}")
}
