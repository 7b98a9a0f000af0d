//! `netc fmt`: every example is already formatted; formatting is idempotent and never changes
//! what a file checks to (the same diagnostics, or the same nets and training settings), on the
//! examples, the diagnostics corpus and random unit expressions.

#[path = "../crates/netc-interp/tests/common/unit_exprs.rs"]
mod unit_exprs;

use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "net"))
        .collect();
    files.sort();
    files
}

/// What a file checks to, without spans: each diagnostic's code and message, or each net's
/// expanded summary and the training configuration.
fn outcome(text: &str) -> Vec<String> {
    let source = netc::Source::new("f.net", text);
    match netc::check(&source, &[]) {
        Ok(checked) => {
            let mut out: Vec<String> = checked.nets.iter().map(|n| netc::check::summary(n, true)).collect();
            out.push(format!("{:?}", checked.train));
            out.extend(checked.warnings.iter().map(|d| format!("{:?} {}", d.code, d.message)));
            out
        }
        Err(netc::Error::Source { diagnostics, .. }) => {
            diagnostics.iter().map(|d| format!("{:?} {}", d.code, d.message)).collect()
        }
        Err(other) => vec![other.render(false)],
    }
}

fn assert_formats_faithfully(name: &str, text: &str) {
    let source = netc::Source::new(name, text);
    let Ok(once) = netc::format(&source) else { return };
    let twice = netc::format(&netc::Source::new(name, once.clone())).expect("formatted text parses");
    assert_eq!(twice, once, "{name}: formatting is not idempotent");
    assert_eq!(outcome(&once), outcome(text), "{name}: formatting changed what the file checks to\n{once}");
    let comments = |t: &str| t.lines().filter_map(|l| l.find('#').map(|i| l[i..].trim().to_string())).count();
    assert!(comments(&once) >= comments(text) || text.contains('"'), "{name}: a comment was lost\n{once}");
}

#[test]
fn every_example_is_formatted() {
    for path in files("examples") {
        let source = netc::Source::read(&path).unwrap();
        assert_eq!(netc::format(&source).unwrap(), source.text, "{} is not formatted: run `netc fmt`", path.display());
    }
}

#[test]
fn formatting_the_corpus_is_idempotent_and_changes_no_check() {
    let mut formatted = 0;
    for dir in ["examples", "tests/diagnostics/pass", "tests/diagnostics/fail", "tests/pipeline/in"] {
        for path in files(dir) {
            let text = std::fs::read_to_string(&path).unwrap();
            assert_formats_faithfully(&path.display().to_string(), &text);
            formatted += 1;
        }
    }
    assert!(formatted > 100, "only {formatted} files");
}

#[test]
fn a_messy_file_gets_the_canonical_layout_with_its_comments() {
    let messy = "# head\nunit  p( a=learned( 0.25 ) )=max(x,0)+a*min(x , 0)   # slope\n\n\n\
                 net n(w=4){ input x:[4]\n  dense( w )    # hidden\n      p\n\n  # the end\n loss softmax_xent( classes = 2 ) }\n\
                 train { epochs=2 }";
    let want = "# head\nunit p(a = learned(0.25)) = max(x, 0) + a * min(x, 0)  # slope\n\n\
                net n(w = 4) {\n    input x: [4]\n    dense(w)  # hidden\n    p\n\n    # the end\n    loss softmax_xent(classes=2)\n}\n\
                train {\n    epochs = 2\n}\n";
    assert_eq!(netc::format(&netc::Source::new("m.net", messy)).unwrap(), want);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn formatting_keeps_the_meaning_of_any_unit_expression(body in unit_exprs::expression()) {
        let text = format!("unit u(alpha = learned(0.7)) = {body}\nnet n {{\n input x: [5]\n u\n loss softmax_xent(classes=5)\n}}\n");
        assert_formats_faithfully("u.net", &text);
        // The same expression tree: the lowered programs agree but for where their lines are.
        let program = |t: &str| {
            let model = netc::model(&netc::Source::new("u.net", t), &[], None).unwrap();
            let text = netc::run::compile(&model, netc::ir::Mode::Train, false).unwrap().to_string();
            text.lines().filter(|l| !l.trim_start().starts_with("source")).map(|l| l.split("  #").next().unwrap_or(l).trim_end().to_string()).collect::<Vec<_>>()
        };
        let formatted = netc::format(&netc::Source::new("u.net", text.clone())).unwrap();
        prop_assert_eq!(program(&formatted), program(&text));
    }
}
