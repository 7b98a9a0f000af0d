//! What an export holds (opset, names from the net's layers, netc's pooling semantics) and
//! the errors of what cannot be exported, each naming its layer.

use netc::ir::{Builder, Input, InputKind, Mode, Op, OutputKind, Shape, Source, Span, Tensor, UnaryFn};
use netc_onnx::onnx::{AttributeProto, ModelProto, NodeProto};
use netc_onnx::{ExportError, Preprocess};
use std::path::Path;

fn example(name: &str) -> netc::Model {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name);
    netc::model(&netc::Source::read(&path).unwrap(), &[], None).unwrap()
}

fn export(model: &netc::Model, preprocess: &[Preprocess]) -> Result<ModelProto, ExportError> {
    let program = netc::run::lower(model, Mode::Eval).unwrap();
    netc_onnx::model(&program, &netc::run::init_params(model, &program), preprocess)
}

fn attribute<'a>(node: &'a NodeProto, name: &str) -> &'a AttributeProto {
    node.attribute.iter().find(|a| a.name == name).unwrap_or_else(|| panic!("{} has no {name}", node.name))
}

#[test]
fn names_come_from_the_net_and_the_opset_is_stated() {
    let model = example("lenet.net");
    let mean = Tensor::full(vec![1, 28, 28], 33.0);
    let onnx = export(&model, &[Preprocess::SubtractMean(mean)]).unwrap();
    assert_eq!((onnx.ir_version, onnx.opset_import[0].version), (netc_onnx::IR_VERSION, netc_onnx::OPSET));
    assert_eq!(netc_onnx::OPSET, 17);
    let graph = onnx.graph.unwrap();
    assert_eq!(graph.input.len(), 1);
    assert_eq!((graph.input[0].name.as_str(), graph.output[0].name.as_str()), ("image", "logits"));
    let nodes: Vec<&str> = graph.node.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(
        nodes,
        [
            "preprocess/Sub",
            "conv1/Conv",
            "maxpool1/MaxPool",
            "conv2/Conv",
            "maxpool2/MaxPool",
            "conv3/Conv",
            "relu1/Relu",
            "conv4/Conv",
            "loss/Reshape"
        ]
    );
    // The convolutions add their biases themselves.
    assert_eq!(graph.node[1].input, ["preprocess/Sub", "conv1.weight", "conv1.bias"]);
    let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    assert!(
        initializers.contains(&"preprocess.mean_image") && initializers.contains(&"conv4.bias"),
        "{initializers:?}"
    );
}

#[test]
fn average_pooling_counts_padding_as_netc_does() {
    let model = example("lenet5_cifar.net");
    let steps = [
        Preprocess::SubtractMean(Tensor::zeros(vec![3, 32, 32])),
        Preprocess::ContrastNorm { mean_norm: 50.0, min_norm: 40.0 },
        Preprocess::Whiten(Tensor::zeros(vec![3072, 3072])),
    ];
    let graph = export(&model, &steps).unwrap().graph.unwrap();
    let pools: Vec<&NodeProto> = graph.node.iter().filter(|n| n.op_type == "AveragePool").collect();
    assert_eq!(pools.len(), 2);
    for pool in pools {
        assert_eq!(attribute(pool, "count_include_pad").i, 1, "{}", pool.name);
        // cnn_cifar's [0 1 0 1] in ONNX's order: both axes' starts, then their ends.
        assert_eq!(attribute(pool, "pads").ints, [0, 0, 1, 1], "{}", pool.name);
        assert_eq!(attribute(pool, "kernel_shape").ints, [3, 3], "{}", pool.name);
    }
    assert!(graph.initializer.iter().any(|t| t.name == "preprocess.whitening" && t.dims == [3072, 3072]));
}

#[test]
fn random_numbers_are_an_error_naming_their_layer() {
    // The training program of noisy_relu draws noise; read as an evaluation program, it is one
    // that still does.
    let model = example("noisy_relu.net");
    let text = netc::run::ir_text(&model, false).unwrap().replacen("(train) {", "(eval) {", 1);
    let program = netc::ir::parse(&text).unwrap();
    let params = netc::run::init_params(&model, &program);
    let error = netc_onnx::model(&program, &params, &[]).unwrap_err();
    assert_eq!(error.source.as_ref().map(|s| s.name.as_str()), Some("noisy_relu1"));
    assert_eq!(
        error.to_string(),
        "cannot export `noisy_relu1` to ONNX: `random_normal` draws random numbers, which an exported model \
         cannot; export the evaluation-mode program"
    );
}

#[test]
fn training_programs_backward_passes_and_missing_values_are_errors() {
    let model = example("mlp.net");
    let train = netc::run::lower(&model, Mode::Train).unwrap();
    let error = netc_onnx::model(&train, &netc::run::init_params(&model, &train), &[]).unwrap_err();
    assert!(error.to_string().contains("lowered for training"), "{error}");

    // An op of a backward pass, where only a hand-built program can put it.
    let mut b = Builder::new("derivative", Mode::Eval);
    let input = Input { name: "x".into(), kind: InputKind::Data, shape: Shape::batched(&[3]) };
    let x = b.push(Op::Input(input), &[]).unwrap();
    b.set_source(Source::new("relu1", Some(0), Span::new(0, 4)));
    let derivative = b.push(Op::Unary(UnaryFn::ReluDeriv), &[x]).unwrap();
    b.output("logits", OutputKind::Logits, derivative).unwrap();
    let error = netc_onnx::model(&b.finish(), &[], &[]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot export `relu1` to ONNX: `relu_deriv` belongs to a backward pass; export takes a forward program"
    );

    let eval = netc::run::lower(&model, Mode::Eval).unwrap();
    let error = netc_onnx::model(&eval, &[], &[]).unwrap_err();
    assert_eq!(error.source.as_ref().map(|s| s.name.as_str()), Some("dense1"));
    assert!(error.message.contains("`dense1.weight`"), "{error}");

    let params = netc::run::init_params(&model, &eval);
    let error = netc_onnx::model(&eval, &params, &[Preprocess::SubtractMean(Tensor::zeros(vec![10]))]).unwrap_err();
    assert_eq!(error.to_string(), "cannot export to ONNX: the mean image has 10 values, but the net's input has 784");
}
