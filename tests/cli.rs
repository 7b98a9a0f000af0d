//! The `netc` command end to end: output, exit status (0 ok, 1 mistakes in the file, 2 usage or
//! I/O errors), and that diagnostics reach stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `netc` with `args`, run as an installed netc is: `cargo test` passes on the variables
/// `cargo run` sets, from which netc would take itself to be run by cargo.
fn netc(args: &[&str]) -> Output {
    installed(Command::new(env!("CARGO_BIN_EXE_netc")).args(args).current_dir(root())).output().unwrap()
}

fn installed(command: &mut Command) -> &mut Command {
    command.env_remove("CARGO").env_remove("CARGO_MANIFEST_DIR").env_remove("CARGO_PKG_NAME")
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
    let out = netc(&["summary", "examples/mixlu_lenet.net", "--set", "mask=fixed"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("fixed units (seed 0):"), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("  mixlu1: ")).unwrap();
    assert!(line.starts_with("  mixlu1: 20 of 500 units neglu: "), "{line}");
    let listed = listed_units(line);
    assert_eq!(listed.len(), 20);

    // The NegLU units of the compiled program's mask.
    let source = netc::Source::read(&root().join("examples/mixlu_lenet.net")).unwrap();
    let model = netc::model(&source, &[("mask".into(), "fixed".into())], None).unwrap();
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
    let (_dir, net, data, out) = tiny_setup(64, 32);
    let (net, data, out_s) = (net.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());

    let run = netc(&["train", net, "--data", data, "--out", out_s, "--epochs", "1"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("epoch 1/1  train loss"), "{}", text(&run.stdout));
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let header =
        "epoch,train_loss,train_error,test_loss,test_error,seconds,images_per_sec,clean_train_loss,clean_train_error";
    assert!(metrics.starts_with(&format!("{header}\n1,")), "{metrics}");
    let row: Vec<&str> = metrics.lines().nth(1).unwrap().split(',').collect();
    let clean_error: f64 = row[8].parse().unwrap();
    assert!((0.0..=1.0).contains(&clean_error), "{metrics}");
    let run_json = std::fs::read_to_string(out.join("run.json")).unwrap();
    assert!(run_json.contains("\"seed\": 0") && run_json.contains("netc_version"), "{run_json}");

    // A second run must not overwrite the first.
    let again = netc(&["train", net, "--data", data, "--out", out_s]);
    assert_eq!(again.status.code(), Some(2));
    let resume = format!("`netc train {net} --data {data} --resume {out_s}`");
    assert!(text(&again.stderr).contains(&format!("already holds a run\nhelp: continue it with {resume}")));

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

/// A folder holding `TINY` as `tiny.net` and synthetic MNIST of `train` and `test` images, and
/// the run folder to train into: (the folder, the net, the data, the run).
fn tiny_setup(train: usize, test: usize) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    support::synthetic_mnist(&data, train, test);
    let net = dir.path().join("tiny.net");
    std::fs::write(&net, TINY).unwrap();
    let out = dir.path().join("run");
    (dir, net, data, out)
}

/// `TINY` trained for one epoch on synthetic MNIST, in a folder of its own.
struct TinyRun {
    dir: tempfile::TempDir,
    net: PathBuf,
    data: PathBuf,
    weights: PathBuf,
}

fn tiny_run(train: usize, test: usize) -> TinyRun {
    let (dir, net, data, out) = tiny_setup(train, test);
    let (net_s, data_s, out_s) = (net.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let run = netc(&["train", net_s, "--data", data_s, "--out", out_s, "--epochs", "1"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    TinyRun { dir, net, data, weights: out.join("model.safetensors") }
}

#[test]
fn export_writes_an_onnx_model_of_the_trained_weights() {
    let run = tiny_run(32, 16);
    let onnx = run.dir.path().join("tiny.onnx");
    let (net, weights, onnx_s) = (run.net.to_str().unwrap(), run.weights.to_str().unwrap(), onnx.to_str().unwrap());

    let export = netc(&["export", net, "--weights", weights, "--format", "onnx", "-o", onnx_s]);
    assert_eq!(export.status.code(), Some(0), "{}", text(&export.stderr));
    let expected =
        format!("{onnx_s}: ONNX opset 17, input `image` [N, 1, 6, 6] of raw values, output `logits` [N, 10]\n");
    assert_eq!(text(&export.stdout), expected);
    let bytes = std::fs::read(&onnx).unwrap();
    // The mean image is in the model, as is every parameter.
    for name in ["preprocess.mean_image", "conv1.weight", "dense1.bias"] {
        assert!(bytes.windows(name.len()).any(|w| w == name.as_bytes()), "no {name} in the model");
    }

    // Weights of another net are refused, naming what differs.
    let other = netc(&["export", "examples/mlp.net", "--weights", weights, "-o", onnx_s]);
    assert_eq!(other.status.code(), Some(2), "{}", text(&other.stderr));
    assert!(text(&other.stderr).contains("`dense1.weight` has shape"), "{}", text(&other.stderr));
    let format = netc(&["export", net, "--weights", weights, "--format", "tflite", "-o", onnx_s]);
    assert_eq!(format.status.code(), Some(2));

    // The same parameters behind units that draw random masks in evaluation: no ONNX model can
    // say that, and the error names the layer (E0900).
    let sampled = run.dir.path().join("sampled.net");
    std::fs::write(&sampled, TINY.replace("relu", "mixlu(negfrac=0.5, eval=sample)")).unwrap();
    let refused = netc(&["export", sampled.to_str().unwrap(), "--weights", weights, "-o", onnx_s]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("error[E0900]: cannot export `mixlu1` to ONNX"), "{stderr}");
    assert!(stderr.contains("sampled.net:4:3"), "{stderr}");
}

const WIDE: &str = "net wide(width = 4) {\n  input image: [1, 6, 6]\n  conv(width, k=3)\n  relu\n  dense(10)\n  loss softmax_xent(classes=10)\n}\n\
train { optimizer = sgd(lr=0.05) batch = 16 epochs = 1 init = normal(std=0.1) preprocess = scale }\n";

#[test]
fn resume_with_other_settings_is_a_usage_error_naming_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    support::synthetic_mnist(&data, 64, 32);
    let net = dir.path().join("wide.net");
    std::fs::write(&net, WIDE).unwrap();
    let out = dir.path().join("run");
    let (net_s, data, out) = (net.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let first = netc(&["train", net_s, "--data", data, "--out", out, "--set", "width=3"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let resume = |extra: &[&str]| {
        let mut args = vec!["train", net_s, "--data", data, "--resume", out, "--epochs", "2"];
        args.extend_from_slice(extra);
        netc(&args)
    };
    for (extra, expected) in [
        (&["--set", "width=5"][..], "net parameter `width`: 3 in the folder, 5 now"),
        (&["--set", "width=3", "--seed", "4"][..], "seed: 0 in the folder, 4 now"),
        (&["--set", "width=3", "--batch", "8"][..], "batch size: 16 in the folder, 8 now"),
        (&["--set", "width=3", "--limit-train", "32"][..], "training images used: all in the folder, 32 now"),
    ] {
        let refused = resume(extra);
        assert_eq!(refused.status.code(), Some(2), "{extra:?}: {}", text(&refused.stderr));
        let stderr = text(&refused.stderr);
        assert!(stderr.contains("it records a different run") && stderr.contains(expected), "{extra:?}: {stderr}");
    }
    std::fs::write(&net, WIDE.replace("relu", "neglu")).unwrap();
    let edited = resume(&["--set", "width=3"]);
    assert_eq!(edited.status.code(), Some(2));
    assert!(text(&edited.stderr).contains("checked net (the .net file changed)"), "{}", text(&edited.stderr));
    std::fs::write(&net, WIDE.replace("relu", "relu   # reformatted, same net")).unwrap();
    let same = resume(&["--set", "width=3"]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stderr));
}

#[test]
fn a_second_train_into_a_busy_folder_is_refused_naming_the_first() {
    let (_dir, net, data, out) = tiny_setup(64, 32);
    let (net, data, out_s) = (net.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let mut first = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["train", net, "--data", data, "--out", out_s, "--epochs", "100000000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The first epoch's metrics mean the first run holds the lock and is training.
    while !out.join("metrics.csv").exists() {
        assert!(first.try_wait().unwrap().is_none(), "the first run ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = netc(&["train", net, "--data", data, "--out", out_s]);
    let resumed = netc(&["train", net, "--data", data, "--resume", out_s]);
    first.kill().unwrap();
    first.wait().unwrap();
    for refused in [second, resumed] {
        assert_eq!(refused.status.code(), Some(2));
        let stderr = text(&refused.stderr);
        assert!(stderr.contains(&format!("is in use: process {} is training into it", first.id())), "{stderr}");
    }
    // Killed, the first run left its lock file behind; the lock went with it.
    assert!(out.join("run.lock").exists());
    let after = netc(&["train", net, "--data", data, "--resume", out_s, "--epochs", "1"]);
    assert_eq!(after.status.code(), Some(0), "{}", text(&after.stderr));
}

#[test]
fn missing_data_says_where_it_looked_and_how_to_fetch_it_as_netc_was_run() {
    let dir = tempfile::tempdir().unwrap();
    let train = |cargo: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_netc"));
        command
            .args(["train", root().join("examples/lenet.net").to_str().unwrap(), "--data", "mnist"])
            .current_dir(dir.path())
            .env("NETC_DATA", dir.path().join("nowhere"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .env("HOME", dir.path());
        match cargo {
            // What `cargo run -p netc-cli` sets for the program it runs.
            true => command.env("CARGO", "cargo").env("CARGO_MANIFEST_DIR", env!("CARGO_MANIFEST_DIR")),
            false => installed(&mut command),
        };
        let out = command.output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        text(&out.stderr)
    };
    let stderr = train(false);
    assert!(stderr.contains("nowhere"), "{stderr}");
    assert!(stderr.contains("help: to get it, run `netc data fetch mnist`, or set NETC_DATA"), "{stderr}");
    let stderr = train(true);
    assert!(stderr.contains("help: to get it, run `cargo run -p netc-cli -- data fetch mnist`, or"), "{stderr}");
}

#[test]
fn the_fmt_hint_names_cargo_only_when_cargo_ran_this_netc_and_its_release_build_with_release() {
    let messy = temp_file("messy.net", b"net a {input x: [4]  dense(2)  loss softmax_xent(classes=2)}\n");
    let check_with = |netc: &Path, manifest_dir: &str| {
        let out = Command::new(netc)
            .args(["fmt", "--check", messy.to_str().unwrap()])
            .env("CARGO", "cargo")
            .env("CARGO_MANIFEST_DIR", manifest_dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        text(&out.stderr)
    };
    let check = |manifest_dir: &str| check_with(Path::new(env!("CARGO_BIN_EXE_netc")), manifest_dir);
    let by_cargo = check(env!("CARGO_MANIFEST_DIR"));
    assert!(by_cargo.starts_with("not formatted (run `cargo run -p netc-cli -- fmt` on them)"), "{by_cargo}");
    // An installed netc that another package's `cargo run` or `cargo test` starts.
    let other = check("/some/other/package");
    assert!(other.starts_with("not formatted (run `netc fmt` on them)"), "{other}");
    // cargo's release profile builds into target/release, and `cargo run` needs `--release` to
    // run that build.
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release/netc");
    std::fs::create_dir_all(release.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_netc"), &release).unwrap();
    let by_cargo = check_with(&release, env!("CARGO_MANIFEST_DIR"));
    assert!(by_cargo.starts_with("not formatted (run `cargo run --release -p netc-cli -- fmt` on them)"), "{by_cargo}");
}

const SWEPT: &str = "net tiny(boost = 1.0) {\n  input image: [1, 6, 6]\n  conv(4, k=3, lr_mult=boost)\n  relu\n  \
dense(10, lr_mult=boost)\n  loss softmax_xent(classes=10)\n}\n\
train { optimizer = sgd(lr=0.05) batch = 16 epochs = 2 init = normal(std=0.1) preprocess = mean_image }\n";

/// A tiny net whose `boost` multiplies its learning rate, synthetic data, and a sweep folder.
fn sweep_setup() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    support::synthetic_mnist(&data, 64, 32);
    let net = dir.path().join("tiny.net");
    std::fs::write(&net, SWEPT).unwrap();
    let (net, data) = (net.to_str().unwrap().to_string(), data.to_str().unwrap().to_string());
    (dir, net, data)
}

fn files_of(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn sweep_trains_every_combination_and_skips_finished_runs_when_rerun() {
    let (dir, net, data) = sweep_setup();
    let out = dir.path().join("sweep");
    let args =
        ["sweep", &net, "--data", &data, "--set", "boost=1:2:1", "--seeds", "0,1", "--out", out.to_str().unwrap()];
    let first = netc(&args);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    let stdout = text(&first.stdout);
    assert!(stdout.contains("[4/4] boost=2,seed=1: test error"), "{stdout}");
    let header = stdout.lines().find(|l| l.starts_with("boost")).unwrap();
    assert!(header.contains("test error %") && header.contains("train error %") && header.contains("diverged"));
    assert!(stdout.lines().any(|l| l.starts_with("1 ") && l.contains(" ± ") && l.ends_with("2     0")), "{stdout}");

    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "boost,seed,epochs,train_error,test_error,gap,best_epoch,best_test_error,diverged");
    assert_eq!(lines.len(), 5, "{csv}");
    for (line, prefix) in lines[1..].iter().zip(["1,0,2,", "1,1,2,", "2,0,2,", "2,1,2,"]) {
        assert!(line.starts_with(prefix) && line.ends_with(",no"), "{csv}");
    }
    let run = out.join("boost=1,seed=1");
    assert!(std::fs::read_to_string(run.join("run.json")).unwrap().contains("\"seed\": 1"));
    assert_eq!(std::fs::read_to_string(run.join("metrics.csv")).unwrap().lines().count(), 3);

    let before = files_of(&run);
    let again = netc(&args);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(text(&again.stdout).matches("finished before, skipped").count(), 4, "{}", text(&again.stdout));
    assert!(!text(&again.stdout).contains("epoch 1/2"));
    assert_eq!(files_of(&run), before, "a finished run was touched");
    assert_eq!(std::fs::read_to_string(out.join("sweep.csv")).unwrap(), csv);

    // Paired by seed against a baseline setting; a baseline no setting has is a usage error
    // before anything trains.
    let mut compared = args.to_vec();
    compared.extend(["--baseline", "boost=1"]);
    let compared = netc(&compared);
    assert_eq!(compared.status.code(), Some(0), "{}", text(&compared.stderr));
    let stdout = text(&compared.stdout);
    assert!(stdout.contains("against boost = 1, paired by seed"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("2 ") && l.contains("  2  ")), "{stdout}");
    let mut missing = args.to_vec();
    missing.extend(["--baseline", "boost=7"]);
    let missing = netc(&missing);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("--baseline boost=7"), "{}", text(&missing.stderr));
    assert!(!text(&missing.stdout).contains("finished before"), "nothing runs");
}

#[test]
fn sweep_shards_share_a_folder_and_merge_into_the_unsharded_table() {
    let (dir, net, data) = sweep_setup();
    let (shared, whole) = (dir.path().join("shared"), dir.path().join("whole"));
    let sweep = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "sweep",
            &net,
            "--data",
            &data,
            "--set",
            "boost=1:3:1",
            "--seeds",
            "0,1",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        args.iter().map(|a| a.to_string()).collect::<Vec<String>>()
    };
    // The two shards run at once into one folder, as a job array's tasks would.
    let shards: Vec<std::process::Child> = ["1/2", "2/2"]
        .iter()
        .map(|s| {
            std::process::Command::new(env!("CARGO_BIN_EXE_netc"))
                .args(sweep(&shared, &["--shard", s]))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for shard in shards {
        let output = shard.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert!(text(&output.stderr).contains(", shard "), "{}", text(&output.stderr));
        // Six runs in grid order; each shard trains every other one.
        assert_eq!(text(&output.stdout).matches(": test error").count(), 3, "{}", text(&output.stdout));
    }
    let args = sweep(&shared, &["--merge"]);
    let merged = netc(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(merged.status.code(), Some(0), "{}", text(&merged.stderr));
    assert!(!text(&merged.stdout).contains("epoch 1/2"), "--merge trains nothing");
    let args = sweep(&whole, &[]);
    let unsharded = netc(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(unsharded.status.code(), Some(0), "{}", text(&unsharded.stderr));
    let csv = |out: &Path| std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv(&shared).lines().count(), 7, "{}", csv(&shared));
    assert_eq!(csv(&shared), csv(&whole), "sharded runs are the unsharded runs, bit for bit");

    let bad = netc(&["sweep", &net, "--data", &data, "--set", "boost=1", "--shard", "3/2"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("--shard 3/2: out of range"), "{}", text(&bad.stderr));
}

#[test]
fn sweep_resumes_an_unfinished_run_to_the_same_result() {
    let (dir, net, data) = sweep_setup();
    let (cut, whole) = (dir.path().join("cut"), dir.path().join("whole"));
    let sweep = |out: &Path, epochs: &str| {
        netc(&["sweep", &net, "--data", &data, "--set", "boost=1", "--epochs", epochs, "--out", out.to_str().unwrap()])
    };
    assert_eq!(sweep(&cut, "1").status.code(), Some(0));
    let resumed = sweep(&cut, "2");
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    assert!(text(&resumed.stdout).contains("boost=1,seed=0: resuming after epoch 1 of 2"), "{}", text(&resumed.stdout));
    assert!(!text(&resumed.stdout).contains("epoch 1/2 "), "{}", text(&resumed.stdout));
    assert_eq!(sweep(&whole, "2").status.code(), Some(0));
    let weights = |out: &Path| std::fs::read(out.join("boost=1,seed=0/model.safetensors")).unwrap();
    assert_eq!(weights(&cut), weights(&whole), "a resumed run must end where an uninterrupted one does");
}

#[test]
fn a_diverging_setting_is_recorded_and_the_sweep_goes_on() {
    let (dir, net, data) = sweep_setup();
    let out = dir.path().join("sweep");
    let args = ["sweep", &net, "--data", &data, "--set", "boost=1e9,1", "--out", out.to_str().unwrap()];
    let run = netc(&args);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let stdout = text(&run.stdout);
    assert!(stdout.contains("[1/2] boost=1000000000,seed=0: diverged after"), "{stdout}");
    assert!(stdout.contains("[2/2] boost=1,seed=0: test error"), "{stdout}");
    let recorded = std::fs::read_to_string(out.join("boost=1000000000,seed=0/diverged.json")).unwrap();
    assert!(recorded.contains("E0800"), "{recorded}");
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().starts_with("1,0,2,") && csv.contains("\n1000000000,0,"), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with("1000000000,") && l.ends_with(",yes")), "{csv}");

    let again = netc(&args);
    assert!(text(&again.stdout).contains("boost=1000000000,seed=0: diverged before (recorded), skipped"));
}

#[test]
fn malformed_sweeps_are_usage_errors_naming_the_problem() {
    let (dir, net, data) = sweep_setup();
    let out = dir.path().join("sweep");
    for (set, expected) in [
        (vec!["boost=0:1:0"], "--set boost=0:1:0: the step of the range `0:1:0` must be greater than 0"),
        (vec!["boost=0:1"], "`0:1` is not a range; write START:END:STEP"),
        (vec!["boost=1:0:0.5"], "the range `1:0:0.5` is reversed"),
        (vec!["boost=a:b:1"], "`a` in the range `a:b:1` is not a number"),
        (vec!["boost=1", "--set", "boost=2"], "--set boost: the parameter is given twice"),
        (vec!["bost=1,2"], "did you mean `boost`?"),
    ] {
        let mut args = vec!["sweep", &net, "--data", &data, "--out", out.to_str().unwrap(), "--set"];
        args.extend(set);
        let run = netc(&args);
        assert_eq!(run.status.code(), Some(2), "{expected}: {}", text(&run.stderr));
        assert!(text(&run.stderr).contains(expected), "{}", text(&run.stderr));
    }
    let run = netc(&["sweep", &net, "--data", &data, "--seeds", "0,x", "--out", out.to_str().unwrap()]);
    assert_eq!(run.status.code(), Some(2));
    assert!(text(&run.stderr).contains("--seeds 0,x: `x` is not a whole number"), "{}", text(&run.stderr));
    assert!(!out.exists(), "nothing may be trained before the grid is valid");
}

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn plot_draws_runs_and_sweeps_as_png_and_svg() {
    let (dir, net, data) = sweep_setup();
    let out = dir.path().join("sweep");
    let sweep = netc(&[
        "sweep",
        &net,
        "--data",
        &data,
        "--set",
        "boost=0.5,1",
        "--seeds",
        "0,1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(sweep.status.code(), Some(0), "{}", text(&sweep.stderr));

    let run = out.join("boost=1,seed=0");
    let plot = netc(&["plot", run.to_str().unwrap()]);
    assert_eq!(plot.status.code(), Some(0), "{}", text(&plot.stderr));
    assert!(text(&plot.stdout).contains("errors.png"), "{}", text(&plot.stdout));
    let figures = dir.path().join("figures");
    let plot = netc(&["plot", out.to_str().unwrap(), "--out", figures.to_str().unwrap()]);
    assert_eq!(plot.status.code(), Some(0), "{}", text(&plot.stderr));

    for (png, svg) in
        [(run.join("errors.png"), run.join("errors.svg")), (figures.join("sweep.png"), figures.join("sweep.svg"))]
    {
        assert_eq!(png_size(&std::fs::read(&png).unwrap()), (900, 560));
        let svg = std::fs::read_to_string(&svg).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{svg}");
        assert!(svg.contains("test error") && svg.contains("training error"), "{svg}");
    }
    assert!(std::fs::read_to_string(figures.join("sweep.svg")).unwrap().contains("boost"));

    let nothing = netc(&["plot", dir.path().to_str().unwrap()]);
    assert_eq!(nothing.status.code(), Some(2));
    assert!(text(&nothing.stderr).contains("holds neither metrics.csv (a run) nor sweep.csv (a sweep)"));
}

#[test]
fn output_to_a_closed_pipe_stops_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(["ir", "examples/lenet.net", "--grad", "--fused"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before netc has written anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn ir_reads_back_what_it_printed() {
    for example in ["examples/lenet.net", "examples/dale.net", "examples/residual.net"] {
        for grad in [false, true] {
            let mut args = vec!["ir", example];
            if grad {
                args.push("--grad");
            }
            let printed = netc(&args);
            assert_eq!(printed.status.code(), Some(0), "{}", text(&printed.stderr));
            let file = temp_file(&format!("roundtrip-{grad}.nir"), &printed.stdout);
            let again = netc(&["ir", file.to_str().unwrap()]);
            assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
            assert_eq!(text(&again.stdout), text(&printed.stdout), "{example} --grad={grad}");
        }
    }
    // Fusion and planning run on the parsed program as on the net.
    let printed = netc(&["ir", "examples/lenet.net"]);
    let file = temp_file("lenet.nir", &printed.stdout);
    let from_text = netc(&["ir", file.to_str().unwrap(), "--grad", "--fused"]);
    assert_eq!(text(&from_text.stdout), text(&netc(&["ir", "examples/lenet.net", "--grad", "--fused"]).stdout));
}

#[test]
fn a_malformed_ir_program_is_located_and_exits_1() {
    let printed = text(&netc(&["ir", "examples/mlp.net"]).stdout);
    let broken = printed.replacen("= matmul", "= matmull", 1);
    let file = temp_file("broken.nir", broken.as_bytes());
    let out = netc(&["ir", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("`matmull` is not an op"), "{err}");
    let line = broken.lines().position(|l| l.contains("matmull")).unwrap() + 1;
    assert!(err.contains(&format!("broken.nir:{line}:")), "{err}");
    let usage = netc(&["ir", file.to_str().unwrap(), "--set", "a=1"]);
    assert_eq!(usage.status.code(), Some(2));
}

/// A CIFAR-10-format folder of `train` and `test` records: pixels from a fixed hash, labels
/// cycling through the classes.
fn synthetic_cifar(dir: &Path, train: usize, test: usize) {
    let records = |count: usize, salt: usize| -> Vec<(u8, Vec<u8>)> {
        (0..count)
            .map(|k| {
                let pixels = (0..3072).map(|i| ((k * 2654435761 + i * 40503 + salt) >> 7) as u8).collect();
                ((k % 10) as u8, pixels)
            })
            .collect()
    };
    let names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
    netc::data::write_cifar10(dir, &records(train, 0), &records(test, 99), &names).unwrap();
}

#[test]
fn lenet5_cifar_trains_and_evaluates_on_a_cifar_format_folder_found_by_name() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_cifar(&dir.path().join("cifar10"), 60, 20);
    let out = dir.path().join("run");
    let net = root().join("examples/lenet5_cifar.net");
    let (net, out_s) = (net.to_str().unwrap(), out.to_str().unwrap());
    let with_data = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_netc")).args(args).env("NETC_DATA", dir.path()).output().unwrap()
    };
    let run = with_data(&["train", net, "--out", out_s, "--epochs", "1", "--limit-train", "50", "--limit-test", "20"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains(&dir.path().join("cifar10").display().to_string()), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("epoch 1/1  train loss"), "{}", text(&run.stdout));
    let run_json = std::fs::read_to_string(out.join("run.json")).unwrap();
    assert!(run_json.contains("data_batch_5") && run_json.contains("batches.meta"), "{run_json}");

    let weights = out.join("model.safetensors");
    // The recipe's statistics travel with the weights: mean image, mean norm, whitening matrix.
    let (tensors, _) = netc::train::checkpoint::load(&weights).unwrap();
    let size = |name: &str| tensors.iter().find(|(n, _)| n == name).map(|(_, t)| t.len());
    assert_eq!(size("preprocess.mean_image"), Some(3072));
    assert_eq!(size("preprocess.mean_norm"), Some(1));
    assert_eq!(size("preprocess.whitening"), Some(3072 * 3072));
    let eval = with_data(&["eval", net, "--weights", weights.to_str().unwrap()]);
    assert_eq!(eval.status.code(), Some(0), "{}", text(&eval.stderr));
    assert!(text(&eval.stdout).contains("(20 images"), "{}", text(&eval.stdout));
    // Its export takes raw pixels: contrast normalisation and whitening are in the graph.
    let onnx = out.join("model.onnx");
    let export = with_data(&["export", net, "--weights", weights.to_str().unwrap(), "-o", onnx.to_str().unwrap()]);
    assert_eq!(export.status.code(), Some(0), "{}", text(&export.stderr));
    assert!(std::fs::metadata(&onnx).unwrap().len() > 3072 * 3072 * 4, "the whitening matrix is missing");

    // An MNIST-shaped net is refused against CIFAR-10's [3, 32, 32] examples, at its input.
    let mnist_net = root().join("examples/lenet.net");
    let refused = with_data(&["train", mnist_net.to_str().unwrap(), "--data", "cifar10", "--out", out_s]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("the data set's examples are [3, 32, 32]"), "{}", text(&refused.stderr));
}

#[test]
fn predict_classifies_test_digits_written_as_png_with_the_accuracy_eval_reports() {
    let run = tiny_run(64, 40);
    let (dir, data) = (&run.dir, &run.data);
    let (net, data_s, weights) = (run.net.to_str().unwrap(), data.to_str().unwrap(), run.weights.to_str().unwrap());
    let eval = netc(&["eval", net, "--data", data_s, "--weights", weights]);
    let eval_text = text(&eval.stdout);
    let error: f64 = eval_text.split("test error ").nth(1).unwrap().split('%').next().unwrap().parse().unwrap();

    // Every test digit as a PNG file of its own.
    let images = netc::data::read_idx(&data.join("t10k-images-idx3-ubyte"), netc::data::IdxKind::Images).unwrap();
    let labels = netc::data::read_idx(&data.join("t10k-labels-idx1-ubyte"), netc::data::IdxKind::Labels).unwrap();
    let mut pngs = Vec::new();
    for (i, pixels) in images.data.chunks_exact(36).enumerate() {
        let path = dir.path().join(format!("digit{i:02}.png"));
        image::GrayImage::from_raw(6, 6, pixels.to_vec()).unwrap().save(&path).unwrap();
        pngs.push(path.to_str().unwrap().to_string());
    }
    let mut args = vec!["predict", net, "--weights", weights, "--top", "1"];
    args.extend(pngs.iter().map(String::as_str));
    let predicted = netc(&args);
    assert_eq!(predicted.status.code(), Some(0), "{}", text(&predicted.stderr));
    let lines: Vec<String> = text(&predicted.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 40);
    let correct = lines
        .iter()
        .zip(&labels.data)
        .filter(|(line, &label)| line.split(": ").nth(1).unwrap().starts_with(&format!("{label} ")))
        .count();
    let accuracy = correct as f64 / 40.0;
    assert!((accuracy - (1.0 - error / 100.0)).abs() < 1e-9, "predict {accuracy}, eval {eval_text}");

    // The IDX file itself gives the same classes, and --json the probabilities.
    let json = netc(&[
        "predict",
        net,
        "--weights",
        weights,
        "--json",
        "--top",
        "2",
        &format!("{data_s}/t10k-images-idx3-ubyte"),
    ]);
    assert_eq!(json.status.code(), Some(0), "{}", text(&json.stderr));
    let json = text(&json.stdout);
    assert_eq!(json.matches("\"probability\"").count(), 80, "{json}");
    assert!(json.contains("t10k-images-idx3-ubyte[39]") && json.contains("\"name\": \""), "{json}");

    // An image of the wrong size is named.
    let wrong = dir.path().join("wrong.png");
    image::GrayImage::new(7, 6).save(&wrong).unwrap();
    let refused = netc(&["predict", net, "--weights", weights, wrong.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("wrong.png: the image is 7×6 pixels, but the net takes 6×6"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn eval_of_a_run_folder_uses_the_runs_set_values_data_and_weights_and_prints_the_confusion() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    support::synthetic_mnist(&data, 64, 40);
    let net = dir.path().join("wide.net");
    std::fs::write(&net, WIDE).unwrap();
    let out = dir.path().join("run");
    let (net, data_s, out_s) = (net.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let run = netc(&["train", net, "--data", data_s, "--out", out_s, "--set", "width=6"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let weights = out.join("model.safetensors");
    let by_file = netc(&["eval", net, "--data", data_s, "--weights", weights.to_str().unwrap(), "--set", "width=6"]);
    assert_eq!(by_file.status.code(), Some(0), "{}", text(&by_file.stderr));

    let by_folder = netc(&["eval", out_s, "--confusion"]);
    assert_eq!(by_folder.status.code(), Some(0), "{}", text(&by_folder.stderr));
    let shown = text(&by_folder.stdout);
    let mut lines = shown.lines();
    assert_eq!(lines.next(), text(&by_file.stdout).lines().next(), "{shown}");
    // A header, then one row per class: the counts, then the class's error.
    let rows: Vec<Vec<String>> = lines.skip(1).map(|l| l.split_whitespace().map(String::from).collect()).collect();
    assert_eq!(rows.len(), 10, "{shown}");
    let counts: Vec<Vec<usize>> = rows.iter().map(|r| r[1..11].iter().map(|c| c.parse().unwrap()).collect()).collect();
    let total: usize = counts.iter().flatten().sum();
    let wrong: usize = (0..10).map(|t| counts[t].iter().sum::<usize>() - counts[t][t]).sum();
    assert_eq!(total, 40);
    let error: f64 = shown.split("test error ").nth(1).unwrap().split('%').next().unwrap().parse().unwrap();
    assert!((wrong as f64 / 40.0 * 100.0 - error).abs() < 0.006, "{shown}");

    let refused = netc(&["eval", out_s, "--set", "width=4"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("--set does not apply to a run folder"));
}

#[test]
fn a_folder_of_float32_npy_arrays_trains_and_evaluates_from_the_train_blocks_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("arrays");
    std::fs::create_dir_all(&data).unwrap();
    for (split, count) in [("train", 48usize), ("test", 16)] {
        let labels: Vec<i64> = (0..count as i64).map(|i| i % 10).collect();
        let values: Vec<u8> = (0..count * 36)
            .flat_map(|i| ((i / 36) as f32 * 0.01 + (i % 36) as f32 * 0.1 - 1.5).to_le_bytes())
            .collect();
        netc::data::write_npy(&data.join(format!("{split}_images.npy")), "<f4", &[count, 1, 6, 6], &values).unwrap();
        let labels: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
        netc::data::write_npy(&data.join(format!("{split}_labels.npy")), "<i8", &[count], &labels).unwrap();
    }
    // The train block names the folder; its format is found from its files.
    let source = TINY.replace(
        "preprocess = mean_image }",
        &format!("preprocess = mean_image data = {:?} }}", data.display().to_string()),
    );
    let net = dir.path().join("tiny.net");
    std::fs::write(&net, source).unwrap();
    let out = dir.path().join("run");
    let (net, out_s) = (net.to_str().unwrap(), out.to_str().unwrap());
    let run = netc(&["train", net, "--out", out_s, "--epochs", "1"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let run_json = std::fs::read_to_string(out.join("run.json")).unwrap();
    assert!(run_json.contains("train_images.npy") && run_json.contains("test_labels.npy"), "{run_json}");
    let eval = netc(&["eval", out_s, "--data-format", "npy"]);
    assert_eq!(eval.status.code(), Some(0), "{}", text(&eval.stderr));
    assert!(text(&eval.stdout).contains("(16 images"), "{}", text(&eval.stdout));

    // A truncated array is named, with what was expected.
    let images = data.join("test_images.npy");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() - 10]).unwrap();
    let broken = netc(&["eval", out_s]);
    assert_eq!(broken.status.code(), Some(2));
    assert!(text(&broken.stderr).contains("test_images.npy: truncated"), "{}", text(&broken.stderr));
}

#[test]
fn an_image_folder_trains_and_predict_names_its_class_folders() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pictures");
    let classes = ["ant", "bee", "cow", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay"];
    for (split, per_class) in [("train", 4), ("test", 1)] {
        for (c, class) in classes.iter().enumerate() {
            std::fs::create_dir_all(data.join(split).join(class)).unwrap();
            for k in 0..per_class {
                let pixels: Vec<u8> = (0..36).map(|p| ((p * 7 + c * 25 + k * 3) % 256) as u8).collect();
                let image = image::GrayImage::from_raw(6, 6, pixels).unwrap();
                image.save(data.join(split).join(class).join(format!("{k}.png"))).unwrap();
            }
        }
    }
    let net = dir.path().join("tiny.net");
    std::fs::write(&net, TINY).unwrap();
    let out = dir.path().join("run");
    let (net, data_s, out_s) = (net.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let run = netc(&["train", net, "--data", data_s, "--out", out_s, "--epochs", "1"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let weights = out.join("model.safetensors");
    let picture = data.join("test/gnu/0.png");
    let predicted = netc(&[
        "predict",
        net,
        "--weights",
        weights.to_str().unwrap(),
        "--top",
        "10",
        "--json",
        picture.to_str().unwrap(),
    ]);
    assert_eq!(predicted.status.code(), Some(0), "{}", text(&predicted.stderr));
    let json = text(&predicted.stdout);
    for class in classes {
        assert!(json.contains(&format!("\"name\": \"{class}\"")), "{class}: {json}");
    }
}

#[test]
fn a_validation_split_is_reported_every_epoch_and_fixed_for_a_resume() {
    let (_dir, net, data, out) = tiny_setup(64, 16);
    let (net, data_s, out_s) = (net.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let run = netc(&["train", net, "--data", data_s, "--out", out_s, "--epochs", "1", "--val", "0.25"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("  val loss "), "{}", text(&run.stdout));
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(metrics.starts_with(&format!("{}\n1,", netc::train::METRICS_HEADER_WITH_VALIDATION)), "{metrics}");
    let row: Vec<&str> = metrics.lines().nth(1).unwrap().split(',').collect();
    let val_error: f64 = row[10].parse().unwrap();
    // 16 of the 64 images are held out: the error is a multiple of 1/16.
    assert_eq!((val_error * 16.0).fract(), 0.0, "{metrics}");
    assert!(std::fs::read_to_string(out.join("run.json")).unwrap().contains("\"validation\": 0.25"));

    let other = netc(&["train", net, "--data", data_s, "--resume", out_s, "--epochs", "2", "--val", "0.5"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(text(&other.stderr).contains("validation split: 0.25 in the folder, 0.5 now"), "{}", text(&other.stderr));
    let resumed = netc(&["train", net, "--data", data_s, "--resume", out_s, "--epochs", "2", "--val", "0.25"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    assert_eq!(std::fs::read_to_string(out.join("metrics.csv")).unwrap().lines().count(), 3);

    let refused = netc(&["train", net, "--data", data_s, "--out", out_s, "--val", "1"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("strictly between 0 and 1"), "{}", text(&refused.stderr));
}

#[test]
fn completions_and_the_manual_page_come_from_the_flag_definitions() {
    let out = netc(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    assert!(script.contains("_netc()") && script.contains("--message-format"), "{script}");
    for command in ["train", "sweep", "export"] {
        assert!(script.contains(&format!("netc__subcmd__{command}")), "{command} missing");
    }
    let out = netc(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.contains(".TH netc 1") && page.contains("train"), "{page}");
    assert_eq!(netc(&["completions", "tcsh"]).status.code(), Some(2));
}

#[test]
fn the_default_run_folder_is_numbered_and_force_replaces_a_run() {
    let dir = tempfile::tempdir().unwrap();
    support::synthetic_mnist(&dir.path().join("data"), 64, 32);
    std::fs::write(dir.path().join("tiny.net"), TINY).unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "tiny.net", "--data", "data"];
        args.extend(extra);
        Command::new(env!("CARGO_BIN_EXE_netc")).args(&args).current_dir(dir.path()).output().unwrap()
    };
    for folder in ["runs/tiny", "runs/tiny-2", "runs/tiny-3"] {
        let out = train(&[]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        assert!(text(&out.stderr).contains(&format!("→ {folder}")), "{}", text(&out.stderr));
    }
    // --force replaces the default folder's run rather than numbering a new one.
    let metrics = dir.path().join("runs/tiny/metrics.csv");
    let out = train(&["--force", "--epochs", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("→ runs/tiny"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&metrics).unwrap().lines().count(), 2, "header and one epoch");
    assert!(!dir.path().join("runs/tiny-4").exists());

    // With --out, a folder holding a run is refused without --force and replaced with it.
    let out = train(&["--out", "runs/tiny-2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("already holds a run"), "{}", text(&out.stderr));
    let out = train(&["--out", "runs/tiny-2", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // A file that is not the run's stays.
    std::fs::write(dir.path().join("runs/tiny-3/notes.txt"), "mine").unwrap();
    let out = train(&["--out", "runs/tiny-3", "--force"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(dir.path().join("runs/tiny-3/notes.txt")).unwrap(), "mine");
}

/// The events of a TensorBoard event file, read without netc: TFRecords (u64 length, masked
/// CRC-32C of the length, data, masked CRC-32C of the data) of `Event` protobufs.
mod tfevents {
    /// CRC-32C (Castagnoli, reflected polynomial 0x82f63b78), bit by bit, masked as TFRecord does.
    fn masked_crc32c(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
            }
        }
        let crc = !crc;
        crc.rotate_right(15).wrapping_add(0xa282_ead8)
    }

    /// One protobuf field: its number and its varint or bytes.
    enum Field<'a> {
        Varint(u64),
        /// A double: the only one in an event is its wall time.
        Fixed64,
        Fixed32([u8; 4]),
        Bytes(&'a [u8]),
    }

    fn varint(bytes: &[u8], at: &mut usize) -> u64 {
        let mut value = 0;
        for shift in (0..64).step_by(7) {
            let byte = bytes[*at];
            *at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        value
    }

    fn fields(bytes: &[u8]) -> Vec<(u64, Field<'_>)> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < bytes.len() {
            let key = varint(bytes, &mut at);
            let field = match key & 7 {
                0 => Field::Varint(varint(bytes, &mut at)),
                1 => Field::Fixed64,
                2 => {
                    let len = varint(bytes, &mut at) as usize;
                    Field::Bytes(&bytes[at..at + len])
                }
                5 => Field::Fixed32(bytes[at..at + 4].try_into().unwrap()),
                other => panic!("wire type {other}"),
            };
            at += match &field {
                Field::Fixed64 => 8,
                Field::Fixed32(_) => 4,
                Field::Bytes(b) => b.len(),
                Field::Varint(_) => 0,
            };
            out.push((key >> 3, field));
        }
        out
    }

    /// What one event holds: its step, and its file version or its scalars.
    #[derive(Debug, PartialEq)]
    pub struct Event {
        pub step: i64,
        pub file_version: Option<String>,
        pub scalars: Vec<(String, f32)>,
    }

    pub fn read(path: &std::path::Path) -> Vec<Event> {
        let bytes = std::fs::read(path).unwrap();
        let mut events = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let length = &bytes[at..at + 8];
            assert_eq!(masked_crc32c(length).to_le_bytes(), bytes[at + 8..at + 12], "length CRC at {at}");
            let len = u64::from_le_bytes(length.try_into().unwrap()) as usize;
            let data = &bytes[at + 12..at + 12 + len];
            assert_eq!(masked_crc32c(data).to_le_bytes(), bytes[at + 12 + len..at + 16 + len], "data CRC at {at}");
            at += 16 + len;
            let mut event = Event { step: 0, file_version: None, scalars: Vec::new() };
            for (number, field) in fields(data) {
                match (number, field) {
                    (1, Field::Fixed64) => {} // wall time
                    (2, Field::Varint(step)) => event.step = step as i64,
                    (3, Field::Bytes(version)) => {
                        event.file_version = Some(String::from_utf8(version.to_vec()).unwrap())
                    }
                    (5, Field::Bytes(summary)) => {
                        for (_, value) in fields(summary) {
                            let Field::Bytes(value) = value else { panic!("a summary holds values") };
                            let (mut tag, mut scalar) = (String::new(), None);
                            for (number, field) in fields(value) {
                                match (number, field) {
                                    (1, Field::Bytes(t)) => tag = String::from_utf8(t.to_vec()).unwrap(),
                                    (2, Field::Fixed32(v)) => scalar = Some(f32::from_le_bytes(v)),
                                    _ => panic!("a value of {tag} that is not a simple_value"),
                                }
                            }
                            event.scalars.push((tag, scalar.unwrap()));
                        }
                    }
                    (number, _) => panic!("unexpected field {number} in an event"),
                }
            }
            events.push(event);
        }
        events
    }

    /// Every scalar as (tag, step, value), the wall-clock ones (seconds, images/s) left out.
    pub fn scalars(events: &[Event]) -> Vec<(String, i64, f32)> {
        let timed = |tag: &str| tag == "epoch/seconds" || tag == "epoch/images_per_sec";
        let all = events.iter().flat_map(|e| e.scalars.iter().map(move |(tag, v)| (tag.clone(), e.step, *v)));
        all.filter(|(tag, ..)| !timed(tag)).collect()
    }
}

/// `metrics.csv` without its wall-clock columns (`seconds`, `images_per_sec`).
fn metrics_without_times(folder: &Path) -> Vec<Vec<String>> {
    let metrics = std::fs::read_to_string(folder.join("metrics.csv")).unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    let timed: Vec<usize> =
        header.iter().enumerate().filter(|(_, c)| ["seconds", "images_per_sec"].contains(c)).map(|(i, _)| i).collect();
    assert_eq!(timed.len(), 2, "{metrics}");
    metrics
        .lines()
        .map(|line| {
            line.split(',').enumerate().filter(|(i, _)| !timed.contains(i)).map(|(_, v)| v.to_string()).collect()
        })
        .collect()
}

#[test]
fn tensorboard_events_hold_every_epochs_metrics_and_the_loss_every_n_steps() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // 72 images in batches of 16: 5 steps an epoch, the last one short.
    support::synthetic_mnist(&data, 72, 16);
    let net = dir.path().join("tiny.net");
    std::fs::write(&net, TINY).unwrap();
    let out = dir.path().join("run");
    let (net, data_s, out_s) = (net.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let run = netc(&[
        "train",
        net,
        "--data",
        data_s,
        "--out",
        out_s,
        "--val",
        "0.25",
        "--tensorboard",
        "--tensorboard-every",
        "3",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));

    let events = tfevents::read(&out.join("events.out.tfevents.netc"));
    assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
    // 54 training images: 4 steps an epoch, 8 in all; every third step's loss.
    let losses: Vec<i64> =
        events.iter().filter(|e| e.scalars.iter().any(|(t, _)| t == "step/train_loss")).map(|e| e.step).collect();
    assert_eq!(losses, [3, 6]);
    // Each epoch's scalars are its row of metrics.csv, column by column.
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let header: Vec<&str> = metrics.lines().next().unwrap().split(',').collect();
    let rows: Vec<&str> = metrics.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{metrics}");
    for row in rows {
        let values: Vec<f64> = row.split(',').map(|v| v.parse().unwrap()).collect();
        let epoch = values[0] as i64;
        let event =
            events.iter().find(|e| e.step == epoch && e.scalars.iter().any(|(t, _)| t.starts_with("epoch/"))).unwrap();
        let tags: Vec<&str> = event.scalars.iter().map(|(tag, _)| tag.as_str()).collect();
        let columns: Vec<String> = header[1..].iter().map(|column| format!("epoch/{column}")).collect();
        assert_eq!(tags, columns, "epoch {epoch}");
        for ((tag, written), csv) in event.scalars.iter().zip(&values[1..]) {
            // metrics.csv rounds seconds to 3 decimals and images/s to 1; the event holds the
            // unrounded value as an f32.
            let half_unit = match tag.as_str() {
                "epoch/seconds" => 0.0005,
                "epoch/images_per_sec" => 0.05,
                _ => 0.0,
            };
            let f32_step = csv.abs() * f64::from(f32::EPSILON);
            assert!(
                (f64::from(*written) - csv).abs() <= half_unit + f32_step,
                "epoch {epoch} {tag}: {written} vs {csv}"
            );
            if half_unit == 0.0 {
                assert_eq!(*written, *csv as f32, "epoch {epoch} {tag}");
            }
        }
    }

    let alone = netc(&["train", net, "--data", data_s, "--out", out_s, "--force", "--tensorboard-every", "3"]);
    assert_eq!(alone.status.code(), Some(2));
    assert!(text(&alone.stderr).contains("--tensorboard"), "{}", text(&alone.stderr));
    let zero =
        netc(&["train", net, "--data", data_s, "--out", out_s, "--force", "--tensorboard", "--tensorboard-every", "0"]);
    assert_eq!(zero.status.code(), Some(2));
}

/// Runs `netc args` until it pauses after `step` (`NETC_PAUSE_AFTER_STEP`), sends it SIGINT
/// and returns its exit status and its stderr after the pause.
#[cfg(unix)]
fn interrupted_after_step<S: AsRef<std::ffi::OsStr>>(args: &[S], step: u64) -> (Option<i32>, String) {
    use std::io::{BufRead, Read};
    let mut child = installed(Command::new(env!("CARGO_BIN_EXE_netc")).args(args))
        .env("NETC_PAUSE_AFTER_STEP", step.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains(&format!("paused after step {step}")) {
        assert!(stderr.read_line(&mut seen).unwrap() > 0, "netc ended before pausing: {seen}");
    }
    // SAFETY: kill sends a signal to the child this test started and has not waited for.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    (child.wait().unwrap().code(), rest)
}

#[cfg(unix)]
#[test]
fn ctrl_c_checkpoints_mid_epoch_and_the_resumed_run_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // 64 images in batches of 16: 4 steps an epoch, 2 epochs.
    support::synthetic_mnist(&data, 64, 32);
    let net = dir.path().join("tiny.net");
    std::fs::write(&net, TINY).unwrap();
    let (whole, stopped) = (dir.path().join("whole"), dir.path().join("stopped"));
    let (net, data_s) = (net.to_str().unwrap(), data.to_str().unwrap());
    let args = |out: &Path| {
        let args = [
            "train",
            net,
            "--data",
            data_s,
            "--out",
            out.to_str().unwrap(),
            "--tensorboard",
            "--tensorboard-every",
            "1",
        ];
        args.map(String::from)
    };
    let run = netc(&args(&whole).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));

    // Interrupted after the second step of the second epoch.
    let (status, rest) = interrupted_after_step(&args(&stopped), 6);
    assert_eq!(status, Some(130), "{rest}");
    assert!(rest.contains("training interrupted in epoch 2, after batch 2 of 4"), "{rest}");
    let stopped_s = stopped.to_str().unwrap();
    let resume = format!("netc train {net} --data {data_s} --tensorboard --tensorboard-every 1 --resume {stopped_s}");
    assert!(rest.contains(&format!("help: continue the run with `{resume}`")), "{rest}");
    // The finished epoch's files, and a checkpoint two steps further.
    assert_eq!(metrics_without_times(&stopped).len(), 2, "header and epoch 1");

    let words: Vec<&str> = resume.split(' ').skip(1).collect();
    let resumed = netc(&words);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    assert!(text(&resumed.stdout).starts_with("epoch 2/2"), "{}", text(&resumed.stdout));
    for file in ["model.safetensors", "checkpoint.safetensors"] {
        assert!(
            std::fs::read(whole.join(file)).unwrap() == std::fs::read(stopped.join(file)).unwrap(),
            "{file} differs"
        );
    }
    assert_eq!(metrics_without_times(&stopped), metrics_without_times(&whole));
    let events = |folder: &Path| tfevents::scalars(&tfevents::read(&folder.join("events.out.tfevents.netc")));
    let (whole_events, stopped_events) = (events(&whole), events(&stopped));
    assert_eq!(whole_events.iter().filter(|(tag, ..)| tag == "step/train_loss").count(), 8);
    assert_eq!(stopped_events, whole_events, "the same scalars, each step once");
}

#[cfg(unix)]
#[test]
fn a_resume_for_fewer_epochs_than_its_checkpoint_started_is_refused() {
    let (_dir, net, data, out) = tiny_setup(64, 32);
    let (net, data_s, out_s) = (net.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let (status, rest) = interrupted_after_step(&["train", net, "--data", data_s, "--out", out_s], 6);
    assert_eq!(status, Some(130), "{rest}");
    let fewer = netc(&["train", net, "--data", data_s, "--resume", out_s, "--epochs", "1"]);
    assert_eq!(fewer.status.code(), Some(2));
    let stderr = text(&fewer.stderr);
    assert!(
        stderr.contains("its checkpoint is part-way through epoch 2") && stderr.contains("--epochs 2 or more"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_in_an_epochs_last_step_stops_once_the_epochs_files_are_written() {
    let (_dir, net, data, out) = tiny_setup(64, 32);
    let (net, data_s, out_s) = (net.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    // Step 4 is the first epoch's last: the epoch is evaluated and saved, then netc stops.
    let (status, rest) = interrupted_after_step(&["train", net, "--data", data_s, "--out", out_s], 4);
    assert_eq!(status, Some(130), "{rest}");
    assert!(rest.contains("training interrupted after epoch 1\n"), "{rest}");
    assert_eq!(metrics_without_times(&out).len(), 2, "header and epoch 1");
    let resumed = netc(&["train", net, "--data", data_s, "--resume", out_s]);
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed.stderr));
    assert_eq!(metrics_without_times(&out).len(), 3);
}
