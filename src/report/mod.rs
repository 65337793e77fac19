//! Everything that turns events and statistics into something a person or a CI reads.

pub mod progress;
pub mod terminal;
