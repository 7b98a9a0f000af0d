//! Every command-line value is checked before anything runs, as strictly as the same value in a
//! `.net` file: overrides of the train block give the train block's diagnostics, counts and
//! thread numbers are bounded, and a step that cannot fit in memory is refused with its figure.
//! Each is a usage error (exit 2) with a message that names the flag's problem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn netc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netc")).args(args).arg("--color=never").current_dir(root()).output().unwrap()
}

/// The exit status and stderr of `netc train examples/lenet.net` with `flags`. The data set
/// does not exist: every flag here must be refused before data is looked for.
fn train(flags: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["train", "examples/lenet.net", "--data", "no-such-data-set", "--out", "/nonexistent/run"];
    args.extend_from_slice(flags);
    let out = netc(&args);
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn train_block_overrides_give_the_train_blocks_diagnostics() {
    let cases: [(&[&str], &str); 7] = [
        (&["--epochs", "0"], "error[E0401]: `epochs` must be a positive integer, found `0`"),
        (&["--batch", "0"], "error[E0401]: `batch` must be a positive integer, found `0`"),
        (&["--seed", "-1"], "error[E0401]: `seed` must be a non-negative integer, found `-1`"),
        (&["--lr", "0"], "error[E0105]: `lr` must be a positive number, found 0"),
        (&["--lr=-1"], "error[E0105]: `lr` must be a positive number, found -1"),
        (&["--lr", "nan"], "error[E0104]: `lr` must be a positive number, found a name"),
        (&["--batch", "18446744073709551615"], "error[E0002]: integer literal is too large"),
    ];
    for (flags, message) in cases {
        let (status, stderr) = train(flags);
        assert_eq!(status, Some(2), "{flags:?}: {stderr}");
        assert!(stderr.starts_with(message), "{flags:?}: {stderr}");
        // Shown against the flag as written.
        assert!(stderr.contains("<command line>:1:"), "{flags:?}: {stderr}");
    }
}

#[test]
fn counts_and_threads_are_bounded() {
    for (flags, message) in [
        (["--limit-train", "0"], "invalid value '0' for '--limit-train <N>': must be at least 1"),
        (["--limit-test", "0"], "invalid value '0' for '--limit-test <N>': must be at least 1"),
        (["--threads", "0"], "invalid value '0' for '--threads <N>': 0 is not in 1..=256"),
        (["--threads", "2000"], "invalid value '2000' for '--threads <N>': 2000 is not in 1..=256"),
        (["--max-memory", "lots"], "invalid value 'lots' for '--max-memory <SIZE>'"),
    ] {
        let (status, stderr) = train(&flags);
        assert_eq!(status, Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(message), "{flags:?}: {stderr}");
    }
}

#[test]
fn a_step_that_cannot_fit_the_memory_limit_is_refused_with_both_figures() {
    let (status, stderr) = train(&["--batch", "100000000"]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.starts_with("error[E0304]: training `lenet` with batch 100000000 needs at least "), "{stderr}");
    assert!(stderr.contains("more than the limit of"), "{stderr}");
    let (status, stderr) = train(&["--max-memory", "10M"]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("needs at least 21.3 MB of memory, more than the limit of 10.0 MB"), "{stderr}");
    // Under the limit, the run goes on to look for its data.
    let (status, stderr) = train(&["--max-memory", "1GiB"]);
    assert_eq!(status, Some(2), "{stderr}");
    assert!(stderr.contains("no-such-data-set"), "{stderr}");

    let out = netc(&["eval", "examples/lenet.net", "--weights", "w", "--data", "x", "--max-memory", "1M"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error[E0304]: evaluating `lenet` with batch 1000"));
}

#[test]
fn set_out_of_range_and_unknown_net_are_usage_errors() {
    let out = netc(&["check", "examples/lenet.net", "--set", "negfrac=1e309"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error[E0502]: --set negfrac=1e309: `1e309` is out of range"), "{stderr}");
    let out = netc(&["check", "examples/lenet.net", "--net", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no net named `nope` in this file; it defines `lenet`"), "{stderr}");
}
