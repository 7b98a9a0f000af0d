//! The text parser returns a program or an error for any text: mutations of the file tests'
//! programs (bytes deleted, duplicated, replaced; lines dropped or swapped) never make it panic,
//! and whatever parses prints back to text that parses to the same program.

#[path = "support/mutations.rs"]
mod mutations;

use mutations::{apply, mutation, seeds};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn mutated_programs_parse_or_fail_cleanly(seed in any::<prop::sample::Index>(), ms in prop::collection::vec(mutation(), 1..4)) {
        let seeds = seeds();
        let mut text = seeds[seed.index(seeds.len())].clone();
        for m in &ms {
            text = apply(&text, m);
        }
        match netc_ir::parse(&text) {
            Ok(program) => {
                let printed = program.to_string();
                let again = netc_ir::parse(&printed).expect("a printed program parses");
                prop_assert_eq!(again.to_string(), printed);
            }
            Err(e) => {
                prop_assert!(e.span.start <= text.len() && e.span.end <= text.len() + 1, "{e:?}");
                prop_assert!(!e.message.is_empty());
            }
        }
    }
}
