//! Training end to end through the library: a resumed run ends bit for bit equal to an
//! uninterrupted one, divergence names the layer and keeps the last good checkpoint, bad data
//! is a clear error, and on real MNIST (when `NETC_DATA` is set) a short run learns.

use netc::run::{Data, DataRequest, InterpBackend};
use netc::train::{Event, RunOptions};
use std::path::{Path, PathBuf};

mod support;
use support::synthetic_mnist;

const TINY: &str = "
net tiny {
    input image: [1, 6, 6]
    conv(4, k=3)
    relu
    maxpool(2)
    dense(10)
    loss softmax_xent(classes=10)
}
train { optimizer = sgd(lr=0.05, momentum=0.9, weight_decay=0.0005) batch = 8 epochs = 3 init = normal(std=0.1) preprocess = scale seed = 7 }
";

fn model(text: &str) -> netc::Model {
    netc::model(&netc::Source::new("tiny.net", text), &[], None).unwrap()
}

fn data(dir: &Path) -> Data {
    Data::load(&DataRequest { name: dir.display().to_string(), dir: None }).unwrap()
}

fn run(
    model: &netc::Model,
    data: &Data,
    out: &Path,
    resume: bool,
) -> Result<Vec<netc::train::EpochMetrics>, netc::Error> {
    run_on(&mut InterpBackend::new(model).unwrap(), model, data, out, resume)
}

fn run_on(
    backend: &mut dyn netc::train::Backend,
    model: &netc::Model,
    data: &Data,
    out: &Path,
    resume: bool,
) -> Result<Vec<netc::train::EpochMetrics>, netc::Error> {
    let program = netc::run::compile(model, netc::ir::Mode::Train, false).unwrap();
    let init = || netc::run::init_params(model, &program);
    let options =
        RunOptions { out: out.to_path_buf(), resume, limit_train: None, limit_test: None, provenance: vec![] };
    netc::run::train(model, data, backend, &init, &options, &mut |_: Event| {})
}

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    synthetic_mnist(&data_dir, 96, 30);
    (dir, data_dir)
}

#[test]
fn resumed_run_equals_uninterrupted_run_bit_for_bit() {
    let (dir, data_dir) = temp();
    let data = data(&data_dir);
    let full = model(TINY);
    let straight = run(&full, &data, &dir.path().join("straight"), false).unwrap();
    assert_eq!(straight.len(), 3);
    assert!(straight[2].train_error < straight[0].train_error || straight[2].train_error == 0.0, "{straight:?}");

    let mut first = model(TINY);
    first.checked.train.epochs = 1;
    let interrupted = dir.path().join("interrupted");
    run(&first, &data, &interrupted, false).unwrap();
    let resumed = run(&full, &data, &interrupted, true).unwrap();

    let read = |run: &str, file: &str| std::fs::read(dir.path().join(run).join(file)).unwrap();
    for file in ["model.safetensors", "checkpoint.safetensors"] {
        assert!(read("straight", file) == read("interrupted", file), "{file} differs after resuming");
    }
    for (a, b) in straight.iter().zip(&resumed) {
        assert_eq!(
            (a.epoch, a.train_loss, a.train_error, a.test_loss, a.test_error),
            (b.epoch, b.train_loss, b.train_error, b.test_loss, b.test_error)
        );
    }
    let metrics = String::from_utf8(read("interrupted", "metrics.csv")).unwrap();
    assert!(metrics.starts_with("epoch,train_loss,train_error,test_loss,test_error,seconds,images_per_sec\n1,"));
    assert_eq!(metrics.lines().count(), 4);
    for file in ["model.net", "run.json"] {
        assert!(dir.path().join("interrupted").join(file).exists(), "{file}");
    }
}

