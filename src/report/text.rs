//! Plain-text building blocks shared by the terminal summary, the diff summary and the
//! trace tree: aligned tables and retrieved-document lines.

use std::fmt::Write;

use crate::model::record::RunRecord;

/// `text` for one line of output: newlines and carriage returns shown as `\n` and `\r`.
pub fn inline(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r']) {
        std::borrow::Cow::Owned(text.replace('\r', "\\r").replace('\n', "\\n"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// A retriever's score to four places, or `—` when it gave none.
/// `text` on one line (newlines become spaces), cut to `max` characters with an ellipsis.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    cut(&flat, max)
}

/// `text` cut to `max` characters with an ellipsis.
pub fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// `$0.0123`, or `—` when a model that was called has no price.
pub fn cost(cost_usd: Option<f64>) -> String {
    match cost_usd {
        Some(cost) => format!("${cost:.4}"),
        None => "— (no price)".to_owned(),
    }
}

pub fn score(score: Option<f64>) -> String {
    score.map_or_else(|| "—".to_owned(), |s| format!("{s:.4}"))
}

/// The widest of `labels`, in characters (0 for none).
pub fn widest(labels: &[String]) -> usize {
    labels.iter().map(|l| l.chars().count()).max().unwrap_or(0)
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
pub fn table(out: &mut String, rows: &[Vec<String>], indent: &str) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        out.push_str(indent);
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    }
}

pub fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// `  ✗ rule, rule` for the rules the document `id` broke in `run`; empty when none.
pub fn broken_mark(run: &RunRecord, id: &str) -> String {
    let broken: Vec<&str> = run
        .verdict
        .iter()
        .flat_map(|v| v.rules.iter())
        .filter(|r| r.offending_documents.iter().any(|d| d == id))
        .map(|r| r.id.as_str())
        .collect();
    if broken.is_empty() {
        String::new()
    } else {
        format!("  ✗ {}", broken.join(", "))
    }
}

/// One line per retrieved document: id, score, metadata, and the rules it broke.
pub fn retrieved_lines(out: &mut String, run: &RunRecord, indent: &str) {
    for doc in &run.retrieved {
        let mark = broken_mark(run, &doc.id);
        let _ = writeln!(
            out,
            "{indent}{}  score {}  {}{mark}",
            inline(&doc.id),
            score(doc.score),
            serde_json::Value::Object(doc.metadata.clone())
        );
    }
}
