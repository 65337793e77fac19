//! Suites: the YAML schema, loading with located errors, and the checks made before a run.

pub mod build;
pub mod error;
pub mod load;
pub mod locate;
pub mod schema;

pub use load::{Suite, discover, load};
