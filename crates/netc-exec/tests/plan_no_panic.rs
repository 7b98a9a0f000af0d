//! Fusion and planning accept any program the text parser accepts: mutations of the file tests'
//! programs either fail to parse or compile to a plan (`netc ir prog.nir --fused`), never panic.

#[path = "../../netc-ir/tests/support/mutations.rs"]
mod mutations;

use mutations::{apply, mutation, seeds};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsed_programs_plan_or_fail_cleanly(seed in any::<prop::sample::Index>(), ms in prop::collection::vec(mutation(), 1..4)) {
        let seeds = seeds();
        let mut text = seeds[seed.index(seeds.len())].clone();
        for m in &ms {
            text = apply(&text, m);
        }
        if let Ok(program) = netc_ir::parse(&text) {
            let _ = netc_exec::describe(&program);
            if let Ok(backward) = netc_ir::grad(&program) {
                let _ = netc_exec::describe(&backward);
            }
        }
    }
}
