//! Every stage's output side by side, for one input at a time (naga's layout): for each
//! `pipeline/in/NAME.net`, `pipeline/out/` holds `NAME.nir` (the forward program), `NAME.grad.nir`
//! (with its backward pass) and `NAME.fused` (the kernels the compiled executor runs for it).
//! A change to any stage shows as a diff of these files.
//!
//! `NETC_BLESS=1 cargo test --test pipeline` rewrites the outputs.

use netc::ir::Mode;
use std::path::Path;

#[test]
fn every_stage_of_every_pipeline_input() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/pipeline");
    let bless = std::env::var_os("NETC_BLESS").is_some();
    let mut inputs: Vec<_> =
        std::fs::read_dir(root.join("in")).expect("pipeline/in").flatten().map(|e| e.path()).collect();
    inputs.retain(|p| p.extension().is_some_and(|e| e == "net"));
    inputs.sort();
    assert!(inputs.len() >= 4, "{inputs:?}");
    let mut failures = Vec::new();
    for input in &inputs {
        let stem = input.file_stem().and_then(|s| s.to_str()).expect("a file name");
        let source = netc::Source::read(input).unwrap_or_else(|e| panic!("{e}"));
        let model = netc::model(&source, &[], None).unwrap_or_else(|e| panic!("{e}"));
        let forward = netc::run::compile(&model, Mode::Train, false).unwrap_or_else(|e| panic!("{e}"));
        let backward = netc::run::compile(&model, Mode::Train, true).unwrap_or_else(|e| panic!("{e}"));
        let fused = netc::nir::fused_text(&backward).unwrap_or_else(|e| panic!("{e}"));
        for (suffix, got) in [("nir", forward.to_string()), ("grad.nir", backward.to_string()), ("fused", fused)] {
            let path = root.join("out").join(format!("{stem}.{suffix}"));
            if bless {
                std::fs::write(&path, &got).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(got.as_str()) {
                failures.push(format!("{} differs (bless with NETC_BLESS=1):\n{got}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
