//! Embedding netc in a Rust program: compile a net from source text, train it on MNIST with a
//! callback per epoch, evaluate it, and load the saved weights back.
//!
//! Run with `cargo run --release --example embed` (MNIST is looked up as `netc train` does:
//! `$NETC_DATA/mnist`, `./data/mnist`, the user cache folder).

use netc::run::{Data, DataRequest, ExecBackend};
use netc::train::{Event, RunFolder, RunOptions};
use std::process::ExitCode;

const SOURCE: &str = "
net small_mlp(hidden = 128) {
    input image: [1, 28, 28]
    dense(hidden)
    mixlu(negfrac=0.05)     # 5% of the hidden units are NegLUs
    dense(10)
    loss softmax_xent(classes=10)
}
train { optimizer = sgd(lr=0.05, momentum=0.9, weight_decay=0.0005) batch = 100 epochs = 2 preprocess = scale }
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("{}", e.render(false));
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), netc::Error> {
    let source = netc::Source::new("small_mlp.net", SOURCE);
    let model = netc::model(&source, &[("hidden".into(), "64".into())], None)?;
    print!("{}", netc::check::summary(model.net(), false));

    let data = Data::load(&DataRequest { name: "mnist".into(), dir: None, format: None })?;
    let mut backend = ExecBackend::new(&model, 0)?;
    let out = RunFolder::new(std::env::temp_dir().join(format!("netc-embed-{}", std::process::id())));
    let options = RunOptions {
        out: out.clone(),
        resume: false,
        limit_train: Some(20_000),
        limit_test: None,
        validation: None,
        provenance: data.provenance(std::path::Path::new(&source.name), &[]),
    };
    netc::run::train(&model, &data, &mut backend, &options, &mut |event| {
        if let Event::Epoch(m) = event {
            println!("epoch {}: test error {:.2}% ({:.0} images/s)", m.epoch, m.test_error * 100.0, m.images_per_sec);
        }
    })?;

    let weights = out.weights();
    let (loss, error) = netc::run::evaluate(&model, &data, &weights, &mut backend)?;
    println!("reloaded {}: test loss {loss:.4}, test error {:.2}%", weights.display(), error * 100.0);
    let dir = out.dir();
    std::fs::remove_dir_all(dir).map_err(|e| netc::Error::Io(format!("cannot remove {}: {e}", dir.display())))?;
    Ok(())
}
