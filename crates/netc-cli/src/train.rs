//! `netc train`: flags over the train block, the run folder, progress and per-epoch lines, and
//! Ctrl-C: the first stops after the current step with a checkpoint, a second at once.

use crate::processes::Processes;
use crate::{Failure, TrainArgs};
use indicatif::{ProgressBar, ProgressStyle};
use netc::train::parallel::DataParallel;
use netc::train::{Controls, Event, LockError, RunFolder, RunOptions};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

/// How often `--tensorboard` writes the training loss when `--tensorboard-every` is not given.
const TENSORBOARD_EVERY: u64 = 50;

/// For tests: after this optimizer step (counted from 1 over the whole run), print
/// `paused after step N` on stderr and wait for Ctrl-C, so a test interrupts a run at a known
/// point rather than racing it.
const PAUSE_AFTER_STEP: &str = "NETC_PAUSE_AFTER_STEP";

/// Set by the first SIGINT.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn run(args: TrainArgs) -> Result<(), Failure> {
    #[cfg(feature = "mpi")]
    let timeout = std::time::Duration::from_secs_f64(args.mpi_timeout);
    #[cfg(not(feature = "mpi"))]
    let timeout = std::time::Duration::MAX;
    let processes = Processes::join(timeout)?;
    let result = train(args, &processes);
    processes.end(result)
}

fn train(args: TrainArgs, processes: &Processes) -> Result<(), Failure> {
    let group = processes.group();
    let parallel = match (args.grad_chunks, group.size()) {
        (None, 1) => None,
        (None, k) => {
            return Err(Failure::usage(format!(
                "{k} processes share this run: pass --grad-chunks N with {k} ≤ N ≤ the batch size; the same N trains \
                 the same bits with any number of processes, `netc train --grad-chunks N` alone included"
            )))
        }
        (Some(chunks), _) => Some(DataParallel { group, chunks: usize::try_from(chunks).unwrap_or(usize::MAX) }),
    };
    let leads = processes.leads();
    let mut model = args.file.model()?;
    args.recipe.overrides(args.seed.as_deref())?.apply(&mut model.checked.train);
    args.data.check_memory(&model, true)?;
    let (out, resume) = match (&args.resume, &args.out) {
        (Some(dir), _) => (dir.clone(), true),
        (None, Some(dir)) => (dir.clone(), false),
        (None, None) => (default_out(&args.file.file, args.force)?, false),
    };
    let folder = RunFolder::new(&out);
    // Only the first process touches the folder (netc_train::train).
    if args.force && leads {
        folder.clear().map_err(|e| match e {
            LockError::Held { pid, .. } => netc::Error::Locked { folder: folder.clone(), pid },
            LockError::Io(message) => netc::Error::Io(message),
        })?;
    }
    let data = args.data.load(&model)?;
    let mut backend = args.data.backend(&model, true)?;
    let options = RunOptions {
        out: folder,
        resume,
        limit_train: args.recipe.limit_train,
        limit_test: args.recipe.limit_test,
        validation: args.val,
        provenance: data.provenance(&args.file.file, &args.file.set),
    };

    let config = model.train().clone();
    let processes_note = match group.size() {
        1 => String::new(),
        k => format!(", {k} processes"),
    };
    if leads {
        eprintln!(
            "training `{}` on {} for {} epochs (batch {}, seed {}{processes_note}) → {}",
            model.net().name,
            data.folder.display(),
            config.epochs,
            config.batch,
            config.seed,
            out.display()
        );
    }
    let bar = (leads && std::io::stderr().is_terminal()).then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:20}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar
    });
    let epochs = config.epochs;
    let started = std::time::Instant::now();
    // The step this process started at (later than the first on resume), for the ETA.
    let mut first_step = None;
    let pause_after: Option<u64> = std::env::var(PAUSE_AFTER_STEP).ok().and_then(|n| n.parse().ok());
    let mut on_event = |event: Event| match event {
        Event::Step { epoch, batch, batches, loss, images_per_sec } => {
            let step = (epoch.saturating_sub(1) as u64) * batches as u64 + batch as u64;
            if pause_after == Some(step) {
                eprintln!("paused after step {step} ({PAUSE_AFTER_STEP})");
                while !INTERRUPTED.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            if let Some(bar) = &bar {
                let first = *first_step.get_or_insert(step);
                let elapsed = started.elapsed().as_secs_f64();
                let eta = (step > first).then(|| {
                    let left = (epochs as u64 * batches as u64).saturating_sub(step);
                    elapsed / (step - first) as f64 * left as f64
                });
                bar.set_length(batches as u64);
                bar.set_prefix(format!("{epoch}/{epochs}"));
                bar.set_position(batch as u64);
                bar.set_message(format!(
                    "loss {loss:.4}  {images_per_sec:.0} img/s  {} ETA {}",
                    clock(elapsed),
                    eta.map_or("–".to_string(), clock)
                ));
            }
        }
        Event::Epoch(m) if leads => {
            let line = epoch_line(m, epochs);
            match &bar {
                Some(bar) => bar.println(line),
                None => println!("{line}"),
            }
        }
        Event::Epoch(_) => {}
    };
    let controls = Controls {
        stop: Some(&INTERRUPTED),
        tensorboard_every: args.tensorboard.then_some(args.tensorboard_every.unwrap_or(TENSORBOARD_EVERY)),
        parallel,
    };
    stop_on_interrupt();
    let result = netc::run::train_with(&model, &data, backend.as_mut(), &options, controls, &mut on_event);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    result?;
    if leads {
        eprintln!("run saved in {}", out.display());
    }
    Ok(())
}

