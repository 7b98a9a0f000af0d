//! What the fusion pass makes of every example (insta snapshots of `describe`, the text
//! `netc ir --fused` prints), and the fusions the executor's speed relies on.

use netc_ir::{grad, Mode, Program};
use netc_lower::{lower, LowerOptions};

fn training_program(src: &str) -> Program {
    let checked = netc_check::check(&netc_syntax::parse(src).unwrap(), &[]).unwrap();
    grad(&lower(&checked.nets[0], LowerOptions { mode: Mode::Train, seed: 0 }).unwrap().with_source_lines(src)).unwrap()
}

fn example(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The step lines of a description.
fn steps(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.trim_start().starts_with('k')).collect()
}

#[test]
fn every_example_fuses_as_snapshotted() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.retain(|p| p.extension().is_some_and(|e| e == "net"));
    paths.sort();
    assert!(!paths.is_empty(), "no examples in {}", dir.display());
    for path in paths {
        let src = std::fs::read_to_string(&path).unwrap();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("example");
        let text = netc_exec::describe(&training_program(&src)).unwrap();
        insta::assert_snapshot!(format!("{stem}_fused"), text);
    }
}

#[test]
fn a_mixlu_layer_is_one_kernel_forward_and_one_backward() {
    // The fixed reading (the example resamples by default).
    let src = example("mixlu_lenet.net").replace("mask = resample", "mask = fixed");
    assert!(src.contains("mask = fixed"));
    let text = netc_exec::describe(&training_program(&src)).unwrap();
    let mixlu: Vec<&str> = steps(&text).into_iter().filter(|l| l.contains("# mixlu1")).collect();
    assert_eq!(mixlu.len(), 2, "{text}");
    for line in &mixlu {
        assert!(line.contains("fused#") && line.contains("select") && line.contains("[rows of 500]"), "{line}");
    }
    // The NegLU is the prelude's `min(x, 0)`; its derivative selects where `x < 0`.
    assert!(mixlu[0].contains("relu %") && mixlu[0].contains("min %"), "{}", mixlu[0]);
    assert!(mixlu[1].contains("relu_deriv") && mixlu[1].contains("lt %"), "{}", mixlu[1]);
    // The fixed mask is read per column where it is used, never broadcast into memory.
    assert!(!text.contains("= broadcast"), "{text}");
}

#[test]
fn a_user_unit_is_one_kernel_forward_and_one_backward() {
    let units = [
        ("prelu.net", "prelu1"),
        ("swish.net", "swish1"),
        ("flip_neglu.net", "mix1"),
        ("noisy_relu.net", "noisy_relu1"),
    ];
    for (name, unit) in units {
        let text = netc_exec::describe(&training_program(&example(name))).unwrap();
        let steps: Vec<&str> = steps(&text).into_iter().filter(|l| l.contains(&format!("# {unit} "))).collect();
        let fused: Vec<&&str> = steps.iter().filter(|l| l.contains("fused#")).collect();
        assert_eq!(fused.len(), 2, "{name}: {steps:#?}");
        assert!(!text.contains("stop_gradient") && !text.contains("custom_grad"), "{name}");
    }
    // A learned parameter's elementwise gradient is the backward kernel's second result, which
    // a reduction sums per channel; Swish's forward kernel also stores its `sigmoid(βx)`.
    for (name, unit, kernel) in [("prelu.net", "prelu1", 1), ("swish.net", "swish1", 0), ("swish.net", "swish1", 1)] {
        let text = netc_exec::describe(&training_program(&example(name))).unwrap();
        let line =
            steps(&text).into_iter().filter(|l| l.contains(&format!("# {unit} ")) && l.contains("fused#")).nth(kernel);
        let stored = line.and_then(|l| l.split(": [").next()).unwrap_or_default();
        assert_eq!(stored.matches('%').count(), 2, "{name}: {line:?}");
    }
}

