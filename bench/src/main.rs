//! Measures one model: compile time (parse → check → IR → autodiff → executor plan), training
//! throughput (forward, backward and SGD update at batch 100) and inference throughput (batch
//! 1000) in images per second, and the process's peak memory. Prints one JSON line. With
//! `--peak`, measures the machine's limit instead: the single-core FMA peak of every GEMM path
//! the CPU has and the GEMM's rate on the products of LeNet, the MLP and CIFAR LeNet5.

use netc::ir::Mode;
use netc::train::optimizer::Update;
use netc::train::{Backend, Slot};
use netc_exec::peak::{fma_peak_gflops, gemm_gflops, GemmShape};
use netc_exec::Isa;
use std::time::Instant;

const USAGE: &str = "\
usage: netc-bench --model FILE [--threads N] [--seconds S]
       netc-bench --peak [--seconds S]
       netc-bench --help

  --model FILE   measure this net: compile time, training (batch 100) and inference
                 (batch 1000) images per second, peak memory; prints one JSON line
  --threads N    worker threads (default 2)
  --seconds S    seconds per figure (default 3; 0.5 with --peak)
  --peak         measure the limit on one core instead: the FMA peak of each GEMM path this
                 CPU has (avx512, avx2, portable) and the GEMM's GFLOP/s on each model's
                 products; one JSON line per figure
  --help         print this help

The GEMM path is the fastest the CPU has unless NETC_ISA=avx512|avx2|portable forces one.";

/// What to measure.
enum Task {
    Model { model: String, threads: usize },
    Peak,
    Help,
}

struct Options {
    task: Task,
    seconds: Option<f64>,
}

fn options(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let (mut model, mut threads, mut seconds, mut peak) = (None, 2, None, false);
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--help" | "-h" => return Ok(Options { task: Task::Help, seconds }),
            "--peak" => {
                peak = true;
                continue;
            }
            _ => {}
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"))?;
        match flag.as_str() {
            "--model" => model = Some(value),
            "--threads" => threads = value.parse().map_err(|_| format!("--threads {value}: not a number"))?,
            "--seconds" => {
                let s: f64 = value.parse().map_err(|_| format!("--seconds {value}: not a number"))?;
                if !(s.is_finite() && s >= 0.0) {
                    return Err(format!("--seconds {value}: not a duration"));
                }
                seconds = Some(s);
            }
            _ => return Err(format!("unknown flag {flag}\n\n{USAGE}")),
        }
    }
    let task = match (peak, model) {
        (true, None) => Task::Peak,
        (true, Some(_)) => return Err(format!("--peak measures the machine, not a model: drop --model\n\n{USAGE}")),
        (false, Some(model)) => Task::Model { model, threads },
        (false, None) => return Err(USAGE.into()),
    };
    Ok(Options { task, seconds })
}

/// Calls `step` (which handles `per_call` images) until `seconds` have passed and at least five
/// calls were made, after three warm-up calls; returns images per second.
fn throughput(per_call: usize, seconds: f64, mut step: impl FnMut()) -> f64 {
    for _ in 0..3 {
        step();
    }
    let (mut calls, start) = (0usize, Instant::now());
    loop {
        step();
        calls += 1;
        let elapsed = start.elapsed().as_secs_f64();
        if elapsed >= seconds && calls >= 5 {
            return (calls * per_call) as f64 / elapsed;
        }
    }
}

