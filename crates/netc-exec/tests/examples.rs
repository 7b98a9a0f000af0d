//! The executor agrees with the reference interpreter on every example net, forward and
//! backward, in training and evaluation mode.

mod common;

use common::{assert_bitwise, assert_close, case, example};
use netc_ir::Mode;

const REL: f32 = 1e-4;
const ABS: f32 = 1e-5;

fn check_example(file: &str, src: &str) {
    for (batch, seed, threads) in [(2, 1, 1), (3, 2, 2)] {
        let train = case(src, Mode::Train, true, batch, seed);
        let want = train.interpret();
        let got = train.execute(threads);
        assert_close(&format!("{file} train batch {batch}"), &got, &want, REL, ABS);
        let eval = case(src, Mode::Eval, false, batch, seed);
        assert_close(&format!("{file} eval batch {batch}"), &eval.execute(threads), &eval.interpret(), REL, ABS);
        // The textual IR loses nothing: the program read back from it computes the same bits.
        let context = format!("{file} train, read back from its text");
        assert_bitwise(&context, &train.reparsed(&context).execute(threads), &got);
        let context = format!("{file} eval, read back from its text");
        assert_bitwise(&context, &eval.reparsed(&context).execute(threads), &eval.execute(threads));
    }
}

#[test]
fn every_example_net_matches_the_interpreter() {
    let dir = format!("{}/../../examples", env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("the examples folder")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".net"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    for file in files {
        check_example(&file, &example(&file));
    }
}

#[test]
fn resampled_masks_and_dropout_match_the_interpreter() {
    let mixlu = example("mixlu_lenet.net")
        .replace("mixlu(negfrac=negfrac, mask=mask, grad=grad)", "mixlu(negfrac=0.3, mask=resample)");
    assert!(mixlu.contains("resample"));
    check_example("mixlu_lenet.net (resampled)", &mixlu);
    let dropout = example("mlp.net").replace("relu\n", "relu\n    dropout(p=0.4)\n");
    assert!(dropout.contains("dropout"));
    check_example("mlp.net (dropout)", &dropout);
}

#[test]
fn batches_split_into_many_tasks_match_the_interpreter() {
    // LeNet at batch 20: several tasks per convolution, a shared im2col matrix across them.
    let c = case(&example("lenet.net"), Mode::Train, true, 20, 3);
    assert_close("lenet batch 20", &c.execute(2), &c.interpret(), REL, ABS);
    // A padded convolution with a single output position, at a batch large enough for
    // several chunks of its (shared) im2col matrix.
    let src = "net t {\n input x: [3, 3, 3]\n conv(4, k=3, stride=3, pad=1)\n relu\n dense(2)\n loss softmax_xent(classes=2)\n}";
    let c = case(src, Mode::Train, true, 600, 4);
    assert_close("1x1 output, batch 600", &c.execute(2), &c.interpret(), REL, ABS);
}

#[test]
fn chains_reading_more_values_than_a_kernel_holds_are_split_and_still_agree() {
    // Twenty branches summed by a chain of adds: one elementwise chain reading twenty stored
    // values, more than one fused kernel takes.
    let mut lines = vec!["input x: [5]".to_string()];
    for i in 0..20 {
        lines.push(format!("b{i} = dense(4) from x"));
    }
    lines.push("s1 = add(b0, b1)".to_string());
    for i in 2..20 {
        lines.push(format!("s{i} = add(s{}, b{i})", i - 1));
    }
    lines.push("tanh".to_string());
    lines.push("loss softmax_xent(classes=4)".to_string());
    let src = format!("net sum {{\n    {}\n}}\n", lines.join("\n    "));
    let train = case(&src, Mode::Train, true, 3, 5);
    assert_close("sum of twenty branches", &train.execute(2), &train.interpret(), REL, ABS);

    let text = netc_exec::describe(&train.program).unwrap();
    let fused = text.lines().filter(|l| l.contains("fused#") && l.contains(" = fused")).count();
    assert!(fused >= 3, "the chain is split over several kernels:\n{text}");
}
