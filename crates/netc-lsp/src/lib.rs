//! `netc lsp`: a Language Server for `.net` files over stdio. It keeps each open document's
//! text and answers from the same checker, summary and formatter as the command line:
//! diagnostics as you type, hover with a layer's output shape, parameters and MACs, go to the
//! definition of a unit or block, completion of layer, unit and block names with their
//! arguments, and formatting.

mod position;

use lsp_server::{Connection, ErrorCode, Message, Notification, Response};
use netc::syntax::{ast, Diagnostic, LabelStyle, Severity};
use netc::Source;
use position::{offset, range};
use serde_json::{json, Value};
use std::collections::HashMap;

/// Serves one client on stdin and stdout until it asks to exit.
pub fn serve_stdio() -> Result<(), String> {
    let (connection, io_threads) = Connection::stdio();
    serve(&connection)?;
    drop(connection);
    io_threads.join().map_err(|e| format!("language server I/O: {e}"))
}

fn serve(connection: &Connection) -> Result<(), String> {
    let capabilities = json!({
        "textDocumentSync": 1,
        "hoverProvider": true,
        "definitionProvider": true,
        "completionProvider": { "triggerCharacters": ["(", ","] },
        "documentFormattingProvider": true,
    });
    connection.initialize(capabilities).map_err(|e| format!("language server start: {e}"))?;
    let mut documents: HashMap<String, Document> = HashMap::new();
    for message in &connection.receiver {
        match message {
            Message::Request(request) => {
                if connection.handle_shutdown(&request).map_err(|e| e.to_string())? {
                    return Ok(());
                }
                let document = request.params["textDocument"]["uri"].as_str().and_then(|uri| documents.get(uri));
                let response = match (request.method.as_str(), document) {
                    (_, None) => Response::new_ok(request.id, Value::Null),
                    ("textDocument/hover", Some(document)) => {
                        Response::new_ok(request.id, hover(document, &request.params))
                    }
                    (method, Some(Document { text, .. })) => match method {
                        "textDocument/definition" => Response::new_ok(request.id, definition(text, &request.params)),
                        "textDocument/completion" => Response::new_ok(request.id, completion(text)),
                        "textDocument/formatting" => Response::new_ok(request.id, formatting(text)),
                        _ => Response::new_err(
                            request.id,
                            ErrorCode::MethodNotFound as i32,
                            format!("netc lsp does not answer `{method}`"),
                        ),
                    },
                };
                send(connection, Message::Response(response))?;
            }
            Message::Notification(note) => {
                let document = &note.params["textDocument"];
                let Some(uri) = document["uri"].as_str() else { continue };
                let text = match note.method.as_str() {
                    "textDocument/didOpen" => document["text"].as_str(),
                    // Full synchronisation: the last change holds the whole text.
                    "textDocument/didChange" => {
                        note.params["contentChanges"].as_array().and_then(|c| c.last()).and_then(|c| c["text"].as_str())
                    }
                    "textDocument/didClose" => {
                        documents.remove(uri);
                        publish(connection, uri, Vec::new())?;
                        continue;
                    }
                    _ => continue,
                };
                if let Some(text) = text {
                    let (checked, found) = analyse(uri, text);
                    publish(connection, uri, found)?;
                    documents.insert(uri.to_string(), Document { text: text.to_string(), checked });
                }
            }
            Message::Response(_) => {}
        }
    }
    Ok(())
}

/// An open document and, when it checks, its checked nets (computed once per change, for hover).
struct Document {
    text: String,
    checked: Option<netc::check::Checked>,
}

fn send(connection: &Connection, message: Message) -> Result<(), String> {
    connection.sender.send(message).map_err(|e| format!("language server: the client went away: {e}"))
}

fn publish(connection: &Connection, uri: &str, diagnostics: Vec<Value>) -> Result<(), String> {
    let params = json!({ "uri": uri, "diagnostics": diagnostics });
    send(connection, Message::Notification(Notification::new("textDocument/publishDiagnostics".into(), params)))
}

