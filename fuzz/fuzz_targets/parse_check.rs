//! Any bytes through the front end: parse, check (with and without `--set` overrides), render
//! every diagnostic, summarise and estimate the memory of every checked net. Nothing may panic,
//! overflow the stack or run away.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netc_check::{Step, StepMemory};

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    let _ = netc_syntax::parse_value(&text);
    let file = match netc_syntax::parse(&text) {
        Ok(file) => file,
        Err(diagnostics) => {
            netc_syntax::render(&diagnostics, "fuzz.net", &text, false);
            return;
        }
    };
    let overrides: Vec<(String, netc_syntax::ast::Value)> = ["2", "0.5", "x", "[1, 2]"]
        .iter()
        .filter_map(|v| netc_syntax::parse_value(v).ok())
        .zip(file.nets.iter().flat_map(|n| &n.params))
        .map(|(value, param)| (param.name.name.clone(), value))
        .collect();
    for set in [&[][..], &overrides[..]] {
        match netc_check::check(&file, set) {
            Ok(checked) => {
                netc_syntax::render(&checked.warnings, "fuzz.net", &text, false);
                for net in &checked.nets {
                    netc_check::summary(net, true);
                    let optimizer = &checked.train.optimizer;
                    let train = StepMemory::of(net, Step::Train { batch: checked.train.batch, optimizer });
                    let _ = train.check("training", 1 << 33);
                    StepMemory::of(net, Step::Evaluate { batch: usize::MAX }).total();
                }
            }
            Err(diagnostics) => {
                netc_syntax::render(&diagnostics, "fuzz.net", &text, false);
            }
        }
    }
});
