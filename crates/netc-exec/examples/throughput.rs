//! Executor throughput of a net (default examples/lenet.net): training steps (forward and
//! backward) at batch 100 and inference at batch 1000, with 1 and 2 threads, plus where the time
//! goes per kernel and which steps take longest (by the value they produce, as `netc ir
//! --fused` prints it).
//!
//! `cargo run --release -p netc-exec --example throughput [-- seconds [file.net]]`
//!
//! Each figure is the median of several timed rounds of about `seconds / 8` (default 8 s in
//! all); the best round is shown too, since other processes on the machine slow some rounds.

use netc_exec::{ExecOptions, Executor, Feed};
use netc_ir::rng::Key;
use netc_ir::{Mode, Program, Tensor};
use std::collections::BTreeMap;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let budget: f64 = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(8.0);
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/lenet.net").to_string();
    let path = std::env::args().nth(2).unwrap_or(default);
    let src = std::fs::read_to_string(&path)?;
    let checked = netc_check::check(&netc_syntax::parse(&src).map_err(|_| format!("{path} does not parse"))?, &[])
        .map_err(|_| format!("{path} does not check"))?;
    let net = &checked.nets[0];
    let options = |mode| netc_lower::LowerOptions { mode, seed: 0 };
    let train = netc_ir::grad(&netc_lower::lower(net, options(Mode::Train))?)?;
    let infer = netc_lower::lower(net, options(Mode::Eval))?;
    let params = netc_lower::init_params(&train, &netc_check::Init::Normal { std: 0.01 }, 0);
    let image_len: usize = net.input.shape.iter().product();

    println!("{} on {} ({} cores available)", net.name, std::env::consts::ARCH, available());
    for threads in [1, 2] {
        let (train_rate, train_best) = throughput(&train, &params, (100, image_len), threads, budget / 8.0)?;
        let (infer_rate, infer_best) = throughput(&infer, &params, (1000, image_len), threads, budget / 8.0)?;
        println!(
            "threads {threads}: train (batch 100) {train_rate:6.0} images/s (best {train_best:6.0}); \
             inference (batch 1000) {infer_rate:6.0} images/s (best {infer_best:6.0})"
        );
    }
    for (name, program, batch) in [("train", &train, 100), ("inference", &infer, 1000)] {
        for threads in [1, 2] {
            println!("\n{name}, batch {batch}, {threads} threads: time per kernel (best of 10 runs)");
            profile(program, &params, (batch, image_len), threads)?;
        }
    }
    Ok(())
}

fn available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Random images of `image_len` values in [0, 1) and labels for `batch` examples.
fn batch_data((batch, image_len): (usize, usize)) -> (Vec<f32>, Vec<f32>) {
    let key = Key { seed: 1, stream: netc_ir::rng::stream("throughput"), step: 0 };
    let images = (0..(batch * image_len) as u64).map(|i| key.uniform(i) as f32).collect();
    let labels = (0..batch as u64).map(|i| key.below(i, 10) as f32).collect();
    (images, labels)
}

fn feed_inputs<'a>(images: &'a [f32], labels: &'a [f32], params: &'a [(String, Tensor)]) -> Vec<(&'a str, &'a [f32])> {
    let mut inputs: Vec<(&str, &[f32])> = vec![("image", images), ("labels", labels)];
    inputs.extend(params.iter().map(|(n, t)| (n.as_str(), t.data())));
    inputs
}

/// Median and best images per second over rounds of about `round` seconds.
fn throughput(
    program: &Program,
    params: &[(String, Tensor)],
    (batch, image_len): (usize, usize),
    threads: usize,
    round: f64,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let mut exec = Executor::new(program, ExecOptions { threads, ..ExecOptions::default() })?;
    let (images, labels) = batch_data((batch, image_len));
    let inputs = feed_inputs(&images, &labels, params);
    let mut step = 0;
    let mut run = |exec: &mut Executor| {
        step += 1;
        exec.run(&Feed { batch, step, inputs: &inputs })
    };
    // Warm up, and size the rounds.
    let start = Instant::now();
    for _ in 0..3 {
        run(&mut exec)?;
    }
    let per_run = start.elapsed().as_secs_f64() / 3.0;
    let runs = ((round / per_run) as usize).max(3);
    let mut rates = Vec::new();
    for _ in 0..8 {
        let start = Instant::now();
        for _ in 0..runs {
            run(&mut exec)?;
        }
        rates.push((runs * batch) as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    Ok((rates[rates.len() / 2], rates[rates.len() - 1]))
}

/// Prints the time per kernel kind (best of several profiled runs, per step).
fn profile(
    program: &Program,
    params: &[(String, Tensor)],
    (batch, image_len): (usize, usize),
    threads: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut exec = Executor::new(program, ExecOptions { threads, ..ExecOptions::default() })?;
    let (images, labels) = batch_data((batch, image_len));
    let inputs = feed_inputs(&images, &labels, params);
    let feed = Feed { batch, step: 1, inputs: &inputs };
    exec.run(&feed)?;
    let mut best: Vec<f64> = Vec::new();
    let mut kernels = Vec::new();
    let mut values = Vec::new();
    for _ in 0..10 {
        let times = exec.profile(&feed)?;
        if best.is_empty() {
            best = vec![f64::MAX; times.len()];
            kernels = times.iter().map(|t| t.kernel).collect();
            values = times.iter().map(|t| t.value).collect();
        }
        for (b, t) in best.iter_mut().zip(&times) {
            *b = b.min(t.seconds);
        }
    }
    let mut by_kernel: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for (kernel, t) in kernels.iter().zip(&best) {
        let entry = by_kernel.entry(kernel).or_default();
        entry.0 += t;
        entry.1 += 1;
    }
    let total: f64 = best.iter().sum();
    let mut rows: Vec<_> = by_kernel.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    for (kernel, (t, n)) in rows {
        println!("  {kernel:20} {n:3} steps {:8.3} ms  {:5.1}%", t * 1e3, 100.0 * t / total);
    }
    println!("  {:20}           {:8.3} ms  = {:.0} images/s", "total", total * 1e3, batch as f64 / total);
    let mut slowest: Vec<usize> = (0..best.len()).collect();
    slowest.sort_by(|&a, &b| best[b].total_cmp(&best[a]));
    let listed: Vec<String> =
        slowest.iter().take(6).map(|&s| format!("{} {} {:.3} ms", values[s], kernels[s], best[s] * 1e3)).collect();
    println!("  slowest steps: {}", listed.join(", "));
    Ok(())
}