/// Peak resident memory of this process in MiB, from the kernel's accounting.
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The products of each model's training step at batch 100, as `(model, product, shape)`:
/// a convolution's forward product is filters × (positions · batch) × (channels · window), its
/// data gradient (channels · window) × (positions · batch) × filters.
const MODEL_PRODUCTS: [(&str, &str, GemmShape); 13] = [
    ("lenet", "conv1 forward", GemmShape { m: 20, n: 576 * 100, k: 25 }),
    ("lenet", "conv2 forward", GemmShape { m: 50, n: 64 * 100, k: 500 }),
    ("lenet", "conv3 forward", GemmShape { m: 500, n: 100, k: 800 }),
    ("lenet", "conv2 data gradient", GemmShape { m: 500, n: 64 * 100, k: 50 }),
    ("lenet", "conv3 data gradient", GemmShape { m: 800, n: 100, k: 500 }),
    ("mlp", "dense1 forward", GemmShape { m: 100, n: 500, k: 784 }),
    ("mlp", "dense1 weight gradient", GemmShape { m: 784, n: 500, k: 100 }),
    ("mlp", "dense2 data gradient", GemmShape { m: 100, n: 500, k: 10 }),
    ("lenet5_cifar", "conv1 forward", GemmShape { m: 32, n: 1024 * 100, k: 75 }),
    ("lenet5_cifar", "conv2 forward", GemmShape { m: 32, n: 256 * 100, k: 800 }),
    ("lenet5_cifar", "conv3 forward", GemmShape { m: 64, n: 64 * 100, k: 800 }),
    ("lenet5_cifar", "conv4 forward", GemmShape { m: 64, n: 100, k: 1024 }),
    ("lenet5_cifar", "conv2 data gradient", GemmShape { m: 800, n: 256 * 100, k: 32 }),
];

/// `--peak`: one JSON line per path for the FMA peak, then per path and product the GEMM's
/// rate and its fraction of that path's peak and of the best path's.
fn peak(seconds: f64) -> Result<(), String> {
    let fail = |e: netc_exec::ExecError| e.to_string();
    for isa in Isa::ALL.into_iter().filter(|isa| !isa.is_available()) {
        eprintln!("note: this CPU lacks the {isa} path; not measured");
    }
    let paths: Vec<Isa> = Isa::ALL.into_iter().filter(|isa| isa.is_available()).collect();
    let mut peaks = Vec::new();
    for &isa in &paths {
        let gflops = fma_peak_gflops(isa, seconds).map_err(fail)?;
        println!("{{\"figure\": \"fma_peak\", \"isa\": \"{isa}\", \"threads\": 1, \"gflops\": {gflops:.1}}}");
        peaks.push(gflops);
    }
    let best = peaks.first().copied().unwrap_or(f64::NAN);
    for (&isa, &path_peak) in paths.iter().zip(&peaks) {
        for (model, product, shape) in MODEL_PRODUCTS {
            let gflops = gemm_gflops(isa, shape, seconds).map_err(fail)?;
            println!(
                "{{\"figure\": \"gemm\", \"isa\": \"{isa}\", \"model\": \"{model}\", \"product\": \"{product}\", \
                 \"m\": {}, \"n\": {}, \"k\": {}, \"threads\": 1, \"gflops\": {gflops:.1}, \
                 \"of_path_peak\": {:.3}, \"of_best_peak\": {:.3}}}",
                shape.m,
                shape.n,
                shape.k,
                gflops / path_peak,
                gflops / best
            );
        }
    }
    Ok(())
}

