//! The VS Code highlighting grammar (`editors/vscode`) is valid JSON and knows every keyword of
//! the pest grammar, so the two cannot drift apart silently.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn the_highlighting_grammar_names_every_keyword_of_the_language() {
    let pest = std::fs::read_to_string(root().join("grammar/net.pest")).unwrap();
    // The grammar's quoted words of two or more letters are its keywords ("n" and "t" are escapes).
    let keywords: Vec<&str> = pest
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|w| w.len() >= 2 && w.chars().all(|c| c.is_ascii_lowercase()))
        .collect();
    assert!(keywords.contains(&"net") && keywords.contains(&"grad"), "{keywords:?}");

    let text = std::fs::read_to_string(root().join("editors/vscode/syntaxes/net.tmLanguage.json")).unwrap();
    let grammar: serde_json::Value = serde_json::from_str(&text).unwrap();
    let repository = grammar["repository"].as_object().unwrap();
    let alternatives: Vec<&str> = ["keyword", "constant"]
        .iter()
        .flat_map(|rule| {
            let pattern = repository[*rule]["match"].as_str().unwrap();
            let inner = pattern.trim_start_matches("\\b(").trim_end_matches(")\\b");
            inner.split('|').collect::<Vec<_>>()
        })
        .collect();
    for keyword in keywords {
        assert!(alternatives.contains(&keyword), "`{keyword}` is a keyword of net.pest but not highlighted");
    }
    for rule in grammar["patterns"].as_array().unwrap() {
        let name = rule["include"].as_str().unwrap().trim_start_matches('#');
        assert!(repository.contains_key(name), "pattern `{name}` is not in the repository");
    }

    let package: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("editors/vscode/package.json")).unwrap()).unwrap();
    assert_eq!(package["contributes"]["grammars"][0]["scopeName"], grammar["scopeName"]);
}
