//! User-defined units on the compiled executor compute the interpreter's bits: a random unit's
//! fused kernel (pure SIMD code, or calls back to Rust for transcendental functions) against the
//! reference interpreter, forward bit for bit, and with its backward pass at every thread count.

mod common;
#[path = "../../netc-interp/tests/common/unit_exprs.rs"]
mod unit_exprs;

use common::{assert_bitwise, assert_close, case};
use netc_ir::Mode;
use proptest::prelude::*;
use unit_exprs::expression;

/// The unit applied to the input directly: the logits are the unit's values.
fn unit_net(body: &str) -> String {
    format!("unit u(alpha = learned(0.7)) = {body}\nnet n {{\n  input x: [6]\n  u\n  loss softmax_xent(classes=6)\n}}")
}

fn logits(outputs: &[(String, Vec<f32>)]) -> Vec<(String, Vec<f32>)> {
    outputs.iter().filter(|(name, _)| name == netc_ir::LOGITS).cloned().collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_units_compute_the_interpreters_bits(body in expression(), batch in 1usize..9, seed in 0u64..1000) {
        let src = unit_net(&body);
        let forward = case(&src, Mode::Eval, false, batch, seed);
        let want = forward.interpret();
        assert_bitwise(&format!("{src}\nforward"), &logits(&forward.execute(1)), &logits(&want));
        let training = case(&src, Mode::Train, true, batch, seed);
        let one = training.execute(1);
        assert_close(&format!("{src}\nbackward"), &one, &training.interpret(), 1e-4, 1e-5);
        assert_bitwise(&format!("{src}\n1 vs 3 threads"), &training.execute(3), &one);
    }
}
