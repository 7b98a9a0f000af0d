//! Measures one model: compile time (parse → check → IR → autodiff → executor plan), training
//! throughput (forward, backward and SGD update at batch 100) and inference throughput (batch
//! 1000) in images per second, and the process's peak memory. Prints one JSON line.
//!
//! `netc-bench --model examples/lenet.net [--threads 2] [--seconds 3]`

use netc::ir::Mode;
use netc::train::optimizer::Update;
use netc::train::{Backend, Slot};
use std::time::Instant;

struct Options {
    model: String,
    threads: usize,
    seconds: f64,
}

fn options() -> Result<Options, String> {
    let mut options = Options { model: String::new(), threads: 2, seconds: 3.0 };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--model" => options.model = value,
            "--threads" => options.threads = value.parse().map_err(|_| format!("--threads {value}: not a number"))?,
            "--seconds" => options.seconds = value.parse().map_err(|_| format!("--seconds {value}: not a number"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if options.model.is_empty() {
        return Err("usage: netc-bench --model FILE [--threads N] [--seconds S]".into());
    }
    Ok(options)
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

fn main() -> Result<(), String> {
    let options = options()?;
    let fail = |e: netc::Error| e.render(false);
    let started = Instant::now();
    let source = netc::Source::read(std::path::Path::new(&options.model)).map_err(fail)?;
    let model = netc::model(&source, &[], None).map_err(fail)?;
    let checked = started.elapsed();
    let mut backend = netc::run::ExecBackend::new(&model, options.threads).map_err(fail)?;
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
    let mut step = 0u64;
    let mut failure = None;
    let train = throughput(batch, options.seconds, || {
        let result = backend.train_step(&params, &images[..batch * image_len], &labels[..batch], step, &mut grads);
        if let Err(e) = result {
            failure = Some(format!("{e:?}"));
        }
        step += 1;
        let update = Update { optimizer: &config.optimizer, lr: config.lr_at(0), t: step, mults: &mults };
        if let Err(e) = backend.update(&update, &mut params, &grads, &mut slots) {
            failure = Some(format!("{e:?}"));
        }
    });
    let infer = throughput(infer_batch, options.seconds, || {
        if let Err(e) = backend.evaluate(&params, &images, &labels) {
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
        std::path::Path::new(&options.model).file_stem().and_then(|s| s.to_str()).unwrap_or("model"),
        options.threads,
        checked.as_secs_f64() * 1e3,
        compiled.as_secs_f64() * 1e3,
        peak_mib()
    );
    Ok(())
}