fn main() -> Result<(), String> {
    let options = options(std::env::args().skip(1))?;
    let (model_path, threads) = match options.task {
        Task::Help => {
            println!("{USAGE}");
            return Ok(());
        }
        Task::Peak => return peak(options.seconds.unwrap_or(0.5)),
        Task::Model { model, threads } => (model, threads),
    };
    let seconds = options.seconds.unwrap_or(3.0);
    let fail = |e: netc::Error| e.render(false);
    let started = Instant::now();
    let source = netc::Source::read(std::path::Path::new(&model_path)).map_err(fail)?;
    let model = netc::model(&source, &[], None).map_err(fail)?;
    let checked = started.elapsed();
    let mut backend = netc::run::ExecBackend::new(&model, threads).map_err(fail)?;
    let compiled = started.elapsed();

    let program = netc::run::compile(&model, Mode::Train, false).map_err(fail)?;
    let mut params = netc::run::init_params(&model, &program);
    let image_len: usize = model.net().input.shape.iter().product();
    let (batch, infer_batch) = (100, 1000);
    let images: Vec<f32> = (0..infer_batch * image_len).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
    let labels: Vec<u8> = (0..infer_batch).map(|i| (i % 10) as u8).collect();
    let config = model.train();
    let mut grads: Vec<Vec<f32>> = params.iter().map(|(_, t)| vec![0.0; t.len()]).collect();
    let mults = vec![(1.0, 1.0); params.len()];
    let mut slots: Vec<Slot> = params.iter().map(|(_, t)| Slot::new(&config.optimizer, t.len())).collect();
    let signs = vec![None; params.len()];
    let mut step = 0u64;
    let mut failure = None;
    let mut held = false;
    // As the trainer steps: with the parameters kept in the backend when it can.
    let train = throughput(batch, seconds, || {
        let (images, labels) = (&images[..batch * image_len], &labels[..batch]);
        let update = Update { optimizer: &config.optimizer, lr: config.lr_at(0), t: step + 1, mults: &mults };
        let take = (!held).then_some(&params[..]);
        let result = match backend.held_step(take, images, labels, step, &update, &mut slots, &signs) {
            Some(result) => {
                held = true;
                result.map(|_| ())
            }
            None => backend
                .train_step(&params, images, labels, step, &mut grads)
                .and_then(|_| backend.update(&update, &mut params, &grads, &mut slots)),
        };
        if let Err(e) = result {
            failure = Some(format!("{e:?}"));
        }
        step += 1;
    });
    if held {
        backend.read_params(&mut params);
    }
    let infer = throughput(infer_batch, seconds, || {
        if let Err(e) = backend.evaluate(&params, &images, &labels, 0) {
            failure = Some(format!("{e:?}"));
        }
    });
    if let Some(e) = failure {
        return Err(format!("a step failed: {e}"));
    }
    println!(
        "{{\"engine\": \"netc\", \"model\": \"{}\", \"threads\": {}, \"check_ms\": {:.2}, \"compile_ms\": {:.2}, \
         \"train_images_per_sec\": {train:.1}, \"infer_images_per_sec\": {infer:.1}, \"peak_mib\": {:.1}}}",
        // The file's stem names the benchmark: two files may define nets of the same name.
        std::path::Path::new(&model_path).file_stem().and_then(|s| s.to_str()).unwrap_or("model"),
        threads,
        checked.as_secs_f64() * 1e3,
        compiled.as_secs_f64() * 1e3,
        peak_mib()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        options(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn help_and_peak_take_no_value() {
        assert!(matches!(parse(&["--help"]).map(|o| o.task), Ok(Task::Help)));
        assert!(matches!(parse(&["--model", "m.net", "-h"]).map(|o| o.task), Ok(Task::Help)));
        let peak = parse(&["--peak", "--seconds", "0.2"]).expect("parses");
        assert!(matches!(peak.task, Task::Peak) && peak.seconds == Some(0.2));
        let model = parse(&["--model", "m.net", "--threads", "1"]).expect("parses");
        assert!(matches!(model.task, Task::Model { ref model, threads: 1 } if model == "m.net"));
    }

    #[test]
    fn bad_command_lines_are_refused_with_the_usage() {
        for (args, says) in [
            (&["--model"][..], "--model needs a value"),
            (&["--peak", "--model", "m.net"][..], "drop --model"),
            (&["--model", "m.net", "--seconds", "-1"][..], "not a duration"),
            (&["--model", "m.net", "--threads", "two"][..], "not a number"),
            (&["--frobnicate", "1"][..], "unknown flag --frobnicate"),
            (&[][..], "usage:"),
        ] {
            let err = parse(args).err().unwrap_or_else(|| panic!("{args:?} accepted"));
            assert!(err.contains(says), "{args:?}: {err}");
        }
    }
}