/// The text checked, and the checker's errors or warnings as LSP diagnostics at their primary
/// labels.
fn analyse(uri: &str, text: &str) -> (Option<netc::check::Checked>, Vec<Value>) {
    let source = Source::new(uri, text);
    let (checked, found) = match netc::check(&source, &[]) {
        Ok(checked) => {
            let warnings = checked.warnings.clone();
            (Some(checked), warnings)
        }
        Err(netc::Error::Source { diagnostics, .. }) => (None, diagnostics),
        Err(other) => (None, vec![Diagnostic::error().with_message(other.render(false).trim_end().to_string())]),
    };
    let found = found
        .iter()
        .map(|d| {
            let primary = d.labels.iter().find(|l| l.style == LabelStyle::Primary);
            let span = primary.map_or(0..0, |l| l.range.clone());
            let mut message = d.message.clone();
            if let Some(label) = primary.filter(|l| !l.message.is_empty()) {
                message = format!("{message}: {}", label.message);
            }
            for note in &d.notes {
                message = format!("{message}\n{}", note.trim());
            }
            let related: Vec<Value> = d
                .labels
                .iter()
                .filter(|l| l.style == LabelStyle::Secondary)
                .map(|l| json!({ "location": { "uri": uri, "range": range(text, l.range.clone()) }, "message": l.message }))
                .collect();
            json!({
                "range": range(text, span),
                "severity": match d.severity {
                    Severity::Bug | Severity::Error => 1,
                    Severity::Warning => 2,
                    Severity::Note => 3,
                    Severity::Help => 4,
                },
                "code": d.code,
                "source": "netc",
                "message": message,
                "relatedInformation": related,
            })
        })
        .collect();
    (checked, found)
}

/// The innermost layer under the cursor: its output shape, parameters and MACs (every use,
/// when the layer is in a block used more than once).
fn hover(document: &Document, params: &Value) -> Value {
    let Some(at) = offset(&document.text, &params["position"]) else { return Value::Null };
    let Some(checked) = &document.checked else { return Value::Null };
    let mut best: Option<(usize, Vec<String>)> = None;
    for net in &checked.nets {
        for (i, layer) in net.layers.iter().enumerate() {
            let span = layer.span.range();
            if !span.contains(&at) {
                continue;
            }
            let line = netc::check::describe_layer(net, i);
            match &mut best {
                Some((len, lines)) if *len == span.len() => lines.push(line),
                Some((len, _)) if *len < span.len() => {}
                _ => best = Some((span.len(), vec![line])),
            }
        }
    }
    best.map_or(Value::Null, |(_, lines)| json!({ "contents": { "kind": "plaintext", "value": lines.join("\n") } }))
}

/// The unit or block definition named by the word under the cursor.
fn definition(text: &str, params: &Value) -> Value {
    let Some(at) = offset(text, &params["position"]) else { return Value::Null };
    let Ok(file) = netc::syntax::parse(text) else { return Value::Null };
    let word = word_at(text, at);
    let mut names = file.units.iter().map(|u| &u.name).chain(file.blocks.iter().map(|b| &b.name));
    match names.find(|name| name.name == word) {
        Some(name) => json!({ "uri": params["textDocument"]["uri"], "range": range(text, name.span.range()) }),
        None => Value::Null,
    }
}

/// The identifier around a byte offset.
fn word_at(text: &str, at: usize) -> &str {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let start = text[..at].rfind(|c: char| !is_word(c)).map_or(0, |i| i + 1);
    let end = text[at..].find(|c: char| !is_word(c)).map_or(text.len(), |i| at + i);
    &text[start..end]
}

/// Built-in layers with their arguments, then the file's own units and blocks.
fn completion(text: &str) -> Value {
    let item = |name: &str, args: Vec<String>, kind: u8, what: &str| json!({ "label": name, "kind": kind, "detail": format!("{name}({}) — {what}", args.join(", ")) });
    let mut items: Vec<Value> = netc::check::layer_signatures()
        .map(|(name, args)| item(name, args.iter().map(|a| a.to_string()).collect(), 3, "built-in layer"))
        .collect();
    if let Ok(file) = netc::syntax::parse(text) {
        let params = |p: &[ast::ParamDecl]| p.iter().map(|p| p.name.name.clone()).collect::<Vec<_>>();
        items.extend(file.units.iter().map(|u| item(&u.name.name, params(&u.params), 3, "unit")));
        items.extend(file.blocks.iter().map(|b| item(&b.name.name, params(&b.params), 9, "block")));
    }
    Value::Array(items)
}

/// One edit replacing the document with its canonical layout, or none when it does not parse.
fn formatting(text: &str) -> Value {
    match netc::format(&Source::new("", text)) {
        Ok(formatted) if formatted != text => json!([{ "range": range(text, 0..text.len()), "newText": formatted }]),
        _ => json!([]),
    }
}
