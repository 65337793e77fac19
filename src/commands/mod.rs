//! One function per subcommand; each returns the exit code.

pub mod calibrate;
pub mod common;
pub mod completions;
pub mod diff;
pub mod export;
pub mod github;
pub mod import;
pub mod import_trec;
pub mod index;
pub mod init;
pub mod merge;
pub mod mlflow_log;
pub mod plan;
pub mod receive;
pub mod repro;
pub mod run;
pub mod show;
pub mod validate;
