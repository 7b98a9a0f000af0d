//! Every example net exported to ONNX with a batch of raw inputs and the logits netc's
//! interpreter computes for them, for the runtimes to be compared against.
//!
//! MNIST-shaped nets read the first test images of real MNIST when `NETC_DATA` is set (and
//! subtract the mean of its first training images), synthetic pixels otherwise; CIFAR-shaped
//! nets read synthetic pixels, their contrast normalisation and whitening learned from others.
//! Parameters come from each net's own initialisation, and with real MNIST also from a short
//! training run of LeNet, exported from its weights file as `netc export` does.

use netc::ir::{Mode, Tensor};
use netc::train::{Recipe, Samples, Statistics, Values};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Examples per batch.
pub const BATCH: usize = 64;
/// The largest difference from the interpreter's logits a runtime may have, as a share of the
/// logits' scale: absolute for logits below 1, relative to the largest logit above. Runtimes
/// compute in f32 in their own order, so their rounding grows with the values (CIFAR LeNet5's
/// logits reach 10 through its whitening and std-0.05 layers).
pub const TOLERANCE: f32 = 1e-5;

/// One exported net and what it must compute.
pub struct Case {
    pub name: String,
    pub onnx: Vec<u8>,
    /// `[BATCH, C, H, W]` (or the net's input shape after the batch).
    pub input_shape: Vec<usize>,
    /// The raw input, before preprocessing.
    pub input: Vec<f32>,
    /// The interpreter's logits, `BATCH × classes`.
    pub logits: Vec<f32>,
    pub classes: usize,
}

/// The cases, made once per test binary.
pub fn cases() -> &'static [Case] {
    static CASES: OnceLock<Vec<Case>> = OnceLock::new();
    CASES.get_or_init(make_cases)
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn example_nets() -> Vec<PathBuf> {
    let mut nets: Vec<PathBuf> = std::fs::read_dir(repository().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "net"))
        .collect();
    nets.sort();
    assert!(nets.len() >= 13, "expected every example net, found {}", nets.len());
    nets
}

/// Real MNIST, when `NETC_DATA` names a folder holding it; CI must set it.
fn real_mnist() -> Option<netc::run::Data> {
    match std::env::var_os("NETC_DATA") {
        Some(_) => {
            let request = netc::run::DataRequest { name: "mnist".into(), dir: None, format: None };
            Some(netc::run::Data::load(&request).unwrap_or_else(|e| panic!("{e}")))
        }
        None if std::env::var_os("CI").is_some() => panic!("CI must set NETC_DATA to a folder holding mnist/"),
        None => {
            eprintln!("ONNX exports checked on synthetic inputs: set NETC_DATA to a folder holding mnist/");
            None
        }
    }
}

/// `count` images of `len` pixels 0–255 from a fixed sequence.
fn synthetic_pixels(count: usize, len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..count * len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 56) as u8
        })
        .collect()
}

/// Training and test pixels for an input of `len` values: real MNIST's when it fits.
struct Pixels {
    train: Vec<u8>,
    test: Vec<u8>,
    /// Values per image.
    len: usize,
}

fn pixels(mnist: Option<&netc::run::Data>, len: usize) -> Pixels {
    let bytes = |set: &netc::data::Dataset, count: usize| match &set.images {
        netc::data::Values::Bytes(v) => v[..count * len].to_vec(),
        netc::data::Values::Floats(_) => panic!("MNIST's pixels are bytes"),
    };
    match mnist.filter(|data| data.set.test.image_len() == len) {
        Some(data) => Pixels { train: bytes(&data.set.train, 1000), test: bytes(&data.set.test, BATCH), len },
        None => Pixels { train: synthetic_pixels(40, len, 1), test: synthetic_pixels(BATCH, len, 2), len },
    }
}

/// What the recipe's preprocessing learns from the training pixels.
fn statistics(model: &netc::Model, pixels: &Pixels) -> Statistics {
    let len = pixels.len;
    let labels = vec![0u8; pixels.train.len() / len];
    let test_labels = vec![0u8; pixels.test.len() / len];
    let train = Samples { images: Values::Bytes(&pixels.train), labels: &labels, image_len: len };
    let test = Samples { images: Values::Bytes(&pixels.test), labels: &test_labels, image_len: len };
    Statistics::learn(Recipe::of(model.train()), &train, &test)
}