#[test]
fn gemm_bias_and_activation_fuse_into_the_gemm() {
    let src = example("lenet.net");
    let checked = netc_check::check(&netc_syntax::parse(&src).unwrap(), &[]).unwrap();
    let eval = lower(&checked.nets[0], LowerOptions { mode: Mode::Eval, seed: 0 }).unwrap().with_source_lines(&src);
    let text = netc_exec::describe(&eval).unwrap();
    let fused: Vec<&str> = steps(&text).into_iter().filter(|l| l.contains("+bias +relu ")).collect();
    assert_eq!(fused.len(), 1, "{text}");
    assert!(fused[0].contains("= conv2d %") && fused[0].contains("[N,500,1,1]"), "{}", fused[0]);
    assert!(!text.contains("fused#"), "an inference LeNet needs no elementwise kernel:\n{text}");

    // Training also needs the biased product, for the ReLU's derivative: the GEMM stores it
    // beside the ReLU (`+pre`), and the backward kernel (the derivative times the incoming
    // gradient) reads it from there.
    let text = netc_exec::describe(&training_program(&src)).unwrap();
    let conv3: Vec<&str> =
        steps(&text).into_iter().filter(|l| l.contains("= conv2d %") && l.contains("+relu")).collect();
    assert_eq!(conv3.len(), 1, "{text}");
    let pre = conv3[0].split("+bias +relu +pre ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or_default();
    assert!(pre.starts_with('%'), "{}", conv3[0]);
    let relu_back = steps(&text).into_iter().find(|l| l.contains("relu_deriv")).unwrap();
    assert!(relu_back.contains("fused#") && relu_back.contains("mul"), "{relu_back}");
    assert!(relu_back.contains(&format!(", {pre} [")), "{relu_back} does not read {pre}");
    assert!(!steps(&text).iter().any(|l| l.contains("{ relu %")), "a ReLU kernel of its own is left:\n{text}");
}

#[test]
fn identical_chains_share_one_compiled_kernel() {
    let src = "net twice {
  input x: [6]
  dense(5)
  tanh
  dense(5)
  tanh
  dense(2)
  loss softmax_xent(classes=2)
}";
    let text = netc_exec::describe(&training_program(src)).unwrap();
    // The forward tanh is each product's epilogue, which keeps the pre-activation for the
    // backward kernels: two of them, one compiled kernel.
    let forward: Vec<&str> =
        steps(&text).into_iter().filter(|l| l.contains("= matmul %") && l.contains("+tanh +pre %")).collect();
    let backward: Vec<&str> = steps(&text).into_iter().filter(|l| l.contains("tanh_deriv")).collect();
    assert_eq!((forward.len(), backward.len()), (2, 2), "{text}");
    let kernel_of = |line: &str| line.split("fused#").nth(1).and_then(|r| r.split(' ').next()).map(str::to_string);
    assert!(kernel_of(backward[0]).is_some(), "{text}");
    assert_eq!(kernel_of(backward[0]), kernel_of(backward[1]), "{text}");
    assert!(text.contains("2 fused elementwise, compiled as 1 distinct"), "{text}");
}

#[test]
fn each_convolution_bias_gradient_is_summed_by_its_filter_gradient() {
    let text = netc_exec::describe(&training_program(&example("lenet.net"))).unwrap();
    let filters: Vec<&str> = steps(&text).into_iter().filter(|l| l.contains("= conv2d_bwd_filter ")).collect();
    assert_eq!(filters.len(), 4, "{text}");
    for line in &filters {
        assert!(line.contains(" +bias_grad %"), "{line}");
    }
    assert!(!text.contains("reduce_sum"), "no separate bias reduction is left:\n{text}");
    // ConvAct's depthwise activation convolutions have no bias: nothing to fuse there.
    let text = netc_exec::describe(&training_program(&example("convact.net"))).unwrap();
    let with_bias = steps(&text).into_iter().filter(|l| l.contains(" +bias_grad %")).count();
    assert_eq!(with_bias, 4, "{text}");
}

#[test]
fn convacts_two_halves_are_one_convolution_step_forward_and_one_per_gradient() {
    let text = netc_exec::describe(&training_program(&example("convact.net"))).unwrap();
    let lines = steps(&text);
    let reads = |line: &str, kernel: &str| {
        let args = line.split(&format!(" = {kernel} ")).nth(1).and_then(|r| r.split(" +").next()).unwrap_or("");
        args.split(", ").count()
    };
    // One step per ConvAct layer for each: the sum reads both halves and both filters; each
    // gradient pair reads `dy` once, with both filters or both halves.
    for (kernel, marker, operands) in
        [("conv2d", " +sum of %", 4), ("conv2d_bwd_data", " +second %", 3), ("conv2d_bwd_filter", " +second %", 3)]
    {
        let pairs: Vec<&&str> =
            lines.iter().filter(|l| l.contains(&format!(" = {kernel} ")) && l.contains(marker)).collect();
        assert_eq!(pairs.len(), 3, "{kernel}:\n{text}");
        for line in pairs {
            assert_eq!(reads(line, kernel), operands, "{line}");
        }
    }
    assert!(!text.contains("{ add %"), "no separate addition of the halves is left:\n{text}");
}
