//! Everything that turns events and statistics into something a person or a CI reads.

pub mod diff_text;
pub mod files;
pub mod gate_text;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod progress;
pub mod repro_text;
pub mod svg;
pub mod terminal;
pub mod text;
pub mod trace_tree;
