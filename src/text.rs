//! Words for numbers, shared by every layer that writes a message: the terminal summaries,
//! the progress lines, MLflow's run descriptions.

/// `1 case`, `2 cases`: a count with its noun in the right number.
pub fn count(n: impl Into<u64>, noun: &str) -> String {
    match n.into() {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}
