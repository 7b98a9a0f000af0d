//! Random small nets with odd sizes agree with the reference interpreter, forward and
//! backward, at random batch sizes and thread counts; their programs read back from their text
//! form compute the same bits.

mod common;

use common::{assert_bitwise, assert_close, case};
use netc_ir::Mode;
use proptest::prelude::*;

/// A net built from `choices`: each picks a layer that fits the current shape (layers that
/// would not fit are skipped), then a dense classifier and the loss.
fn net_source(channels: usize, h: usize, w: usize, choices: &[u32], classes: usize) -> String {
    let mut lines = vec![format!("input x: [{channels}, {h}, {w}]")];
    // (channels, height, width), or None once flattened by a dense layer.
    let mut shape = Some((channels, h, w));
    for &v in choices {
        let pick = |n: u32, by: u32| (v / by % n) as usize;
        let layer = match (v % 10, shape) {
            (0 | 8 | 9, Some((_, h, w))) => {
                let out = [3, 5, 7][pick(3, 8)];
                let (kh, kw, stride, pad) = (1 + pick(3, 24), 1 + pick(3, 72), 1 + pick(2, 216), pick(2, 432));
                if kh > h + 2 * pad || kw > w + 2 * pad {
                    continue;
                }
                let (ho, wo) = ((h + 2 * pad - kh) / stride + 1, (w + 2 * pad - kw) / stride + 1);
                shape = Some((out, ho, wo));
                format!("conv({out}, k=[{kh}, {kw}], stride={stride}, pad={pad})")
            }
            (1 | 2, Some((c, h, w))) => {
                let (k, stride) = (2 + pick(2, 8), 1 + pick(2, 16));
                let pad = pick(2, 32).min(k - 1);
                if k > h + 2 * pad || k > w + 2 * pad {
                    continue;
                }
                shape = Some((c, (h + 2 * pad - k) / stride + 1, (w + 2 * pad - k) / stride + 1));
                let kind = if v % 10 == 1 { "maxpool" } else { "avgpool" };
                format!("{kind}({k}, stride={stride}, pad={pad})")
            }
            (3, _) => {
                ["relu", "tanh", "sigmoid", "leaky_relu(alpha=0.1)", "neglu", "softneglu"][pick(6, 8)].to_string()
            }
            (4, _) => match pick(4, 8) {
                0 => "mixlu(negfrac=0.3, mask=fixed)".to_string(),
                1 => "mixlu(negfrac=0.3, mask=resample)".to_string(),
                // Per-position masks broadcast differently from a bias: fusion must not merge them.
                2 => "mix(relu=0.5, neglu=0.25, tanh=0.25, per=position)".to_string(),
                _ => "mix(relu=0.4, softneglu=0.3, leaky_relu=0.3, mask=resample)".to_string(),
            },
            (5, _) => "dropout(0.3)".to_string(),
            (6, Some(_)) => format!("convact(k={})", [1, 3][pick(2, 8)]),
            (7, _) => {
                shape = None;
                format!("dense({})", 3 + pick(5, 8))
            }
            _ => continue,
        };
        lines.push(layer);
    }
    lines.push(format!("dense({classes})"));
    lines.push(format!("loss softmax_xent(classes={classes})"));
    format!("net random {{\n    {}\n}}\n", lines.join("\n    "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_nets_match_the_interpreter(
        channels in prop::sample::select(vec![1usize, 3, 5, 7]),
        h in 5usize..=11,
        w in 5usize..=11,
        choices in prop::collection::vec(any::<u32>(), 1..7),
        classes in 2usize..=5,
        batch in 1usize..=5,
        threads in 1usize..=3,
        seed in 0u64..1000,
    ) {
        let src = net_source(channels, h, w, &choices, classes);
        for (mode, grad) in [(Mode::Train, true), (Mode::Eval, false)] {
            let c = case(&src, mode, grad, batch, seed);
            let context = format!("{src}\n{mode:?}, batch {batch}, {threads} threads");
            let got = c.execute(threads);
            assert_close(&context, &got, &c.interpret(), 1e-4, 1e-5);
            let context = format!("{context}, read back from its text");
            assert_bitwise(&context, &c.reparsed(&context).execute(threads), &got);
        }
    }
}
