//! Diagnostics as data. Every `diagnostics/fail/NAME.net` must fail to check, and its whole
//! rendered diagnostic output must equal `NAME.stderr` beside it; every `diagnostics/pass/*.net`
//! must check clean. A first line `# args: --set name=value ...` passes overrides.
//! Regenerate the expected files with `NETC_BLESS=1 cargo test --test diagnostics`.

use std::fs;
use std::path::{Path, PathBuf};

fn cases(folder: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/diagnostics").join(folder);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "net"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no cases in {}", dir.display());
    files
}

/// The `--set` overrides named on the file's `# args:` line.
fn overrides(text: &str) -> Vec<(String, String)> {
    let Some(args) = text.lines().next().and_then(|l| l.strip_prefix("# args:")) else { return Vec::new() };
    let words: Vec<&str> = args.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "--set")
        .map(|w| {
            let (name, value) = w[1].split_once('=').expect("--set NAME=VALUE");
            (name.to_string(), value.to_string())
        })
        .collect()
}

fn rendered(path: &Path) -> Result<String, String> {
    let text = fs::read_to_string(path).unwrap();
    let name = format!("{}", path.file_name().unwrap().to_string_lossy());
    let source = netc::Source::new(name, text.clone());
    match netc::check(&source, &overrides(&text)) {
        Ok(checked) => Err(netc::syntax::render(&checked.warnings, &source.name, &source.text, false)),
        Err(e) => Ok(e.render(false)),
    }
}

#[test]
fn failing_files_render_their_expected_diagnostics() {
    let bless = std::env::var_os("NETC_BLESS").is_some();
    let mut mismatches = Vec::new();
    for path in cases("fail") {
        let actual = match rendered(&path) {
            Ok(text) => text,
            Err(_) => {
                mismatches.push(format!("{} checked clean but must fail", path.display()));
                continue;
            }
        };
        let expected_path = path.with_extension("stderr");
        if bless {
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            mismatches.push(format!(
                "{}:\n--- expected ({})\n{expected}\n--- actual\n{actual}",
                path.display(),
                expected_path.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatch(es); rerun with NETC_BLESS=1 to accept\n\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn passing_files_check_clean() {
    for path in cases("pass") {
        if let Ok(errors) = rendered(&path) {
            panic!("{} must check clean:\n{errors}", path.display());
        }
    }
}
