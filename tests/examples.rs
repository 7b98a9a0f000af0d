//! Every example in `examples/` checks clean, with no warnings.

use std::path::Path;

#[test]
fn every_example_checks_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "net") {
            continue;
        }
        let source = netc::Source::read(&path).unwrap();
        let checked = netc::check(&source, &[]).unwrap_or_else(|e| panic!("{}", e.render(false)));
        assert!(
            checked.warnings.is_empty(),
            "{}",
            netc::syntax::render(&checked.warnings, &source.name, &source.text, false)
        );
        count += 1;
    }
    assert!(count >= 7, "expected the seven example nets, found {count}");
}
