// Starts `netc lsp` for .net files; the server does the work (diagnostics, hover, definitions,
// completion, formatting).
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("netc").get("path", "netc");
  const server = { command, args: ["lsp"] };
  client = new LanguageClient(
    "netc",
    "netc",
    { run: server, debug: server },
    { documentSelector: [{ scheme: "file", language: "net" }] }
  );
  context.subscriptions.push(client);
  client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
