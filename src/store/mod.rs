//! A report folder on disk: `runs.jsonl` (every run, appended as it finishes),
//! `meta.json` (what was planned) and the lock that keeps it to one writer.

pub mod folder;
pub mod lock;
pub mod merge;
pub mod runs;

pub use runs::{RUNS_FILE, RunReader, RunWriter, read_at, recorded_runs};

/// A row per run, written from runs.jsonl by `results` (named here, with the folder's
/// other files, so the folder code knows every file it may replace).
pub const RESULTS_FILE: &str = "results.parquet";
/// A row per retrieved document, beside results.parquet.
pub const RETRIEVED_FILE: &str = "retrieved.parquet";
/// A row per turn of each conversation run, beside results.parquet (only when the suite
/// has conversation cases).
pub const TURNS_FILE: &str = "turns.parquet";
