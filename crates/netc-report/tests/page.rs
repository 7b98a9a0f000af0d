//! docs/experiments.md shows exactly what the runs committed under experiments/ give.

use std::path::Path;

#[test]
fn the_experiments_page_is_what_the_committed_runs_give() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let page = std::fs::read_to_string(netc_report::page_path(&root)).unwrap();
    let blocks = netc_report::blocks(&root).unwrap_or_else(|e| panic!("{e}"));
    let updated = netc_report::update(&page, &blocks).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        page == updated,
        "{} differs from what the runs under experiments/ give: run `cargo run -p netc-report` and commit the page",
        netc_report::PAGE
    );
}
