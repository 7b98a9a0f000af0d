//! `mpiexec -n K netc train|sweep` on this machine (a build with `--features mpi`, an MPI
//! launcher on the PATH): data-parallel runs bitwise equal to one process for K = 2 and 3, a
//! resume with another K, a sweep sharded over the processes, and a process that hangs or fails
//! ending the job with a clear error instead of leaving the others waiting.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod support;

/// A tiny net with dropout, so each chunk's randomness is part of what must agree, and a learning
/// rate `boost` to sweep.
const NET: &str = "net tiny(boost = 1.0) {\n  input image: [1, 6, 6]\n  conv(4, k=3, lr_mult=boost)\n  relu\n  \
dropout(0.25)\n  dense(10, lr_mult=boost)\n  loss softmax_xent(classes=10)\n}\n\
train { optimizer = sgd(lr=0.01) batch = 16 epochs = 2 init = normal(std=0.1) preprocess = mean_image }\n";

struct Setup {
    dir: tempfile::TempDir,
    net: String,
    data: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    support::synthetic_mnist(&data, 64, 32);
    let net = dir.path().join("tiny.net");
    std::fs::write(&net, NET).unwrap();
    let (net, data) = (net.to_str().unwrap().to_string(), data.to_str().unwrap().to_string());
    Setup { dir, net, data }
}

impl Setup {
    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn netc() -> &'static str {
    env!("CARGO_BIN_EXE_netc")
}

/// `netc args` alone (`processes` = 1) or as `processes` processes under mpiexec.
fn run(processes: usize, args: &[&str]) -> Output {
    let mut command = match processes {
        1 => Command::new(netc()),
        k => {
            let mut command = Command::new("mpiexec");
            command.args(["-n", &k.to_string(), netc()]);
            command
        }
    };
    command.args(args).output().expect("mpiexec (MPICH or Open MPI) is on the PATH")
}

/// The job's stderr up to the first line containing `text`, and the rest of it to read.
fn read_until(job: &mut std::process::Child, text: &str) -> (std::io::BufReader<std::process::ChildStderr>, String) {
    let mut stderr = std::io::BufReader::new(job.stderr.take().expect("stderr piped"));
    let mut seen = String::new();
    while !seen.contains(text) {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            panic!("the job ended before printing `{text}`: {seen}");
        }
        seen.push_str(&line);
    }
    (stderr, seen)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn succeeded(output: &Output) {
    assert_eq!(output.status.code(), Some(0), "{}{}", text(&output.stdout), text(&output.stderr));
}

/// A run's weights and its metrics without the timing columns.
fn result(out: &Path) -> (Vec<u8>, Vec<String>) {
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let untimed = metrics.lines().map(|line| line.split(',').take(5).collect::<Vec<_>>().join(",")).collect();
    (std::fs::read(out.join("model.safetensors")).unwrap(), untimed)
}

fn train_args<'a>(s: &'a Setup, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["train", &s.net, "--data", &s.data, "--grad-chunks", "4", "--out", out];
    args.extend_from_slice(extra);
    args
}

/// Resumes the run in `cut` with `k` processes and checks it ends as the uninterrupted `whole`.
fn resumes_to_the_same_bits(s: &Setup, k: usize, cut: &Path, whole: &Path) {
    let resume = ["train", &s.net, "--data", &s.data, "--grad-chunks", "4", "--resume", cut.to_str().unwrap()];
    succeeded(&run(k, &resume));
    assert!(result(cut) == result(whole), "the resumed run differs from the uninterrupted one");
}

#[test]
fn two_and_three_processes_train_the_bits_of_one_with_the_same_chunks() {
    let s = setup();
    let one = s.out("k1");
    succeeded(&run(1, &train_args(&s, one.to_str().unwrap(), &[])));
    let reference = result(&one);
    assert_eq!(reference.1.len(), 3, "{:?}", reference.1);
    for k in [2, 3] {
        let out = s.out(&format!("k{k}"));
        let output = run(k, &train_args(&s, out.to_str().unwrap(), &[]));
        succeeded(&output);
        // Only the first process prints, and only it writes the folder.
        assert_eq!(text(&output.stdout).matches("epoch 2/2").count(), 1, "{}", text(&output.stdout));
        assert!(text(&output.stderr).contains(&format!("{k} processes)")), "{}", text(&output.stderr));
        assert!(result(&out) == reference, "{k} processes trained other bits than one");
    }
    let record = std::fs::read_to_string(one.join("run.json")).unwrap();
    assert!(record.contains("\"grad_chunks\": 4"), "{record}");
}

#[test]
fn a_run_started_by_two_processes_resumes_with_three() {
    let s = setup();
    let (whole, cut) = (s.out("whole"), s.out("cut"));
    succeeded(&run(1, &train_args(&s, whole.to_str().unwrap(), &[])));
    succeeded(&run(2, &train_args(&s, cut.to_str().unwrap(), &["--epochs", "1"])));
    resumes_to_the_same_bits(&s, 3, &cut, &whole);
}

