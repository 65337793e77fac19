//! A report folder on disk: `runs.jsonl` (every run, appended as it finishes) and
//! `meta.json` (what was planned).

pub mod folder;
pub mod merge;
pub mod runs;

pub use runs::{RUNS_FILE, RunReader, RunWriter, read_at, recorded_runs};
