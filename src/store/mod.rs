//! A report folder on disk: `runs.jsonl` (every run, appended as it finishes),
//! `meta.json` (what was planned) and the lock that keeps it to one writer.

pub mod folder;
pub mod lock;
pub mod merge;
pub mod runs;

pub use runs::{RUNS_FILE, RunReader, RunWriter, read_at, recorded_runs};
