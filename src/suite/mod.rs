//! Suites: the YAML schema, finding suite files, and loading them with every check made
//! before a run.

pub mod adaptive;
pub mod append;
pub mod discover;
pub mod judge;
pub mod load;
pub mod schema;

pub use load::{Suite, load};
