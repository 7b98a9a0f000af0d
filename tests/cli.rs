//! The `netc` command end to end: output, exit status (0 ok, 1 mistakes in the file, 2 usage or
//! I/O errors), and that diagnostics reach stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;

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

/// The units of a summary line `LAYER: K of N units PART: 3, 17, 41-43`.
fn listed_units(line: &str) -> Vec<usize> {
    let list = line.rsplit(": ").next().unwrap();
    list.split(", ")
        .flat_map(|item| match item.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![item.parse().unwrap()],
        })
        .collect()
}

#[test]
fn summary_lists_the_fixed_units_the_compiled_net_uses() {
    let out = netc(&["summary", "examples/mixlu_lenet.net"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("fixed units (seed 0):"), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("  mixlu1: ")).unwrap();
    assert!(line.starts_with("  mixlu1: 20 of 500 units neglu: "), "{line}");
    let listed = listed_units(line);
    assert_eq!(listed.len(), 20);

    // The NegLU units of the compiled program's mask.
    let source = netc::Source::read(&root().join("examples/mixlu_lenet.net")).unwrap();
    let model = netc::model(&source, &[], None).unwrap();
    let program = netc::run::compile(&model, netc::ir::Mode::Eval, false).unwrap();
    let mask = program
        .insts()
        .iter()
        .find_map(|i| match &i.op {
            netc::ir::Op::Const(t) => Some(t.data().to_vec()),
            _ => None,
        })
        .unwrap();
    let neglu: Vec<usize> = (0..mask.len()).filter(|&u| mask[u] == 1.0).collect();
    assert_eq!(listed, neglu);
}

#[test]
fn summary_lists_the_inhibitory_units_of_each_population() {
    let out = netc(&["summary", "examples/dale.net"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    for (layer, count, units) in [("dale1", 4, 20), ("dale2", 10, 50), ("dale3", 100, 500)] {
        let prefix = format!("  {layer}: {count} of {units} units inhibitory: ");
        let line = stdout.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{prefix}\n{stdout}"));
        let listed = listed_units(line);
        assert_eq!(listed.len(), count, "{line}");
        assert!(listed.windows(2).all(|w| w[0] < w[1]) && listed.iter().all(|&u| u < units), "{line}");
    }
    // Another seed, other units.
    let reseeded = temp_file(
        "dale.net",
        std::fs::read_to_string(root().join("examples/dale.net"))
            .unwrap()
            .replace("data = mnist", "data = mnist\n    seed = 1")
            .as_bytes(),
    );
    let other = text(&netc(&["summary", reseeded.to_str().unwrap()]).stdout);
    assert!(other.contains("fixed units (seed 1):"), "{other}");
    let dale3 = |s: &str| s.lines().find(|l| l.starts_with("  dale3: ")).map(str::to_string);
    assert_ne!(dale3(&stdout), dale3(&other));
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

const TINY: &str =
    "net tiny {\n  input image: [1, 6, 6]\n  conv(4, k=3)\n  relu\n  dense(10)\n  loss softmax_xent(classes=10)\n}\n\
train { optimizer = sgd(lr=0.05) batch = 16 epochs = 2 init = normal(std=0.1) preprocess = mean_image }\n";

#[test]
fn train_writes_a_run_folder_that_eval_and_resume_accept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    support::synthetic_mnist(&data, 64, 32);
    let net = dir.path().join("tiny.net");
    std::fs::write(&net, TINY).unwrap();
    let out = dir.path().join("run");
    let (net, data, out_s) = (net.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());

    let run = netc(&["train", net, "--data", data, "--out", out_s, "--epochs", "1"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("epoch 1/1  train loss"), "{}", text(&run.stdout));
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(metrics.starts_with("epoch,train_loss,train_error,test_loss,test_error,seconds,images_per_sec\n1,"));
    let run_json = std::fs::read_to_string(out.join("run.json")).unwrap();
    assert!(run_json.contains("\"seed\": 0") && run_json.contains("netc_version"), "{run_json}");

    // A second run must not overwrite the first.
    let again = netc(&["train", net, "--data", data, "--out", out_s]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("already holds a run; continue it with --resume"));

    let resumed = netc(&["train", net, "--data", data, "--resume", out_s, "--epochs", "2"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    assert_eq!(std::fs::read_to_string(out.join("metrics.csv")).unwrap().lines().count(), 3);

    let weights = out.join("model.safetensors");
    let eval = netc(&["eval", net, "--data", data, "--weights", weights.to_str().unwrap()]);
    assert_eq!(eval.status.code(), Some(0), "{}", text(&eval.stderr));
    assert!(text(&eval.stdout).starts_with("test loss "), "{}", text(&eval.stdout));

    let interp = netc(&["eval", net, "--data", data, "--weights", weights.to_str().unwrap(), "--exec", "interp"]);
    assert_eq!(text(&interp.stdout), text(&eval.stdout), "the interpreter and the compiled executor disagree");
}

#[test]
fn missing_data_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["train", root().join("examples/lenet.net").to_str().unwrap(), "--data", "mnist"])
        .current_dir(dir.path())
        .env("NETC_DATA", dir.path().join("nowhere"))
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("nowhere") && stderr.contains("netc data fetch mnist"), "{stderr}");
}
