//! The crate graph is the one ARCHITECTURE.md draws: every workspace crate has a row in its
//! table of crates, and no crate depends (outside its tests) on a netc crate its row does not
//! allow. A new dependency between stages is a change to the architecture, made in both places.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The rows of ARCHITECTURE.md's crate table: crate name → the netc crates it may depend on.
fn allowed() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let table = text.split("## Crates").nth(1).expect("ARCHITECTURE.md has a `## Crates` section");
    let mut rows = BTreeMap::new();
    for line in table.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Some(name) = cells.first().and_then(|c| c.strip_prefix('`')).and_then(|c| c.strip_suffix('`')) else {
            continue; // the header and its rule
        };
        let deps = cells.get(1).expect("a `may depend on` column");
        let deps = deps.split(',').map(|d| d.trim().trim_matches('`')).filter(|d| d.starts_with("netc"));
        rows.insert(name.to_string(), deps.map(str::to_string).collect());
    }
    rows
}

/// The netc crates a manifest's `[dependencies]` section names (dev-dependencies may use any).
fn netc_dependencies(manifest: &str) -> BTreeSet<String> {
    let mut in_dependencies = false;
    let mut deps = BTreeSet::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
        } else if in_dependencies {
            let name = line.split(['.', '=', ' ']).next().unwrap_or("");
            if name.starts_with("netc") {
                deps.insert(name.to_string());
            }
        }
    }
    deps
}

fn package_name(manifest: &str) -> String {
    manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("name = \"").and_then(|n| n.strip_suffix('"')))
        .expect("a package name")
        .to_string()
}

fn manifests() -> Vec<String> {
    let mut dirs: Vec<_> =
        std::fs::read_dir(root().join("crates")).expect("crates/").flatten().map(|e| e.path()).collect();
    dirs.push(root().join("bench"));
    dirs.into_iter().filter_map(|d| std::fs::read_to_string(d.join("Cargo.toml")).ok()).collect()
}

#[test]
fn every_crate_depends_only_on_what_the_architecture_allows() {
    let allowed = allowed();
    let manifests = manifests();
    assert!(manifests.len() >= 12, "found {} manifests", manifests.len());
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for manifest in &manifests {
        let name = package_name(manifest);
        let Some(may) = allowed.get(&name) else {
            problems.push(format!("`{name}` has no row in ARCHITECTURE.md's crate table"));
            continue;
        };
        for dep in netc_dependencies(manifest) {
            if !may.contains(&dep) {
                problems.push(format!("`{name}` depends on `{dep}`, which ARCHITECTURE.md does not allow"));
            }
        }
        seen.insert(name);
    }
    for name in allowed.keys().filter(|n| !seen.contains(*n)) {
        problems.push(format!("ARCHITECTURE.md lists `{name}`, which is not a crate of the workspace"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_ir_and_the_back_ends_build_without_the_front_end() {
    // The narrow waist: the IR is a leaf, and executors see only the IR.
    let allowed = allowed();
    assert_eq!(allowed["netc-ir"], BTreeSet::new());
    for back_end in ["netc-interp", "netc-jit"] {
        assert_eq!(allowed[back_end], BTreeSet::from(["netc-ir".to_string()]), "{back_end}");
    }
    assert_eq!(allowed["netc-exec"], BTreeSet::from(["netc-ir".to_string(), "netc-jit".to_string()]));
}

#[test]
fn the_manifest_reader_sees_dependencies_and_ignores_dev_dependencies() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\nnetc-ir.workspace = true\nnetc-jit = { path = \"a\" }\nrayon = \"1\"\n[dev-dependencies]\nnetc-check.workspace = true\n";
    let want: BTreeSet<String> = ["netc-ir", "netc-jit"].map(String::from).into();
    assert_eq!(netc_dependencies(manifest), want);
}
