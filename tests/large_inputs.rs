//! Inputs far larger than any real net: a chain of 50,000 layers goes through every stage on a
//! thread with the default 2 MiB stack of a test thread (nothing recurses once per layer), and a
//! `.net` file is bounded in size before it is read whole.

use netc::ir::Mode;
use netc::run::backend::ExecBackend;
use netc::train::Backend;
use std::io::Write;

/// Runs `f` on a thread with a 2 MiB stack, the default of a spawned thread.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(2 << 20).spawn(f).unwrap().join().unwrap();
}

#[test]
fn a_chain_of_fifty_thousand_layers_checks_lowers_differentiates_fuses_and_trains_a_step() {
    on_small_stack(|| {
        let layers = 50_000;
        let mut text = String::from("net long { input x: [16]\n dense(8)\n");
        for _ in 0..layers {
            text.push_str(" relu\n");
        }
        text.push_str(" dense(2)\n loss softmax_xent(classes=2) }\ntrain { batch = 2 }\n");
        let model = netc::model(&netc::Source::new("long.net", text), &[], None).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(model.net().layers.len(), layers + 2);
        let grad = netc::run::compile(&model, Mode::Train, true).unwrap();
        assert!(grad.insts().len() > 2 * layers, "{}", grad.insts().len());
        let fused = netc::run::fused_text(&model, true).unwrap();
        assert!(fused.lines().count() > 2 * layers / 256, "the chains are cut into kernels of bounded depth");

        let mut backend = ExecBackend::new(&model, 1).unwrap();
        let params = backend.initial_params();
        let mut grads: Vec<Vec<f32>> = params.iter().map(|(_, p)| vec![0.0; p.len()]).collect();
        let images: Vec<f32> = (0..32).map(|i| (i as f32 * 0.37).sin()).collect();
        let result = backend.train_step(&params, &images, &[0, 1], 0, &mut grads).unwrap();
        assert!(result.loss.is_finite() && result.loss > 0.0, "{}", result.loss);
        assert!(grads.iter().flatten().all(|g| g.is_finite()));
        // The last dense layer's weight gradient reads the chain's output.
        assert_eq!(grads.len(), 4);
    });
}

#[test]
fn a_source_file_over_the_size_limit_is_refused_before_it_is_read_whole() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let net = "net n { input x: [4]\n dense(2)\n loss softmax_xent(classes=2) }\n";
    let copies = netc::MAX_SOURCE_BYTES as usize / net.len() + 1;
    for _ in 0..copies {
        file.write_all(net.as_bytes()).unwrap();
    }
    let size = (copies * net.len()) as u64;
    let err = netc::Source::read(file.path()).unwrap_err();
    let message = err.render(false);
    assert!(
        message.contains(&format!("is {size} bytes, more than a .net source may be ({} bytes", netc::MAX_SOURCE_BYTES)),
        "{message}"
    );
    assert!(matches!(err, netc::Error::Io(_)));
}

#[test]
fn a_file_of_thousands_of_small_nets_checks_and_only_the_chosen_one_is_compiled() {
    let count = 3000;
    let mut text = String::new();
    for i in 0..count {
        text.push_str(&format!(
            "net n{i}(width = {}) {{ input x: [4]\n dense(width)\n relu\n dense(2)\n loss softmax_xent(classes=2) }}\n",
            1 + i % 7
        ));
    }
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    let source = netc::Source::read(file.path()).unwrap();
    let model = netc::model(&source, &[], Some("n2999")).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(model.net().name, "n2999");
    let program = netc::run::compile(&model, Mode::Eval, false).unwrap();
    // Only n2999's layers: its dense layers are 4 → 4 → 2 wide (width = 1 + 2999 mod 7).
    let sizes: Vec<usize> = program.params().iter().map(|p| p.shape.iter().product()).collect();
    assert_eq!(sizes, [16, 4, 8, 2]);
}

/// A fuzzer's find: blocks that expand to 98,304 layers, just under the limit, check and
/// summarise (expanded) on a small stack; the work is bounded by the layer limit.
#[test]
fn blocks_expanding_to_just_under_the_layer_limit_check_and_summarise() {
    on_small_stack(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/large/blocks_under_the_limit.net");
        let source = netc::Source::read(std::path::Path::new(path)).unwrap();
        let model = netc::model(&source, &[], None).unwrap_or_else(|e| panic!("{}", e.render(false)));
        // The block tree's relus, the dense layer: the loss is not a layer.
        assert_eq!(model.net().layers.len(), 98_304 + 1);
        assert!(netc::check::MAX_LAYERS >= model.net().layers.len());
        let summary = netc::check::summary(model.net(), true);
        assert!(summary.lines().count() > 98_304, "every layer has its row");
    });
}

/// Blocks `b1`…`bN`, each using the one below ten times: `bN` is 10^N uses of `b0`.
fn nested_uses(b0_body: &str, levels: usize) -> String {
    let mut text = format!("block b0 {{ input x\n {b0_body}\n }}\n");
    for level in 1..=levels {
        text.push_str(&format!("block b{level} {{ input x\n{}}}\n", format!(" b{}\n", level - 1).repeat(10)));
    }
    text + &format!(
        "net m {{ input image: [1, 28, 28]\n b{levels}\n conv(10, k=28)\n loss softmax_xent(classes=10) }}\n"
    )
}

#[test]
fn a_mistake_in_a_block_used_a_hundred_thousand_times_is_reported_once() {
    let source = netc::Source::new("nested.net", nested_uses("conv(0, k=3)", 5));
    let err = netc::model(&source, &[], None).unwrap_err();
    let message = err.render(false);
    assert_eq!(message.matches("error[").count(), 1, "{message}");
    assert!(message.contains("in this use of the block `b5`"), "{message}");
    assert!(message.len() < 4000, "{} bytes", message.len());
}

#[test]
fn a_warning_in_a_block_used_ten_thousand_times_is_reported_once() {
    let source = netc::Source::new("nested.net", nested_uses("conv(1, k=1)\n mixlu(0.5, mask=fixed)", 4));
    let model = netc::model(&source, &[], None).unwrap_or_else(|e| panic!("{e:?}"));
    let warnings = &model.checked.warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let more = "note: and 9999 more layers from this line, through the uses of its block";
    assert!(warnings[0].notes.iter().any(|n| n == more), "{:?}", warnings[0].notes);
}

#[test]
fn blocks_nested_ten_thousand_deep_stop_at_the_name_limit_with_one_error() {
    // Unbounded, the names alone would take 10,000 levels × 100,000 layers of memory.
    let mut text = String::new();
    for level in 0..10_000 {
        text.push_str(&format!("block c{level} {{ input x\n c{} }}\n", level + 1));
    }
    text.push_str("block c10000 { input x\n relu }\n");
    text.push_str("net m { input image: [1, 8, 8]\n c0\n dense(2)\n loss softmax_xent(classes=2) }\n");
    let err = netc::model(&netc::Source::new("deep.net", text), &[], None).unwrap_err();
    let message = err.render(false);
    assert_eq!(message.matches("error[").count(), 1, "{message}");
    assert!(message.contains("error[E0219]: the layer `c01.c11."), "{message}");
    assert!(message.contains(&format!("more than {}", netc::check::MAX_NAME_BYTES)), "{message}");
}
