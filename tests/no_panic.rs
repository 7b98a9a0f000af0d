//! Arbitrary input never panics the parser or the checker: random bytes, random token soup,
//! and valid example files with random edits. Each property runs 4,000 cases, or
//! `NETC_NO_PANIC_CASES` (CI runs 34,000 each, 102,000 in all).

use proptest::prelude::*;

const EXAMPLES: [&str; 6] = [
    include_str!("../examples/lenet.net"),
    include_str!("../examples/resnet_blocks.net"),
    include_str!("../examples/flip_neglu.net"),
    include_str!("../examples/residual.net"),
    include_str!("../examples/lenet5_cifar.net"),
    include_str!("../examples/minmaxout.net"),
];

const TOKENS: [&str; 62] = [
    "net",
    "unit",
    "block",
    "grad",
    "learned(0.1)",
    "noise",
    "+",
    "-",
    "*",
    "/",
    "<",
    "==",
    "where",
    "max",
    "prelu",
    "residual",
    "x * sigmoid(x)",
    "input",
    "loss",
    "train",
    "from",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    "=",
    ":",
    "\n",
    "x",
    "a",
    "conv",
    "dense",
    "add",
    "concat",
    "mixlu",
    "mix",
    "minmaxout",
    "convact",
    "maxpool",
    "softmax_xent",
    "k",
    "pad",
    "stride",
    "0",
    "1",
    "-1",
    "28",
    "0.5",
    "1e9",
    "99999999999",
    "true",
    "\"s\"",
    "# c",
    "\r",
    "\u{FEFF}",
    "\u{A0}",
    "\u{200B}",
    "é",
    "[[[[[[[[[[[[[[[[",
];

fn check(text: &str) {
    let source = netc::Source::new("fuzz.net", text);
    let _ = netc::check(&source, &[]).map_err(|e| e.render(false));
    let _ =
        netc::check(&source, &[("negfrac".into(), "2".into()), ("w".into(), "x".into())]).map_err(|e| e.render(false));
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, &'static str),
    Replace(usize, usize, &'static str),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..8usize).prop_map(|(at, len)| Edit::Delete(at, len)),
        (any::<usize>(), prop::sample::select(&TOKENS[..])).prop_map(|(at, t)| Edit::Insert(at, t)),
        (any::<usize>(), 1..6usize, prop::sample::select(&TOKENS[..]))
            .prop_map(|(at, len, t)| Edit::Replace(at, len, t)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let clamp = |at: usize, len: usize| at % (len + 1);
        match *e {
            Edit::Delete(at, n) => {
                let at = clamp(at, chars.len());
                let end = (at + n).min(chars.len());
                chars.drain(at..end);
            }
            Edit::Insert(at, t) => {
                let at = clamp(at, chars.len());
                chars.splice(at..at, t.chars());
            }
            Edit::Replace(at, n, t) => {
                let at = clamp(at, chars.len());
                let end = (at + n).min(chars.len());
                chars.splice(at..end, t.chars());
            }
        }
    }
    chars.into_iter().collect()
}

/// Cases per property.
fn cases() -> u32 {
    match std::env::var("NETC_NO_PANIC_CASES") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("NETC_NO_PANIC_CASES={text} is not a count")),
        Err(_) => 4_000,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn token_soup(tokens in prop::collection::vec(prop::sample::select(&TOKENS[..]), 0..80)) {
        check(&tokens.join(" "));
    }

    #[test]
    fn mutated_examples(which in 0..EXAMPLES.len(), edits in prop::collection::vec(edit(), 1..6)) {
        check(&apply(EXAMPLES[which], &edits));
    }
}

/// `netc ir --fused` lists every step on one line; a step joining thousands of layers writes a
/// line longer than a format width may be (u16::MAX), which once panicked. (A concatenation: an
/// elementwise join is cut into kernels of bounded depth, each on a line of its own.)
#[test]
fn the_fused_listing_of_a_step_joining_thousands_of_layers() {
    let n = 20_000;
    let mut text = String::from("net wide { input x: [16]\n");
    for i in 0..n {
        text.push_str(&format!(" l{i} = relu from x\n"));
    }
    let names: Vec<String> = (0..n).map(|i| format!("l{i}")).collect();
    text.push_str(&format!(" concat({})\n dense(2)\n loss softmax_xent(classes=2) }}", names.join(", ")));
    let model = netc::model(&netc::Source::new("wide.net", text), &[], None).unwrap();
    let listing = netc::run::fused_text(&model, false).unwrap();
    let longest = listing.lines().map(str::len).max().unwrap();
    assert!(longest > usize::from(u16::MAX), "{longest}");
    assert!(listing.lines().any(|l| l.ends_with(&format!("# concat1 (line {})", n + 2))));
}
