//! Random edits of textual IR programs, for the tests that no text makes netc panic.

use proptest::prelude::*;

/// The file tests' programs: `filetests/*.nir` of netc-ir and netc-exec.
pub fn seeds() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut texts = Vec::new();
    for dir in ["netc-ir", "netc-exec"].map(|c| root.join(c).join("filetests")) {
        texts.extend(read_dir(&dir));
    }
    texts
}

fn read_dir(dir: &std::path::Path) -> Vec<String> {
    let mut texts: Vec<String> = std::fs::read_dir(dir)
        .expect("filetests/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "nir"))
        .map(|p| std::fs::read_to_string(p).expect("readable"))
        .collect();
    texts.sort();
    texts
}

#[derive(Debug, Clone)]
pub enum Mutation {
    Delete(usize, usize),
    Insert(usize, String),
    SwapLines(usize, usize),
}

pub fn apply(text: &str, m: &Mutation) -> String {
    let bytes = text.as_bytes();
    let at = |i: usize| i % (bytes.len() + 1);
    let out: Vec<u8> = match m {
        Mutation::Delete(i, n) => {
            let (a, b) = (at(*i), (at(*i) + n).min(bytes.len()));
            [&bytes[..a], &bytes[b..]].concat()
        }
        Mutation::Insert(i, s) => [&bytes[..at(*i)], s.as_bytes(), &bytes[at(*i)..]].concat(),
        Mutation::SwapLines(i, j) => {
            let mut lines: Vec<&str> = text.lines().collect();
            let n = lines.len().max(1);
            lines.swap(i % n, j % n);
            return lines.join("\n");
        }
    };
    String::from_utf8_lossy(&out).into_owned()
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let token = prop::sample::select(vec![
        "%",
        "%99",
        ":",
        "=",
        "[",
        "]",
        "[N,",
        "N",
        "0",
        "-1",
        "18446744073709551615",
        "99999999999999999999",
        ",",
        " ",
        "\n",
        "}",
        "{",
        "#",
        "x",
        "..",
        "mask",
        "ones=3/4",
        "at",
        "axes=[9]",
        "param",
        "role=bias",
        "init=fans(",
        "stream=mask:",
        "k=0",
        "stride=0",
        "pad=99999999999",
        "return",
        "grad",
        "source",
        "é",
        "\u{0}",
    ])
    .prop_map(String::from);
    prop_oneof![
        (any::<usize>(), 1usize..8).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), token).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Mutation::SwapLines(i, j)),
    ]
}
