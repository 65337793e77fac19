//! One function per subcommand; each returns the exit code.

pub mod diff;
pub mod export;
pub mod import;
pub mod index;
pub mod run;
pub mod show;
pub mod validate;