/// The command line's arguments (after the program) without the run-folder flags, to which a
/// resume command adds `--resume DIR`.
pub fn arguments_without_folder(args: impl Iterator<Item = OsString>) -> Vec<String> {
    let mut kept = Vec::new();
    let mut args = args.map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--force" => {}
            "--out" | "--resume" => {
                args.next();
            }
            _ if arg.starts_with("--out=") || arg.starts_with("--resume=") => {}
            _ => kept.push(arg),
        }
    }
    kept
}

/// The first SIGINT sets [`INTERRUPTED`]: training finishes its step, writes a checkpoint and
/// ends with status 130. A second one ends the process at once (the checkpoint is written
/// atomically, so the previous one survives a write cut short).
#[cfg(unix)]
fn stop_on_interrupt() {
    extern "C" fn on_interrupt(_: libc::c_int) {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            // SAFETY: _exit is async-signal-safe.
            unsafe { libc::_exit(130) };
        }
    }
    // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe; the
    // sigaction structure is zeroed, then given the handler and an empty mask.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // A write or fsync that the signal cuts into (an epoch's files being saved) carries on
        // rather than failing with EINTR.
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}

/// Elsewhere Ctrl-C ends the process as the system does; the last epoch's checkpoint stays.
#[cfg(not(unix))]
fn stop_on_interrupt() {}

/// The line printed after each epoch.
pub fn epoch_line(m: &netc::train::EpochMetrics, epochs: usize) -> String {
    let clean = m.clean.map_or(String::new(), |c| format!(" (clean {:.2}%)", c.error * 100.0));
    let validation =
        m.validation.map_or(String::new(), |v| format!("  val loss {:.4}  val error {:.2}%", v.loss, v.error * 100.0));
    format!(
        "epoch {}/{epochs}  train loss {:.4}  train error {:.2}%{clean}{validation}  test loss {:.4}  test error {:.2}%  {:.1} s  {:.0} img/s",
        m.epoch,
        m.train_loss,
        m.train_error * 100.0,
        m.test_loss,
        m.test_error * 100.0,
        m.seconds,
        m.images_per_sec
    )
}

/// `runs/<file name>`, or with `-2`, `-3`, … the first such folder that holds no run; with
/// `force`, `runs/<file name>` whatever it holds.
fn default_out(file: &std::path::Path, force: bool) -> Result<PathBuf, Failure> {
    let stem = crate::file_stem(file);
    let first = PathBuf::from("runs").join(&stem);
    if force || !RunFolder::new(&first).has_checkpoint() {
        return Ok(first);
    }
    (2..=MAX_NUMBERED_RUNS)
        .map(|n| PathBuf::from("runs").join(format!("{stem}-{n}")))
        .find(|dir| !RunFolder::new(dir).has_checkpoint())
        .ok_or_else(|| {
            Failure::usage(format!(
                "runs/{stem} to runs/{stem}-{MAX_NUMBERED_RUNS} all hold runs; choose a folder with --out"
            ))
        })
}

/// How far `default_out` numbers before it asks for `--out`.
const MAX_NUMBERED_RUNS: u32 = 9999;

/// Seconds as `m:ss`, or `h:mm:ss` from an hour on.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s / 3600 {
        0 => format!("{}:{:02}", s / 60, s % 60),
        h => format!("{h}:{:02}:{:02}", s / 60 % 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_resume_arguments_leave_out_the_folder_flags_only() {
        let args = ["--color", "never", "train", "a.net", "--out", "runs/a", "--force", "--resume=x", "--epochs", "3"];
        let kept = super::arguments_without_folder(args.into_iter().map(Into::into));
        assert_eq!(kept, ["--color", "never", "train", "a.net", "--epochs", "3"]);
    }

    #[test]
    fn clock_reads_minutes_and_hours() {
        assert_eq!(super::clock(0.4), "0:00");
        assert_eq!(super::clock(65.0), "1:05");
        assert_eq!(super::clock(3600.0 + 62.0), "1:01:02");
    }
}
