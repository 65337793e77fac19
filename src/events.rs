//! What happens while a suite runs, and the one trait everything that listens implements.
//! The runner never prints or writes files: it emits events, and reporters (the
//! `runs.jsonl` writer, the progress display, the OTLP streamer, the MLflow logger)
//! consume them, each on its own, so adding a reporter never touches the runner.

use crate::model::record::RunRecord;

#[derive(Debug)]
pub enum Event {
    /// A suite's runs are about to start: each selected case and the runs it still has
    /// to make (fewer than planned when resuming).
    SuiteStarted {
        suite: String,
        remaining: Vec<(String, u32)>,
        concurrency: usize,
        /// Cases may stop early (`runs: auto`): `remaining` are at most.
        adaptive: bool,
    },
    /// A run finished: passed, failed, or ended in an infrastructure error.
    RunFinished(Box<RunRecord>),
    /// An adaptive case (`runs: auto`) stopped: no more of its runs will come.
    CaseDecided {
        case: String,
        runs: u32,
        stop: crate::sequential::Stop,
    },
    /// No more runs will come; `interrupted` when a signal stopped them.
    SuiteFinished { interrupted: bool },
}

/// Something that listens to a suite's events. An error stops the suite: only a reporter
/// whose output must not be lost (the runs writer) returns one; the others report their
/// own trouble and go on.
pub trait Reporter {
    fn write_event(&mut self, event: &Event) -> std::io::Result<()>;
}
