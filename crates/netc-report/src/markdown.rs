//! Markdown tables and the page's number formats.

use netc_sweep::stats::Summary;

/// A table whose first column is left-aligned and the others right-aligned.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let rule: Vec<String> =
            (0..self.header.len()).map(|i| if i == 0 { "---" } else { "---:" }.to_string()).collect();
        let mut text = line(&self.header) + &line(&rule);
        for row in &self.rows {
            text += &line(row);
        }
        text
    }
}

/// `mean ± sd` of values already in percent; `–` for none, `mean ± –` for one.
pub(crate) fn mean_sd(summary: Option<Summary>) -> String {
    match summary {
        Some(Summary { mean, sd: Some(sd), .. }) => format!("{mean:.2} ± {sd:.2}"),
        Some(Summary { mean, sd: None, .. }) => format!("{mean:.2} ± –"),
        None => "–".into(),
    }
}

pub(crate) fn interval(bounds: Option<(f64, f64)>) -> String {
    bounds.map_or("–".into(), |(lo, hi)| format!("[{lo:.2}, {hi:.2}]"))
}
