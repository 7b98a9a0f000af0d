//! Training end to end through the library: a resumed run ends bit for bit equal to an
//! uninterrupted one, divergence names the layer and keeps the last good checkpoint, bad data
//! is a clear error, and on real MNIST (when `NETC_DATA` is set) a short run learns.

use netc::run::{Data, DataRequest, InterpBackend};
use netc::train::{Event, RunFolder, RunOptions};
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

/// The preprocessing of `TINY` and the nets below (`scale`) learns nothing.
const NO_STATISTICS: netc::train::Needs = netc::train::Needs { mean: None, mean_norm: false, whitening: None };

fn model(text: &str) -> netc::Model {
    netc::model(&netc::Source::new("tiny.net", text), &[], None).unwrap()
}

fn data(dir: &Path) -> Data {
    Data::load(&DataRequest { name: dir.display().to_string(), dir: None, format: None }).unwrap()
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
    netc::run::train(model, data, backend, &options(out, data, resume), &mut |_: Event| {})
}

/// A run of all the data into `out`, recorded as `tiny.net`'s.
fn options(out: &Path, data: &Data, resume: bool) -> RunOptions {
    RunOptions {
        out: RunFolder::new(out),
        resume,
        limit_train: None,
        limit_test: None,
        validation: None,
        provenance: data.provenance(Path::new("tiny.net"), &[]),
    }
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
    assert!(metrics.starts_with(&format!("{}\n1,", netc::train::METRICS_HEADER)), "{metrics}");
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
    let netc::Error::Diverged { divergence, .. } = &err else { panic!("not a divergence: {text}") };
    assert_eq!(divergence.epoch, 2, "{text}");
    assert!(text.contains("error[E0800]: training diverged in epoch 2"), "{text}");
    assert!(text.contains(&format!("`{}` produced the first NaN or infinity", divergence.layer)), "{text}");
    let shapes = netc::train::param_shapes(model.net());
    let kept = netc::train::checkpoint::load_state(&RunFolder::new(&out).checkpoint(), &shapes, NO_STATISTICS).unwrap();
    assert_eq!(kept.epoch, 1);
    assert!(kept.params.iter().all(|(_, t)| t.data().iter().all(|v| v.is_finite())));
}

