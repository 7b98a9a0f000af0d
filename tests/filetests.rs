//! File tests of single passes on small hand-written programs, in the style of Cranelift's: each
//! `filetests/*.nir` of `netc-ir` and `netc-exec` is a program in the textual IR whose first line
//! names what to run on it, and `NAME.out` beside it holds the expected output, whole.
//!
//! * `# test: grad` — the program with its backward pass (autodiff);
//! * `# test: fused` — the kernels the compiled executor plans for it (`netc ir --fused`);
//! * `# test: fused grad` — the same for its backward pass;
//! * `# test: error` — the program must not parse; the output is the error at its line:column.
//!
//! `NETC_BLESS=1 cargo test --test filetests` rewrites the `.out` files from what the passes print.

use std::path::{Path, PathBuf};

fn run(test: &str, text: &str) -> Result<String, String> {
    let parsed = netc_ir::parse(text);
    if test == "error" {
        return match parsed {
            Ok(_) => Err("the program parsed, but the test expects an error".into()),
            Err(e) => Ok(format!("{e}\n")),
        };
    }
    let program = parsed.map_err(|e| format!("does not parse: {e}"))?;
    let grad = |p: &netc_ir::Program| netc_ir::grad(p).map_err(|e| format!("autodiff failed: {e}"));
    let fused = |p: &netc_ir::Program| netc_exec::describe(p).map_err(|e| format!("fusion failed: {e}"));
    match test {
        "grad" => Ok(grad(&program)?.to_string()),
        "fused" => fused(&program),
        "fused grad" => fused(&grad(&program)?),
        _ => Err(format!("unknown test `{test}`; the first line is `# test: grad|fused|fused grad|error`")),
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "nir"))
        .collect();
    files.sort();
    files
}

fn run_dir(crate_dir: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(crate_dir).join("filetests");
    let bless = std::env::var_os("NETC_BLESS").is_some();
    let mut failures = Vec::new();
    let files = files(&dir);
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.display();
        let Some(test) = text.lines().next().and_then(|l| l.strip_prefix("# test:")).map(str::trim) else {
            failures.push(format!("{name}: the first line must be `# test: …`"));
            continue;
        };
        let got = match run(test, &text) {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let expected_path = path.with_extension("out");
        if bless {
            std::fs::write(&expected_path, &got).unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
            continue;
        }
        match std::fs::read_to_string(&expected_path) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!("{name}: output differs\n--- expected\n{want}--- got\n{got}")),
            Err(_) => failures.push(format!("{name}: no {} (bless with NETC_BLESS=1)", expected_path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    files.len()
}

#[test]
fn autodiff_and_parser_file_tests() {
    assert!(run_dir("netc-ir") >= 5, "too few IR file tests");
}

#[test]
fn fusion_file_tests() {
    assert!(run_dir("netc-exec") >= 5, "too few fusion file tests");
}
