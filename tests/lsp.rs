//! `netc lsp` driven by a scripted client over stdio: initialize, open a file with a mistake
//! (diagnostics at its range), fix it, hover, go to definition, complete, format, shut down.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

struct Client {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Client {
    fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn receive(&mut self) -> Value {
        let mut length = 0;
        loop {
            let mut line = String::new();
            assert!(self.stdout.read_line(&mut line).unwrap() > 0, "the server closed its output");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(n) = line.strip_prefix("Content-Length: ") {
                length = n.parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.stdout.read_exact(&mut body).unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// Sends a request and returns its result, skipping notifications that come first.
    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        loop {
            let message = self.receive();
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{message}");
                return message["result"].clone();
            }
        }
    }

    fn diagnostics(&mut self) -> Value {
        loop {
            let message = self.receive();
            if message["method"] == "textDocument/publishDiagnostics" {
                return message["params"].clone();
            }
        }
    }
}

const URI: &str = "file:///project/model.net";

const BAD: &str = "unit leaky(a = 0.1) = max(x, a * x)\n\
block pair(c) {\n    input x\n    conv(c, k=3, pad=1)\n    leaky\n}\n\
net demo {\n    input image: [1, 28, 28]\n    pair(8)\n    maxpol(2)\n    dense(10)\n    loss softmax_xent(classes=10)\n}\n";

#[test]
fn a_scripted_client_gets_diagnostics_hover_definitions_completion_and_formatting() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netc"))
        .arg("lsp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut client =
        Client { stdin: child.stdin.take().unwrap(), stdout: BufReader::new(child.stdout.take().unwrap()), next_id: 0 };
    let init = client.request("initialize", json!({ "processId": null, "rootUri": null, "capabilities": {} }));
    assert_eq!(init["capabilities"]["hoverProvider"], true, "{init}");
    client.notify("initialized", json!({}));

    // A misspelt layer: one error, at `maxpol` on line 9 (from 0), columns 4 to 10.
    client.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": URI, "languageId": "net", "version": 1, "text": BAD } }),
    );
    let published = client.diagnostics();
    assert_eq!(published["uri"], URI);
    let diagnostics = published["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 1, "{published}");
    let d = &diagnostics[0];
    assert_eq!(d["severity"], 1);
    assert_eq!(d["range"], json!({ "start": { "line": 9, "character": 4 }, "end": { "line": 9, "character": 10 } }));
    assert!(d["message"].as_str().unwrap().contains("maxpool"), "{d}");

    let good = BAD.replace("maxpol", "maxpool");
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": URI, "version": 2 }, "contentChanges": [{ "text": good }] }),
    );
    assert_eq!(client.diagnostics()["diagnostics"], json!([]));

    // Hover on `dense(10)` (line 10): its shape, parameters (8·14·14·10 + 10) and MACs.
    let at = |line: u32, character: u32| json!({ "textDocument": { "uri": URI }, "position": { "line": line, "character": character } });
    let hover = client.request("textDocument/hover", at(10, 6));
    let text = hover["contents"]["value"].as_str().unwrap();
    assert!(text.contains("dense1") && text.contains("[10]") && text.contains("15,690 parameters"), "{text}");
    assert!(text.contains("15,680 MACs"), "{text}");
    // Inside the block, hover shows the layer of its use.
    let hover = client.request("textDocument/hover", at(3, 6));
    assert!(hover["contents"]["value"].as_str().unwrap().contains("[8, 28, 28]"), "{hover}");

    // `leaky` inside the block and `pair` in the net go to their definitions.
    let leaky = client.request("textDocument/definition", at(4, 6));
    assert_eq!(leaky["range"]["start"], json!({ "line": 0, "character": 5 }), "{leaky}");
    let pair = client.request("textDocument/definition", at(8, 5));
    assert_eq!(pair["range"]["start"], json!({ "line": 1, "character": 6 }), "{pair}");
    assert_eq!(client.request("textDocument/definition", at(9, 6)), Value::Null, "a built-in has no definition");

    let items = client.request("textDocument/completion", at(9, 4));
    let labels: Vec<&str> = items.as_array().unwrap().iter().map(|i| i["label"].as_str().unwrap()).collect();
    for name in ["conv", "maxpool", "mixlu", "leaky", "pair"] {
        assert!(labels.contains(&name), "{name} not offered: {labels:?}");
    }
    let conv = items.as_array().unwrap().iter().find(|i| i["label"] == "conv").unwrap();
    assert!(conv["detail"].as_str().unwrap().contains("pad"), "{conv}");

    let messy = good.replace("    dense(10)", "dense( 10 )");
    client.notify(
        "textDocument/didChange",
        json!({ "textDocument": { "uri": URI, "version": 3 }, "contentChanges": [{ "text": messy }] }),
    );
    client.diagnostics();
    let edits = client.request("textDocument/formatting", json!({ "textDocument": { "uri": URI }, "options": {} }));
    assert_eq!(edits[0]["newText"].as_str().unwrap().lines().nth(10), Some("    dense(10)"), "{edits}");

    assert_eq!(client.request("shutdown", Value::Null), Value::Null);
    client.notify("exit", Value::Null);
    assert!(child.wait().unwrap().success());
}
