//! What the runner tells the rest of the program. The runner never prints or writes files:
//! reporters (the store writer, the progress display) consume these events.

use crate::store::RunRecord;

#[derive(Debug)]
pub enum Event {
    /// A run finished: passed, failed, or ended in an infrastructure error.
    RunFinished(Box<RunRecord>),
}
