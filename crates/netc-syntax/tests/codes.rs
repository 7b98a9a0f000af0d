//! The code registry is the only source of diagnostic codes: docs/language.md lists exactly its
//! codes, and no source file of the workspace sets a code by hand.

use netc_syntax::Code;
use std::fs;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_language_reference_lists_every_code_once() {
    let docs = fs::read_to_string(workspace().join("docs/language.md")).unwrap();
    let listed: Vec<&str> = docs
        .lines()
        .filter_map(|line| line.strip_prefix("| "))
        .filter_map(|rest| rest.split_once(" |").map(|(code, _)| code))
        .filter(|code| code.len() == 5 && (code.starts_with('E') || code.starts_with('W')))
        .collect();
    let registered: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(listed, registered, "docs/language.md's table of codes differs from the registry");
}

#[test]
fn no_source_file_sets_a_code_by_hand() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    rust_files(&workspace().join("tests"), &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let registry = Path::new("src").join("codes.rs");
    let by_hand: Vec<String> = files
        .iter()
        .filter(|path| !path.ends_with(&registry))
        .filter(|path| fs::read_to_string(path).unwrap().contains(concat!("with_code", "(")))
        .map(|path| path.display().to_string())
        .collect();
    assert!(by_hand.is_empty(), "set codes through netc_syntax::Code, not by hand: {by_hand:?}");
}