#[test]
fn ctrl_c_stops_every_process_at_one_step_and_the_run_resumes_to_the_same_bits() {
    let s = setup();
    let (whole, cut) = (s.out("whole"), s.out("cut"));
    succeeded(&run(1, &train_args(&s, whole.to_str().unwrap(), &[])));
    // Every process pauses after step 3 until it gets SIGINT, which mpiexec forwards to them.
    let mut job = Command::new("mpiexec")
        .args(["-genv", "NETC_PAUSE_AFTER_STEP", "3", "-n", "2", netc()])
        .args(train_args(&s, cut.to_str().unwrap(), &[]))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut stderr, mut seen) = read_until(&mut job, "paused after step 3");
    assert!(Command::new("kill").args(["-INT", &job.id().to_string()]).status().unwrap().success());
    std::io::Read::read_to_string(&mut stderr, &mut seen).unwrap();
    // Every process ends with 130; MPICH's launcher, which took the SIGINT itself, reports 130
    // or, when it saw them all end after forwarding it, 0.
    let code = job.wait().unwrap().code();
    assert!(matches!(code, Some(130) | Some(0)), "{code:?} {seen}");
    // The first process wrote the checkpoint before the job ended, and alone says so.
    assert_eq!(seen.matches("training interrupted").count(), 1, "{seen}");
    assert!(cut.join("checkpoint.safetensors").is_file(), "{seen}");
    resumes_to_the_same_bits(&s, 3, &cut, &whole);
}

#[test]
fn several_processes_without_gradient_chunks_are_refused() {
    let s = setup();
    let out = s.out("run");
    let output = run(2, &["train", &s.net, "--data", &s.data, "--out", out.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("2 processes share this run: pass --grad-chunks N"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_process_that_fails_ends_the_job_with_its_error() {
    let s = setup();
    let out = s.out("run");
    succeeded(&run(1, &train_args(&s, out.to_str().unwrap(), &["--epochs", "1"])));
    // The first process refuses the occupied folder; the others must not wait for it forever.
    let output = run(2, &train_args(&s, out.to_str().unwrap(), &[]));
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("already holds a run"), "{}", text(&output.stderr));
}

#[test]
fn a_process_that_hangs_stops_the_others_after_the_time_out() {
    let s = setup();
    let out = s.out("run");
    let out = out.to_str().unwrap();
    // Two programs of one job (MPMD): the first pauses after step 3 as if it hung.
    let args = train_args(&s, out, &["--mpi-timeout", "2"]);
    let output = Command::new("mpiexec")
        .args(["-n", "1", "-env", "NETC_PAUSE_AFTER_STEP", "3", netc()])
        .args(&args)
        .args([":", "-n", "1", netc()])
        .args(&args)
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("paused after step 3"), "{stderr}");
    assert!(stderr.contains("process 1 of 2: the other processes did not answer within 2 s"), "{stderr}");
}

#[test]
fn a_sweep_under_mpiexec_shares_its_runs_and_the_first_process_merges_them() {
    let s = setup();
    let sweep = |out: &Path| {
        vec![
            "sweep".to_string(),
            s.net.clone(),
            "--data".into(),
            s.data.clone(),
            "--set".into(),
            "boost=1:2:1".into(),
            "--seeds".into(),
            "0:2:1".into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]
    };
    let run_sweep = |k: usize, out: &Path| {
        let args = sweep(out);
        let output = run(k, &args.iter().map(String::as_str).collect::<Vec<_>>());
        succeeded(&output);
        text(&output.stdout)
    };
    let alone = s.out("alone");
    run_sweep(1, &alone);
    let csv = |out: &Path| std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv(&alone).lines().count(), 7, "{}", csv(&alone));
    for k in [2, 3] {
        let out = s.out(&format!("k{k}"));
        let stdout = run_sweep(k, &out);
        // Six runs, each trained once; one table, printed by the first process.
        assert_eq!(stdout.matches(": test error").count(), 6, "{stdout}");
        assert_eq!(stdout.matches("runs in ").count(), 1, "{stdout}");
        assert_eq!(csv(&out), csv(&alone), "{k} processes' sweep differs from one process's");
        // A rerun with another number of processes trains nothing.
        let again = run_sweep(5 - k, &out);
        assert_eq!(again.matches("finished before, skipped").count(), 6, "{again}");
        assert_eq!(csv(&out), csv(&alone));
    }
}

#[test]
fn a_process_that_dies_ends_the_job() {
    let s = setup();
    let out = s.out("run");
    let out = out.to_str().unwrap();
    // The second program, paused after step 3 (waiting in a state that would otherwise hang the
    // first), runs under a name of its own so the test can find and kill it.
    let name = format!("netc-mpi-test-victim-{}", std::process::id());
    let args = train_args(&s, out, &["--mpi-timeout", "600"]);
    let victim = format!("exec -a {name} {} {}", netc(), args.join(" "));
    let mut job = Command::new("mpiexec")
        .args(["-n", "1", netc()])
        .args(&args)
        .args([":", "-n", "1", "-env", "NETC_PAUSE_AFTER_STEP", "3", "bash", "-c", &victim])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once it has paused, while the first waits for it in an exchange.
    let (mut stderr, mut seen) = read_until(&mut job, "paused after step 3");
    let killed = Command::new("pkill").args(["-KILL", "-f", &format!("^{name}")]).status().unwrap();
    assert!(killed.success(), "no process named {name}");
    std::io::Read::read_to_string(&mut stderr, &mut seen).unwrap();
    let output = job.wait().unwrap();
    let stderr = seen;
    assert!(!output.success(), "{stderr}");
    assert!(!stderr.contains("did not answer"), "the launcher, not the time-out, ends the job: {stderr}");
}
