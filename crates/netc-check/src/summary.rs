//! `netc summary`: the per-layer table of a checked net.

use crate::model::{BlockUse, Net, Node};
use crate::ops::shape_text;
use std::fmt::Write;

/// A table with one row per layer (name, op, output shape, parameters, forward MACs per
/// example) and the totals.
pub fn summary(net: &Net, expand: bool) -> String {
    let mut rows: Vec<[String; 5]> =
        vec![[net.input.name.clone(), "input".into(), shape_text(&net.input.shape), String::new(), String::new()]];
    let counts: Vec<(u64, u64)> = net.layers.iter().map(|layer| counts(net, layer)).collect();
    let (total_params, total_macs) =
        counts.iter().fold((0u64, 0u64), |(p, m), &(lp, lm)| (p.saturating_add(lp), m.saturating_add(lm)));
    let sum = |range: std::ops::Range<usize>| {
        counts[range].iter().fold((0u64, 0u64), |(p, m), &(lp, lm)| (p.saturating_add(lp), m.saturating_add(lm)))
    };
    // The outermost block uses, in layer order: one row each, with their totals. Uses nest (a
    // block's layers are a range inside its caller's), so sorted by start, longest first, a use
    // is outermost when it starts after every outermost use before it has ended. Linear after
    // the sort: a file may expand to 100,000 layers and as many uses.
    let mut by_start: Vec<&BlockUse> = net.blocks.iter().filter(|b| !b.layers.is_empty()).collect();
    by_start.sort_by_key(|b| (b.layers.start, std::cmp::Reverse(b.layers.end)));
    let mut outermost: Vec<&BlockUse> = Vec::new();
    for block in by_start {
        if outermost.last().is_none_or(|last| block.layers.start >= last.layers.end) {
            outermost.push(block);
        }
    }
    let mut outermost = outermost.into_iter().peekable();
    let mut index = 0;
    while index < net.layers.len() {
        if let Some(block) = outermost.next_if(|b| b.layers.start == index) {
            let (params, macs) = sum(block.layers.clone());
            let out = &net.layers[block.layers.end - 1].out_shape;
            rows.push([
                block.name.clone(),
                format!("block {}", block.call),
                shape_text(out),
                thousands(params),
                thousands(macs),
            ]);
            if expand {
                for i in block.layers.clone() {
                    let mut row = layer_row(net, i, counts[i]);
                    row[0] = format!("  {}", row[0]);
                    rows.push(row);
                }
            }
            index = block.layers.end;
            continue;
        }
        rows.push(layer_row(net, index, counts[index]));
        index += 1;
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

/// A layer's parameter count and multiply-accumulates per example.
fn counts(net: &Net, layer: &crate::Layer) -> (u64, u64) {
    let in_shape = net.in_shape(layer);
    let params = layer.parameters(in_shape).iter().map(|p| p.shape.iter().product::<usize>() as u64).sum();
    (params, layer.macs(in_shape))
}

/// One layer as a line of text, for editors' hover: `conv1: conv(20, k=5) → [20, 24, 24],
/// 520 parameters, 288,000 MACs`.
pub fn describe_layer(net: &Net, index: usize) -> String {
    let [name, op, shape, params, macs] = layer_row(net, index, counts(net, &net.layers[index]));
    format!("{name}: {op} → {shape}, {params} parameters, {macs} MACs per example")
}

fn layer_row(net: &Net, index: usize, (params, macs): (u64, u64)) -> [String; 5] {
    let layer = &net.layers[index];
    let mut op = layer.op.to_string();
    if layer.inputs.len() > 1 || layer.inputs.first().is_some_and(|&n| n != previous(index)) {
        let names: Vec<&str> = layer.inputs.iter().map(|&n| node_name(net, n)).collect();
        op = format!("{op} ← {}", names.join(", "));
    }
    [layer.name.clone(), op, shape_text(&layer.out_shape), thousands(params), thousands(macs)]
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
