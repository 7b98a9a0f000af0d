//! The text form of the forward and gradient programs of every example in `examples/` and of
//! a few hand-written nets that exercise the remaining layers, as insta snapshots; each text reads
//! back to the program it was printed from.

use netc_ir::{grad, Mode};
use netc_lower::{lower, LowerOptions};

fn snapshot_net(name: &str, src: &str, mode: Mode) {
    let file = netc_syntax::parse(src).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let checked =
        netc_check::check(&file, &[]).unwrap_or_else(|e| panic!("{}", netc_syntax::render(&e, name, src, false)));
    for net in &checked.nets {
        let forward = lower(net, LowerOptions { mode, seed: 0 }).unwrap().with_source_lines(src);
        let backward = grad(&forward).unwrap();
        let suffix = if mode == Mode::Eval { "_eval" } else { "" };
        for program in [&forward, &backward] {
            let text = program.to_string();
            let parsed = netc_ir::parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(parsed.to_string(), text, "{name}: the text reads back to the same text");
            assert!(parsed == *program, "{name}: the text reads back to the same program");
        }
        insta::assert_snapshot!(format!("{name}{suffix}_forward"), forward.to_string());
        insta::assert_snapshot!(format!("{name}{suffix}_grad"), backward.to_string());
    }
}

#[test]
fn examples() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.retain(|p| p.extension().is_some_and(|e| e == "net"));
    paths.sort();
    assert!(!paths.is_empty(), "no examples in {}", dir.display());
    for path in paths {
        let src = std::fs::read_to_string(&path).unwrap();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("example");
        snapshot_net(stem, &src, Mode::Train);
    }
}

const LAYERS: &str = "net layers {
  input x: [2, 6, 6]
  conv(4, k=3, pad=1, bias=false)
  leaky_relu(alpha=0.2)
  avgpool(2, stride=2, pad=1)
  a = softneglu
  b = sigmoid from a
  c = concat(a, b)
  dropout(p=0.25)
  mixlu(negfrac=0.25, per=position, grad=relu)
  flatten
  dense(6)
  mix(relu=0.5, neglu=0.25, tanh=0.25, mask=resample)
  dense(3)
  loss softmax_xent(classes=3)
}";

#[test]
fn remaining_layers_in_training() {
    snapshot_net("layers", LAYERS, Mode::Train);
}

#[test]
fn remaining_layers_in_evaluation() {
    snapshot_net("layers", LAYERS, Mode::Eval);
}
