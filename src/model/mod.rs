//! The data model every stage shares, at the bottom of the crate: it imports nothing
//! above it. `record` is one run as stored; `summary` is what summary.json holds and what
//! baseline and diff read back.

pub mod calibration;
pub mod meta;
pub mod otlp_proto;
pub mod record;
pub mod summary;