#[test]
fn divergence_names_the_layer_and_keeps_the_last_good_checkpoint() {
    let exploding = TINY
        .replace("sgd(lr=0.05,", "sgd(")
        .replace("seed = 7", "seed = 7 lr_schedule = [[0.05, 1], [100000000.0, 5]]");
    let model = model(&exploding);
    let backends: [Box<dyn netc::train::Backend>; 2] =
        [Box::new(InterpBackend::new(&model).unwrap()), Box::new(netc::run::ExecBackend::new(&model, 2).unwrap())];
    for mut backend in backends {
        diverges(backend.as_mut(), &model);
    }
}

fn diverges(backend: &mut dyn netc::train::Backend, model: &netc::Model) {
    let (dir, data_dir) = temp();
    let out = dir.path().join("run");
    let err = run_on(backend, model, &data(&data_dir), &out, false).unwrap_err();
    let text = err.render(false);
    assert!(matches!(err, netc::Error::Source { .. }), "{text}");
    assert!(text.contains("training diverged in epoch 2"), "{text}");
    assert!(text.contains("produced the first NaN or infinity"), "{text}");
    let shapes = netc::train::param_shapes(model.net());
    let kept = netc::train::checkpoint::load_state(&out.join("checkpoint.safetensors"), &shapes).unwrap();
    assert_eq!(kept.epoch, 1);
    assert!(kept.params.iter().all(|(_, t)| t.data().iter().all(|v| v.is_finite())));
}

#[test]
fn truncated_data_is_a_clear_error() {
    let (_dir, data_dir) = temp();
    let labels = data_dir.join("t10k-labels-idx1-ubyte");
    let bytes = std::fs::read(&labels).unwrap();
    std::fs::write(&labels, &bytes[..bytes.len() - 5]).unwrap();
    let err = Data::load(&DataRequest { name: data_dir.display().to_string(), dir: None }).err().unwrap();
    let text = err.render(false);
    assert!(text.contains("t10k-labels-idx1-ubyte"), "{text}");
    assert!(text.contains("truncated"), "{text}");
}

#[test]
fn weights_that_do_not_fit_the_net_are_rejected() {
    let (dir, data_dir) = temp();
    let data = data(&data_dir);
    let mut small = model(TINY);
    small.checked.train.epochs = 1;
    run(&small, &data, &dir.path().join("run"), false).unwrap();
    let wider = model(&TINY.replace("conv(4, k=3)", "conv(5, k=3)"));
    let mut backend = InterpBackend::new(&wider).unwrap();
    let err = netc::run::evaluate(&wider, &data, &dir.path().join("run/model.safetensors"), &mut backend).unwrap_err();
    assert!(err
        .render(false)
        .contains("`conv1.weight` has shape [4, 1, 3, 3] in the file but [5, 1, 3, 3] in the net"));
    let mut backend = InterpBackend::new(&small).unwrap();
    let (_, error) =
        netc::run::evaluate(&small, &data, &dir.path().join("run/model.safetensors"), &mut backend).unwrap();
    assert!(error < 0.5, "{error}");
}

/// The real-data check CI runs: `NETC_DATA` must point at a folder holding `mnist/` when `CI` is
/// set; elsewhere the test says it did not run.
fn real_mnist() -> Option<Data> {
    match std::env::var_os("NETC_DATA") {
        Some(_) => Some(Data::load(&DataRequest { name: "mnist".into(), dir: None }).unwrap()),
        None if std::env::var_os("CI").is_some() => panic!("CI must set NETC_DATA to a folder holding mnist/"),
        None => {
            eprintln!("real-MNIST training test not run: set NETC_DATA to a folder holding mnist/");
            None
        }
    }
}

#[test]
fn a_short_run_on_real_mnist_learns() {
    let Some(data) = real_mnist() else { return };
    let source = netc::Source::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/mlp.net")).unwrap();
    let mut model = netc::model(&source, &[], None).unwrap();
    model.checked.train.epochs = 1;
    model.checked.train.optimizer = netc::check::Optimizer::Sgd { lr: 0.05, momentum: 0.9, weight_decay: 0.0005 };
    let dir = tempfile::tempdir().unwrap();
    let mut backend = netc::run::ExecBackend::new(&model, 2).unwrap();
    let program = netc::run::compile(&model, netc::ir::Mode::Train, false).unwrap();
    let init = || netc::run::init_params(&model, &program);
    let options = RunOptions {
        out: dir.path().to_path_buf(),
        resume: false,
        limit_train: Some(10_000),
        limit_test: Some(2_000),
        provenance: vec![],
    };
    let metrics = netc::run::train(&model, &data, &mut backend, &init, &options, &mut |_: Event| {}).unwrap();
    // An untrained or broken network errs on about 90% of the digits.
    assert!(metrics[0].test_error < 0.15, "{metrics:?}");
}

