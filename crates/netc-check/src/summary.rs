//! `netc summary`: the per-layer table of a checked net.

use crate::model::{Net, Node};
use crate::ops::shape_text;
use std::fmt::Write;

/// A table with one row per layer (name, op, output shape, parameters, forward MACs per
/// example) and the totals.
pub fn summary(net: &Net) -> String {
    let mut rows: Vec<[String; 5]> =
        vec![[net.input.name.clone(), "input".into(), shape_text(&net.input.shape), String::new(), String::new()]];
    let (mut total_params, mut total_macs) = (0u64, 0u64);
    for (index, layer) in net.layers.iter().enumerate() {
        let in_shape = net.in_shape(layer);
        let params: u64 = layer.parameters(in_shape).iter().map(|p| p.shape.iter().product::<usize>() as u64).sum();
        let macs = layer.macs(in_shape);
        total_params = total_params.saturating_add(params);
        total_macs = total_macs.saturating_add(macs);
        let mut op = layer.op.to_string();
        if layer.inputs.len() > 1 || layer.inputs.first().is_some_and(|&n| n != previous(index)) {
            let names: Vec<&str> = layer.inputs.iter().map(|&n| node_name(net, n)).collect();
            op = format!("{op} ← {}", names.join(", "));
        }
        rows.push([layer.name.clone(), op, shape_text(&layer.out_shape), thousands(params), thousands(macs)]);
    }
    rows.push([
        "loss".into(),
        format!("softmax_xent(classes={})", net.loss.classes),
        "[1]".into(),
        String::new(),
        String::new(),
    ]);

    let header = ["layer", "op", "output", "params", "MACs"];
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; 5]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            // Numbers right-aligned, text left-aligned.
            if i >= 3 {
                let _ = write!(text, "{}{cell}  ", " ".repeat(pad));
            } else {
                let _ = write!(text, "{cell}{}  ", " ".repeat(pad));
            }
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    let _ = writeln!(out, "net {}", net.name);
    line(&mut out, header);
    let rule: Vec<String> = widths.iter().map(|&w| "─".repeat(w)).collect();
    line(&mut out, [&rule[0], &rule[1], &rule[2], &rule[3], &rule[4]]);
    for row in &rows {
        line(&mut out, [&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    let _ = writeln!(
        out,
        "total: {} parameters, {} MACs per example (forward)",
        thousands(total_params),
        thousands(total_macs)
    );
    out
}

/// The node a layer reads when it names no input: the line above.
fn previous(index: usize) -> Node {
    index.checked_sub(1).map_or(Node::Input, Node::Layer)
}

fn node_name(net: &Net, node: Node) -> &str {
    match node {
        Node::Input => &net.input.name,
        Node::Layer(i) => &net.layers[i].name,
    }
}

// `is_multiple_of` needs Rust 1.87; the workspace supports 1.85.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