/// The interpreter's logits for raw `pixels` under `params` and `stats`.
fn interpreter_logits(model: &netc::Model, params: &[(String, Tensor)], stats: &Statistics, pixels: &[u8]) -> Vec<f32> {
    let len: usize = model.net().input.shape.iter().product();
    let count = pixels.len() / len;
    let mut inputs = vec![0f32; pixels.len()];
    netc::train::preprocess_all(
        Recipe::of(model.train()),
        stats,
        Values::Bytes(pixels),
        len,
        &mut inputs,
        &mut Vec::new(),
    );
    let mut shape = vec![count];
    shape.extend(&model.net().input.shape);
    let data = Tensor::new(shape, inputs).unwrap();
    let labels = Tensor::new(vec![count], vec![0.0; count]).unwrap();
    let program = netc::run::lower(model, Mode::Eval).unwrap();
    let feed = netc::interp::Feed { data: Some(&data), labels: Some(&labels), step: 0, params };
    let outputs = netc::interp::Interpreter::default().run(&program, &feed).unwrap();
    outputs.get(netc::ir::LOGITS).unwrap().data().to_vec()
}

fn case(name: String, model: &netc::Model, onnx: Vec<u8>, logits: Vec<f32>, pixels: &[u8]) -> Case {
    let mut input_shape = vec![BATCH];
    input_shape.extend(&model.net().input.shape);
    let input = pixels.iter().map(|&p| f32::from(p)).collect();
    Case { name, onnx, input_shape, input, logits, classes: model.net().loss.classes }
}

fn make_cases() -> Vec<Case> {
    let mnist = real_mnist();
    let mut cases = Vec::new();
    for path in example_nets() {
        let source = netc::Source::read(&path).unwrap();
        let model = netc::model(&source, &[], None).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let len: usize = model.net().input.shape.iter().product();
        let pixels = pixels(mnist.as_ref(), len);
        let stats = statistics(&model, &pixels);
        let program = netc::run::lower(&model, Mode::Eval).unwrap();
        let params = netc::run::init_params(&model, &program);
        let onnx = netc::run::onnx_model(&model, &params, &stats).unwrap_or_else(|e| panic!("{name}: {e}"));
        let logits = interpreter_logits(&model, &params, &stats, &pixels.test);
        cases.push(case(name.clone(), &model, onnx, logits, &pixels.test));
        if name == "lenet.net" {
            if let Some(data) = &mnist {
                cases.push(trained_lenet(&model, data, &pixels.test));
            }
        }
    }
    cases
}

/// LeNet after a short run on real MNIST, exported from its weights file: logits of the size a
/// trained net gives, and the mean image the run stored.
fn trained_lenet(model: &netc::Model, data: &netc::run::Data, test_pixels: &[u8]) -> Case {
    let mut model = model.clone();
    model.checked.train.epochs = 1;
    let dir = std::env::temp_dir().join(format!("netc-onnx-trained-lenet-{}", std::process::id()));
    let folder = netc::train::RunFolder::new(&dir);
    let options = netc::train::RunOptions {
        out: folder.clone(),
        resume: false,
        limit_train: Some(3000),
        limit_test: Some(100),
        validation: None,
        provenance: data.provenance(Path::new("lenet.net"), &[]),
    };
    let mut backend = netc::run::ExecBackend::new(&model, 2).unwrap();
    netc::run::train(&model, data, &mut backend, &options, &mut |_: netc::train::Event| {})
        .unwrap_or_else(|e| panic!("{e}"));
    let onnx = netc::run::export_onnx(&model, &folder.weights()).unwrap_or_else(|e| panic!("{e}"));
    let expected: Vec<(String, Vec<usize>)> = netc::train::param_shapes(model.net());
    let needs = Recipe::of(model.train()).needs(test_pixels.len() / BATCH);
    let saved = netc::train::checkpoint::load_model(&folder.weights(), &expected, needs).unwrap();
    let logits = interpreter_logits(&model, &saved.params, &saved.stats, test_pixels);
    std::fs::remove_dir_all(&dir).unwrap();
    case("lenet.net (trained)".into(), &model, onnx, logits, test_pixels)
}
