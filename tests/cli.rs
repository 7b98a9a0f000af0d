//! The `netc` command end to end: output, exit status (0 ok, 1 mistakes in the file, 2 usage or
//! I/O errors), and that diagnostics reach stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn netc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netc")).args(args).current_dir(root()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("netc-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn check_accepts_an_example() {
    let out = netc(&["check", "examples/mixlu_lenet.net"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("ok (1 net: lenet)"));
}

#[test]
fn set_overrides_a_parameter_and_is_checked() {
    let out = netc(&["summary", "examples/mixlu_lenet.net", "--set", "negfrac=0.07"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("mixlu(negfrac=0.07"));

    let out = netc(&["check", "examples/mixlu_lenet.net", "--set", "negfrac=1.5"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`negfrac` must be a number between 0 and 1, found negfrac (= 1.5)"));

    let out = netc(&["check", "examples/mixlu_lenet.net", "--set", "negfrc=0.1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("did you mean `negfrac`?"));

    let out = netc(&["check", "examples/mixlu_lenet.net", "--set", "negfrac"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn summary_prints_shapes_parameters_and_totals() {
    let out = netc(&["summary", "examples/lenet.net"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let conv3: Vec<&str> = table.lines().find(|l| l.starts_with("conv3")).unwrap().split_whitespace().collect();
    assert_eq!(conv3, ["conv3", "conv(500,", "k=4)", "[500,", "1,", "1]", "400,500", "400,000"]);
    assert!(table.contains("total: 431,080 parameters, 2,293,000 MACs per example"), "{table}");
}

#[test]
fn mistakes_in_the_file_exit_1_with_located_diagnostics() {
    let path = temp_file("bad.net", b"net a {\n  input x: [4]\n  dense(3)\n  loss softmax_xent(classes=10)\n}\n");
    let out = netc(&["check", path.to_str().unwrap(), "--color", "never"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("error[E0301]: the loss expects 10 class scores, but receives [3]"), "{stderr}");
    assert!(stderr.contains("bad.net:4:"), "{stderr}");
}

#[test]
fn io_and_usage_errors_exit_2() {
    let out = netc(&["check", "no/such/file.net"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read no/such/file.net"));

    let path = temp_file("binary.net", &[0x6e, 0x65, 0x74, 0xff, 0xfe]);
    let out = netc(&["check", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not UTF-8"));

    let two = temp_file("two.net", b"net a { input x: [4] dense(2) loss softmax_xent(classes=2) }\nnet b { input x: [4] dense(2) loss softmax_xent(classes=2) }\n");
    let out = netc(&["summary", two.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("choose one with --net NAME"));
    let out = netc(&["summary", two.to_str().unwrap(), "--net", "b"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).starts_with("net b"));

    let out = netc(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
}