#[test]
fn truncated_data_is_a_clear_error() {
    let (_dir, data_dir) = temp();
    let labels = data_dir.join("t10k-labels-idx1-ubyte");
    let bytes = std::fs::read(&labels).unwrap();
    std::fs::write(&labels, &bytes[..bytes.len() - 5]).unwrap();
    let err = Data::load(&DataRequest { name: data_dir.display().to_string(), dir: None, format: None }).err().unwrap();
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
        Some(_) => Some(Data::load(&DataRequest { name: "mnist".into(), dir: None, format: None }).unwrap()),
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
    let options = RunOptions {
        out: RunFolder::new(dir.path()),
        resume: false,
        limit_train: Some(10_000),
        limit_test: Some(2_000),
        validation: None,
        provenance: data.provenance(Path::new("mlp.net"), &[]),
    };
    let metrics = netc::run::train(&model, &data, &mut backend, &options, &mut |_: Event| {}).unwrap();
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
    let state =
        netc::train::checkpoint::load_state(&RunFolder::new(&out).checkpoint(), &shapes, NO_STATISTICS).unwrap();
    let (_, weight) = state.params.iter().find(|(name, _)| name == "dense1.weight").unwrap();
    let param = backend.params().iter().find(|p| p.name == "dense1.weight").unwrap();
    (weight.data().to_vec(), param.info.sign.clone(), history.last().unwrap().train_error)
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

/// A one-epoch run of `text` in `out`, then the error of resuming it as `resumed`.
fn resume_error(text: &str, change: impl Fn(&mut netc::Model), data: &Data, out: &Path) -> String {
    let mut first = model(text);
    first.checked.train.epochs = 1;
    run(&first, data, out, false).unwrap();
    let mut resumed = model(text);
    change(&mut resumed);
    let err = run(&resumed, data, out, true).unwrap_err();
    assert!(matches!(err, netc::Error::ResumeMismatch { .. }), "{}", err.render(false));
    err.render(false)
}

const PARAMETRISED: &str = "
net tiny(width = 4) {
    input image: [1, 6, 6]
    conv(width, k=3)
    relu
    maxpool(2)
    dense(10)
    loss softmax_xent(classes=10)
}
train { optimizer = sgd(lr=0.05, momentum=0.9, weight_decay=0.0005) batch = 8 epochs = 3 init = normal(std=0.1) preprocess = scale seed = 7 }
";

#[test]
fn resume_refuses_a_run_that_is_not_the_recorded_one() {
    let (dir, data_dir) = temp();
    let data = data(&data_dir);
    let text = resume_error(
        PARAMETRISED,
        |m| {
            *m = netc::model(&netc::Source::new("tiny.net", PARAMETRISED), &[("width".into(), "5".into())], None)
                .unwrap()
        },
        &data,
        &dir.path().join("set"),
    );
    assert!(text.contains("net parameter `width`: 4 in the folder, 5 now"), "{text}");
    let text = resume_error(PARAMETRISED, |m| m.checked.train.seed = 8, &data, &dir.path().join("seed"));
    assert!(text.contains("seed: 7 in the folder, 8 now"), "{text}");
    let text = resume_error(PARAMETRISED, |m| m.checked.train.batch = 16, &data, &dir.path().join("batch"));
    assert!(text.contains("batch size: 8 in the folder, 16 now"), "{text}");
    let text = resume_error(
        PARAMETRISED,
        |m| *m = model(&PARAMETRISED.replace("relu", "neglu")),
        &data,
        &dir.path().join("net"),
    );
    assert!(text.contains("checked net (the .net file changed): sha256"), "{text}");
    // More epochs, another lr: the same run, continued.
    let out = dir.path().join("seed");
    let mut longer = model(PARAMETRISED);
    longer.checked.train.epochs = 2;
    longer.checked.train.optimizer = netc::check::Optimizer::Sgd { lr: 0.01, momentum: 0.9, weight_decay: 0.0005 };
    assert_eq!(run(&longer, &data, &out, true).unwrap().len(), 2);
}

#[test]
fn resume_refuses_other_data() {
    let (dir, data_dir) = temp();
    let out = dir.path().join("run");
    let mut first = model(TINY);
    first.checked.train.epochs = 1;
    run(&first, &data(&data_dir), &out, false).unwrap();
    let other = dir.path().join("other");
    synthetic_mnist(&other, 95, 30);
    let err = run(&model(TINY), &data(&other), &out, true).unwrap_err();
    let text = err.render(false);
    assert!(text.contains("data file `train-images-idx3-ubyte`: sha256 "), "{text}");
}

/// Trains one epoch of `text` and returns the run folder.
fn trained(text: &str, dir: &Path, data: &Data) -> RunFolder {
    let mut model = model(text);
    model.checked.train.epochs = 1;
    let out = dir.join("run");
    run(&model, data, &out, false).unwrap();
    RunFolder::new(out)
}

fn flip_last_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    *bytes.last_mut().unwrap() ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn flipped_bytes_in_weights_and_checkpoints_are_detected() {
    let (dir, data_dir) = temp();
    let data = data(&data_dir);
    let folder = trained(TINY, dir.path(), &data);
    flip_last_byte(&folder.weights());
    let model = model(TINY);
    let err = netc::run::evaluate(&model, &data, &folder.weights(), &mut InterpBackend::new(&model).unwrap());
    let text = err.unwrap_err().render(false);
    assert!(text.contains("does not match its checksum") && text.contains("the file is corrupt"), "{text}");
    flip_last_byte(&folder.checkpoint());
    let text = run(&model, &data, folder.dir(), true).unwrap_err().render(false);
    assert!(text.contains("checkpoint.safetensors: the tensor data does not match its checksum"), "{text}");
}

/// Rewrites a weights file with `edit` applied to its tensors (with a valid checksum).
fn rewrite(path: &Path, edit: impl Fn(&mut Vec<netc::train::Named>)) {
    let (mut tensors, _) = netc::train::checkpoint::load(path).unwrap();
    edit(&mut tensors);
    netc::train::checkpoint::save(path, &tensors, Default::default()).unwrap();
}

fn eval_error(model: &netc::Model, data: &Data, weights: &Path) -> String {
    let mut backend = netc::run::ExecBackend::new(model, 1).unwrap();
    netc::run::evaluate(model, data, weights, &mut backend).unwrap_err().render(false)
}

#[test]
fn non_finite_and_unknown_tensors_are_errors() {
    let (dir, data_dir) = temp();
    let data = data(&data_dir);
    let folder = trained(TINY, dir.path(), &data);
    let model = model(TINY);
    let pristine = std::fs::read(folder.weights()).unwrap();
    rewrite(&folder.weights(), |t| t[0].1.data_mut()[3] = f32::NAN);
    let text = eval_error(&model, &data, &folder.weights());
    assert!(text.contains(&format!("`{}` holds NaN at element 3", "conv1.bias")), "{text}");
    std::fs::write(folder.weights(), &pristine).unwrap();
    rewrite(&folder.weights(), |t| t.push(("conv9.weight".into(), netc::ir::Tensor::vector(vec![1.0]))));
    let text = eval_error(&model, &data, &folder.weights());
    assert!(text.contains("the file holds tensors the net does not have: `conv9.weight`"), "{text}");
}

const MEAN: &str = "
net tiny {
    input image: [1, 6, 6]
    conv(4, k=3)
    relu
    dense(10)
    loss softmax_xent(classes=10)
}
train { optimizer = sgd(lr=0.01) batch = 8 epochs = 1 init = normal(std=0.1) preprocess = mean_image seed = 7 }
";

#[test]
fn a_missing_or_short_mean_image_is_an_error() {
    let (dir, data_dir) = temp();
    let data = data(&data_dir);
    let folder = trained(MEAN, dir.path(), &data);
    let model = model(MEAN);
    let mean = netc::train::checkpoint::MEAN_IMAGE;
    let pristine = std::fs::read(folder.weights()).unwrap();
    rewrite(&folder.weights(), |t| t.retain(|(name, _)| name != mean));
    let text = eval_error(&model, &data, &folder.weights());
    assert!(
        text.contains(&format!("the recipe's preprocessing needs the mean image, but the file holds no `{mean}`")),
        "{text}"
    );
    std::fs::write(folder.weights(), &pristine).unwrap();
    rewrite(&folder.weights(), |t| {
        let (_, image) = t.iter_mut().find(|(name, _)| name == mean).unwrap();
        *image = netc::ir::Tensor::vector(image.data()[..20].to_vec());
    });
    let text = eval_error(&model, &data, &folder.weights());
    assert!(text.contains("has 20 values, but the net's images need 36"), "{text}");
    // The checkpoint is held to the same rule on resume.
    rewrite(&folder.checkpoint(), |t| t.retain(|(name, _)| name != mean));
    let text = run(&model, &data, folder.dir(), true).unwrap_err().render(false);
    assert!(text.contains(&format!("holds no `{mean}`")), "{text}");
}

#[test]
fn a_locked_run_folder_is_refused_with_the_holder_named() {
    let (dir, data_dir) = temp();
    let folder = RunFolder::new(dir.path().join("run"));
    let held = folder.lock().unwrap();
    let err = run(&model(TINY), &data(&data_dir), folder.dir(), false).unwrap_err();
    let text = err.render(false);
    assert!(matches!(err, netc::Error::Locked { pid: Some(pid), .. } if pid == std::process::id()), "{text}");
    assert!(text.contains(&format!("is in use: process {} is training into it", std::process::id())), "{text}");
    assert!(!folder.has_checkpoint());
    drop(held);
    assert_eq!(run(&model(TINY), &data(&data_dir), folder.dir(), false).unwrap().len(), 3);
}

#[test]
fn augmented_runs_resume_bit_for_bit_and_differ_from_plain_ones() {
    let (dir, data_dir) = temp();
    let data = data(&data_dir);
    let augmented = TINY
        .replace("lr=0.05", "lr=0.0002")
        .replace("preprocess = scale", "augment = [flip, crop(pad=1)] preprocess = [mean_image, contrast_norm]");
    let full = model(&augmented);
    let straight = run(&full, &data, &dir.path().join("straight"), false).unwrap();
    let mut first = model(&augmented);
    first.checked.train.epochs = 1;
    let interrupted = dir.path().join("interrupted");
    run(&first, &data, &interrupted, false).unwrap();
    let resumed = run(&full, &data, &interrupted, true).unwrap();
    let read = |run: &str, file: &str| std::fs::read(dir.path().join(run).join(file)).unwrap();
    assert!(read("straight", "model.safetensors") == read("interrupted", "model.safetensors"));
    assert_eq!(straight.last().unwrap().train_loss, resumed.last().unwrap().train_loss);
    let run_json = String::from_utf8(read("straight", "run.json")).unwrap();
    assert!(run_json.contains("\"flip\": \"example\"") && run_json.contains("\"crop_pad\": 1"), "{run_json}");
    assert!(run_json.contains("\"contrast_norm\": true"), "{run_json}");

    let plain = model(&augmented.replace("augment = [flip, crop(pad=1)] ", ""));
    let unaugmented = run(&plain, &data, &dir.path().join("plain"), false).unwrap();
    assert_ne!(unaugmented[0].train_loss, straight[0].train_loss, "augmentation changed nothing");

    // A flat input is no image to flip.
    let flat = model(
        &augmented.replace("input image: [1, 6, 6]\n    conv(4, k=3)\n    relu\n    maxpool(2)", "input image: [36]"),
    );
    let err = run(&flat, &data, &dir.path().join("flat"), false).unwrap_err().render(false);
    assert!(err.contains("flips and crops images, but net `tiny` takes [36]"), "{err}");
}

/// A MixLU layer read as the thesis's reference code ran it: fresh masks over the batch tensor
/// in training and in evaluation, the ReLU derivative for NegLUs.
const THESIS_READING: &str = "
net tiny(eval = sample) {
    input image: [1, 6, 6]
    conv(8, k=3)
    mixlu(negfrac=0.3, mask=resample, grad=relu, eval=eval)
    dense(10)
    loss softmax_xent(classes=10)
}
train { optimizer = sgd(lr=0.05, momentum=0.9) batch = 8 epochs = 2 init = normal(std=0.1) preprocess = scale seed = 7 }
";

#[test]
fn eval_sample_draws_a_mask_per_batch_and_eval_of_the_run_reproduces_its_last_test_pass() {
    let (dir, data_dir) = temp();
    let data = data(&data_dir);
    let sampled = model(THESIS_READING);
    let out = dir.path().join("run");
    let history = run_on(&mut netc::run::ExecBackend::new(&sampled, 1).unwrap(), &sampled, &data, &out, false).unwrap();
    let weights = RunFolder::new(&out).weights();
    let last = history.last().unwrap();
    for _ in 0..2 {
        let mut backend = netc::run::ExecBackend::new(&sampled, 1).unwrap();
        let (loss, error) = netc::run::evaluate(&sampled, &data, &weights, &mut backend).unwrap();
        assert_eq!((loss, error), (last.test_loss, last.test_error));
    }

    // The same weights under the expectation give another loss: the masks were sampled.
    let expected =
        netc::model(&netc::Source::new("tiny.net", THESIS_READING), &[("eval".into(), "expect".into())], None).unwrap();
    let mut backend = netc::run::ExecBackend::new(&expected, 1).unwrap();
    let (loss, _) = netc::run::evaluate(&expected, &data, &weights, &mut backend).unwrap();
    assert_ne!(loss, last.test_loss);

    // Each key draws its own masks, and a key always the same ones.
    let shapes = netc::train::param_shapes(sampled.net());
    let saved = netc::train::checkpoint::load_model(&weights, &shapes, NO_STATISTICS).unwrap();
    let images = vec![0.5f32; 4 * 36];
    let mut backend = netc::run::ExecBackend::new(&sampled, 1).unwrap();
    let mut scores = |key| netc::train::Backend::scores(&mut backend, &saved.params, &images, 4, key).unwrap();
    let first = scores(1);
    assert_eq!(first, scores(1));
    assert_ne!(first, scores(2));
}

/// The executor's plans are checked against the memory limit when the backend is built: a
/// usage error with the planned figure, before any batch allocates.
#[test]
fn a_backend_whose_plans_exceed_the_memory_limit_is_refused_with_the_planned_figure() {
    let model = model(TINY);
    let err = netc::run::ExecBackend::with_memory_limit(&model, 1, 4_000, true).err().unwrap();
    assert!(matches!(err, netc::Error::Usage { .. }));
    let text = err.render(false);
    assert!(
        text.contains("error[E0304]: training `tiny` with batch 8 needs ") && text.contains("as planned"),
        "{text}"
    );
    assert!(text.contains("more than the limit of 4.0 kB"), "{text}");
    // The evaluation batch of 1000 is planned too (without training, only it).
    let text = netc::run::ExecBackend::with_memory_limit(&model, 1, 24_000, true).err().unwrap().render(false);
    assert!(text.contains("evaluating `tiny` with batch 1000"), "{text}");
    let text = netc::run::ExecBackend::with_memory_limit(&model, 1, 24_000, false).err().unwrap().render(false);
    assert!(text.contains("evaluating `tiny` with batch 1000"), "{text}");
    assert!(netc::run::ExecBackend::with_memory_limit(&model, 1, 1 << 30, true).is_ok());
}

/// `TINY` with dropout, so the chunks' randomness is part of what must agree.
fn tiny_with_dropout() -> String {
    TINY.replace("    relu\n", "    relu\n    dropout(0.2)\n")
}

/// Trains `model` as K processes (threads sharing a [`netc::train::parallel::threads::Group`])
/// with `chunks` chunks per batch; returns rank 0's run folder's weights and metrics.
fn train_shared(model: &netc::Model, data: &Data, out: &Path, k: usize, chunks: usize) -> (Vec<u8>, String) {
    use netc::train::parallel::{threads::Group, DataParallel};
    let group = Group::new(k);
    std::thread::scope(|s| {
        for rank in 0..k {
            let member = group.member(rank);
            s.spawn(move || {
                let options = options(out, data, false);
                let controls = netc::train::Controls {
                    parallel: Some(DataParallel { group: &member, chunks }),
                    ..Default::default()
                };
                let mut backend = netc::run::ExecBackend::new(model, 1).unwrap();
                netc::run::train_with(model, data, &mut backend, &options, controls, &mut |_: Event| {}).unwrap();
            });
        }
    });
    let folder = RunFolder::new(out);
    (std::fs::read(folder.weights()).unwrap(), std::fs::read_to_string(folder.metrics()).unwrap())
}

/// The metrics without the timing columns, which differ from run to run.
fn untimed(metrics: &str) -> Vec<String> {
    metrics.lines().map(|line| line.split(',').take(5).collect::<Vec<_>>().join(",")).collect()
}

#[test]
fn data_parallel_training_is_bitwise_the_same_for_one_to_four_processes() {
    let (dir, data_dir) = temp();
    let data = data(&data_dir);
    let model = model(&tiny_with_dropout());
    let (weights, metrics) = train_shared(&model, &data, &dir.path().join("k1"), 1, 4);
    assert!(untimed(&metrics).len() == 4, "{metrics}");
    for k in 2..=4 {
        let (other_weights, other_metrics) = train_shared(&model, &data, &dir.path().join(format!("k{k}")), k, 4);
        assert!(other_weights == weights, "{k} processes trained other weights than one");
        assert_eq!(untimed(&other_metrics), untimed(&metrics), "{k} processes");
    }
    // Another chunking sums in another order: a different (equally valid) run.
    let (two_chunks, _) = train_shared(&model, &data, &dir.path().join("c2"), 2, 2);
    assert!(two_chunks != weights);
}

#[test]
fn one_chunk_shared_by_one_process_is_ordinary_training() {
    let (dir, data_dir) = temp();
    let data = data(&data_dir);
    let model = model(&tiny_with_dropout());
    let (shared, shared_metrics) = train_shared(&model, &data, &dir.path().join("shared"), 1, 1);
    let plain = dir.path().join("plain");
    run_on(&mut netc::run::ExecBackend::new(&model, 1).unwrap(), &model, &data, &plain, false).unwrap();
    let folder = RunFolder::new(&plain);
    assert!(std::fs::read(folder.weights()).unwrap() == shared);
    assert_eq!(untimed(&std::fs::read_to_string(folder.metrics()).unwrap()), untimed(&shared_metrics));
}

#[test]
fn a_chunk_count_outside_processes_to_batch_is_refused_as_a_usage_error() {
    let (dir, data_dir) = temp();
    let data = data(&data_dir);
    let model = model(TINY);
    let group = netc::train::parallel::Alone;
    let options = options(&dir.path().join("run"), &data, false);
    let controls = netc::train::Controls {
        parallel: Some(netc::train::parallel::DataParallel { group: &group, chunks: 9 }),
        ..Default::default()
    };
    let mut backend = InterpBackend::new(&model).unwrap();
    let err = netc::run::train_with(&model, &data, &mut backend, &options, controls, &mut |_: Event| {}).unwrap_err();
    let message = err.render(false);
    assert!(message.contains("between 1 and 8 gradient chunks, not 9"), "{message}");
    assert!(message.contains("help: pass --grad-chunks N with 1 ≤ N ≤ 8"), "{message}");
    assert!(matches!(err, netc::Error::Usage { .. }), "{err:?}");
}
