//! A training step as the trainer drives it (batch assembly, preprocessing, the compiled
//! executor's forward and backward pass, the optimizer update, sign projection and the
//! epoch's tally) allocates nothing once its batch size has been seen: a counting global
//! allocator watches.

#[path = "../crates/netc-exec/tests/support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations_during;
use netc::run::ExecBackend;
use netc::train::{epoch_order, Backend, Recipe, Samples, Slot, State, Statistics, Stepper, Values};
use std::path::Path;

fn example(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name)).unwrap()
}

/// Allocations (on any thread) during `steps` training steps after a warm-up step, and the
/// step count the state reached.
fn steady_state_allocations(
    src: &str,
    optimizer: Option<netc::check::Optimizer>,
    threads: usize,
    steps: usize,
) -> (usize, u64) {
    let mut model = netc::model(&netc::Source::new("example.net", src), &[], None).unwrap();
    model.checked.train.batch = 16;
    if let Some(optimizer) = optimizer {
        model.checked.train.optimizer = optimizer;
    }
    let config = model.train().clone();
    let mut backend = ExecBackend::new(&model, threads).unwrap();
    let image_len: usize = model.net().input.shape.iter().product();
    let count = config.batch * (steps + 1);
    let images: Vec<u8> = (0..count * image_len).map(|i| (i * 37 % 251) as u8).collect();
    let labels: Vec<u8> = (0..count).map(|i| (i * 7 % model.net().loss.classes) as u8).collect();
    let samples = Samples { images: Values::Bytes(&images), labels: &labels, image_len };
    let params = backend.initial_params();
    let slots = params.iter().map(|(_, p)| Slot::new(&config.optimizer, p.len())).collect();
    let stats = Statistics::learn(Recipe::of(&config), &samples, &samples.take(0));
    let mut state = State { params, slots, epoch: 0, step: 0, stats, within: Default::default() };
    let mut stepper = Stepper::new(backend.params(), config.batch, &model.net().input.shape, model.net().loss.span);
    let order = epoch_order(count, config.seed, 0);
    let mut chunks = order.chunks(config.batch);
    let lr = config.lr_at(0);
    let first = chunks.next().unwrap();
    stepper.step(&mut backend, &config, &mut state, &samples, first, lr, None, false).expect("warm-up step");
    let allocations = allocations_during(|| {
        for chunk in chunks {
            stepper.step(&mut backend, &config, &mut state, &samples, chunk, lr, None, false).expect("step");
        }
    });
    assert_eq!(stepper.tally().seen, count);
    (allocations, state.step)
}

#[test]
fn the_trainers_steady_state_step_does_not_allocate() {
    // One test function: the counter is global, so nothing else may run concurrently.
    let adam = netc::check::Optimizer::Adam { lr: 0.001, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0005 };
    let cases = [
        ("lenet (mean image, compiled SGD)", example("lenet.net"), None),
        ("dale (sign projection)", example("dale.net"), None),
        ("mixlu lenet (Adam)", example("mixlu_lenet.net"), Some(adam)),
    ];
    for (name, src, optimizer) in cases {
        for threads in [1, 2] {
            let (n, steps) = steady_state_allocations(&src, optimizer.clone(), threads, 20);
            assert_eq!(steps, 21, "{name}");
            assert_eq!(n, 0, "{name} with {threads} threads: {n} allocations in 20 steps");
        }
    }
}
