//! Every program of the file tests (`filetests/*.nir` of netc-ir and netc-exec), forward and
//! with its backward pass, computes on the compiled executor what the interpreter computes, at
//! 1 and 3 threads; so every op a file test uses — the ops user-defined units lower to among
//! them — is checked end to end, not only planned.

mod common;

use common::{assert_bitwise, assert_close, program_case};

fn programs() -> Vec<(String, netc_ir::Program)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut programs = Vec::new();
    for dir in ["netc-ir", "netc-exec"].map(|c| root.join(c).join("filetests")) {
        let mut paths: Vec<_> = std::fs::read_dir(&dir).expect("filetests/").flatten().map(|e| e.path()).collect();
        paths.retain(|p| p.extension().is_some_and(|e| e == "nir"));
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).expect("readable");
            if text.starts_with("# test: error") {
                continue; // made not to parse
            }
            let program = netc_ir::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            programs.push((path.display().to_string(), program));
        }
    }
    programs
}

#[test]
fn file_test_programs_match_the_interpreter() {
    let programs = programs();
    assert!(programs.len() >= 10, "{} programs", programs.len());
    for (name, forward) in programs {
        let backward = netc_ir::grad(&forward).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (what, program) in [("forward", forward), ("backward", backward)] {
            let case = program_case(program, 3, 7);
            let want = case.interpret();
            let one = case.execute(1);
            assert_close(&format!("{name} {what}"), &one, &want, 1e-4, 1e-5);
            assert_bitwise(&format!("{name} {what}, 1 vs 3 threads"), &case.execute(3), &one);
        }
    }
}
