//! ONNX's own checker and ONNX Runtime, in the Python venv `tools/onnx-venv.sh` creates, accept
//! every example's export and compute the interpreter's logits (within `common::TOLERANCE`).
//! `tools/onnx_check.py` does the Python side; this test writes the cases for it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The venv's Python: `NETC_ONNX_PYTHON` (`.ci/run` sets it, to `none` when it could not create
/// the venv and said why), else `.venv-onnx` at the repository's root if it exists.
fn python() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    match std::env::var_os("NETC_ONNX_PYTHON") {
        Some(p) if p == "none" => None,
        Some(p) => Some(PathBuf::from(p)),
        None => {
            let venv = root.join(".venv-onnx/bin/python");
            if venv.exists() {
                return Some(venv);
            }
            assert!(std::env::var_os("CI").is_none(), "CI must run tools/onnx-venv.sh first (see .ci/run)");
            None
        }
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn onnx_checker_and_onnxruntime_accept_every_export_and_compute_its_logits() {
    let Some(python) = python() else {
        eprintln!("ONNX Runtime check not run: create the venv with tools/onnx-venv.sh");
        return;
    };
    let dir = std::env::temp_dir().join(format!("netc-onnx-runtime-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut manifest = Vec::new();
    for (i, case) in common::cases().iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.onnx")), &case.onnx).unwrap();
        std::fs::write(dir.join(format!("{i}.input")), f32_bytes(&case.input)).unwrap();
        std::fs::write(dir.join(format!("{i}.logits")), f32_bytes(&case.logits)).unwrap();
        let shape: Vec<String> = case.input_shape.iter().map(usize::to_string).collect();
        manifest.push(format!("{i}\t{}\t{}\t{}", shape.join(","), case.classes, case.name));
    }
    std::fs::write(dir.join("cases.tsv"), manifest.join("\n") + "\n").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/onnx_check.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&dir)
        .arg(common::TOLERANCE.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    std::fs::remove_dir_all(&dir).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    print!("{stdout}");
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
}
