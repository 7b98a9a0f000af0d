//! `--message-format json`: every diagnostic is one JSON object on its own line of stderr, at
//! the place the terminal rendering points to, and a few cases are compared whole with the
//! expected files in `tests/json/` (regenerate with `NETC_BLESS=1 cargo test --test json_diagnostics`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn netc(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netc")).args(args).current_dir(dir).output().unwrap()
}

fn objects(stderr: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn every_failing_file_reports_where_the_terminal_points() {
    let dir = root().join("tests/diagnostics/fail");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension() == Some("net".as_ref()))
        .collect();
    files.sort();
    assert!(files.len() > 50, "{} files", files.len());
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let human = netc(&dir, &["check", "--color", "never", name]);
        let json = netc(&dir, &["check", "--message-format", "json", name]);
        assert_eq!(human.status.code(), json.status.code(), "{name}");
        let human = String::from_utf8_lossy(&human.stderr).into_owned();
        let objects = objects(&json.stderr);
        let headers: Vec<&str> = human.lines().filter(|l| l.starts_with("error") || l.starts_with("warning")).collect();
        assert_eq!(objects.len(), headers.len(), "{name}: one object per diagnostic\n{human}");
        // The terminal's `┌─ file:line:col` lines, in order, are the first primary labels'.
        let mut places = human.lines().filter_map(|l| l.trim_start().strip_prefix("┌─ "));
        for object in &objects {
            assert!(object["code"].is_string() || object["code"].is_null(), "{name}: {object}");
            assert!(headers.iter().any(|h| h.contains(object["message"].as_str().unwrap())), "{name}: {object}");
            let labels = object["labels"].as_array().unwrap();
            if let Some(primary) = labels.iter().find(|l| l["primary"] == true) {
                let place = format!("{name}:{}:{}", primary["line_start"], primary["column_start"]);
                assert_eq!(places.next(), Some(place.as_str()), "{name}: {object}");
                assert_eq!(object["file"], name);
            }
        }
    }
}

#[test]
fn check_train_and_eval_diagnostics_match_the_expected_files() {
    let root = root();
    let cases: [(&str, &[&str]); 5] = [
        ("block_error_inside", &["check", "tests/diagnostics/fail/block_error_inside.net"]),
        ("warning_fixed_mixlu", &["check", "examples/mixlu_lenet.net", "--set", "mask=fixed"]),
        ("usage_unknown_set", &["check", "examples/mixlu_lenet.net", "--set", "negfrc=0.1"]),
        ("train_zero_epochs", &["train", "examples/lenet.net", "--epochs", "0", "--data", "mnist"]),
        ("eval_no_weights", &["eval", "examples/lenet.net"]),
    ];
    let bless = std::env::var_os("NETC_BLESS").is_some();
    let mut mismatches = Vec::new();
    for (name, args) in cases {
        let mut args = args.to_vec();
        args.extend(["--message-format", "json"]);
        let out = netc(&root, &args);
        let got = String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.starts_with('{')).fold(
            String::new(),
            |mut all, l| {
                all.push_str(l);
                all.push('\n');
                all
            },
        );
        assert!(!got.is_empty(), "{name}: no JSON diagnostic\n{}", String::from_utf8_lossy(&out.stderr));
        let path = root.join("tests/json").join(format!("{name}.jsonl"));
        if bless {
            std::fs::write(&path, &got).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(got.as_str()) {
            mismatches.push(format!("{name}:\n{got}"));
        }
    }
    assert!(mismatches.is_empty(), "rerun with NETC_BLESS=1 to accept\n{}", mismatches.join("\n"));
}