const DALE: &str = "
net dale {
    input image: [1, 6, 6]
    conv(8, k=3)
    relu
    dale(inhibitory=0.25)
    maxpool(2)
    dense(10)
    loss softmax_xent(classes=10)
}
train { optimizer = sgd(lr=0.05, momentum=0.9, weight_decay=0.0005) batch = 8 epochs = 3 init = normal(std=0.1) preprocess = scale seed = 7 }
";

/// Trains `model` on synthetic data; returns the trained `dense1.weight`, its sign constraint
/// if it has one, and the last epoch's training error.
fn trained_reader(
    backend: &mut dyn netc::train::Backend,
    model: &netc::Model,
) -> (Vec<f32>, Option<netc::ir::SignConstraint>, f64) {
    let (dir, data_dir) = temp();
    let out = dir.path().join("run");
    let history = run_on(backend, model, &data(&data_dir), &out, false).unwrap();
    let shapes = netc::train::param_shapes(model.net());
    let state = netc::train::checkpoint::load_state(&out.join("checkpoint.safetensors"), &shapes).unwrap();
    let (_, weight) = state.params.iter().find(|(name, _)| name == "dense1.weight").unwrap();
    let infos = netc::lower::param_infos(model.net(), model.train().seed);
    let (_, info) = infos.iter().find(|(name, _)| name == "dense1.weight").unwrap();
    (weight.data().to_vec(), info.sign.clone(), history.last().unwrap().train_error)
}

#[test]
fn dale_weights_keep_their_signs_through_training_on_both_backends() {
    let model = model(DALE);
    let backends: [Box<dyn netc::train::Backend>; 2] =
        [Box::new(InterpBackend::new(&model).unwrap()), Box::new(netc::run::ExecBackend::new(&model, 2).unwrap())];
    for mut backend in backends {
        let (weight, sign, train_error) = trained_reader(backend.as_mut(), &model);
        let sign = sign.expect("dense1 reads the population");
        // round(0.25·8) = 2 inhibitory channels, each owning the 2×2 pooled positions of a row.
        assert_eq!((sign.inhibitory_units(), sign.inhibitory.len(), sign.block), (2, 8, 4));
        for (i, &w) in weight.iter().enumerate() {
            assert!(if sign.is_inhibitory(i) { w <= 0.0 } else { w >= 0.0 }, "dense1.weight[{i}] = {w}");
        }
        // The projection did work: some weights were pushed across zero and stopped there.
        assert!(weight.contains(&0.0));
        assert!(weight.iter().any(|&w| w < 0.0) && weight.iter().any(|&w| w > 0.0));
        assert!(train_error < 0.5, "the constrained net learns: train error {train_error}");
    }
}

#[test]
fn a_population_without_inhibitory_units_trains_nonnegative_weights() {
    let all_excitatory = model(&DALE.replace("inhibitory=0.25", "inhibitory=0"));
    let (weight, sign, _) = trained_reader(&mut InterpBackend::new(&all_excitatory).unwrap(), &all_excitatory);
    assert_eq!(sign.unwrap().inhibitory_units(), 0);
    assert!(weight.iter().all(|&w| w >= 0.0), "{weight:?}");
    // Without the population the same net learns weights of both signs.
    let free = model(&DALE.replace("dale(inhibitory=0.25)", ""));
    let (weight, sign, _) = trained_reader(&mut InterpBackend::new(&free).unwrap(), &free);
    assert!(sign.is_none());
    assert!(weight.iter().any(|&w| w < 0.0));
}
