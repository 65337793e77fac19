//! Integration tests through the real `ragprobe` binary.
//!
//! One test binary, not one per file: each binary links polars, and a dozen of them
//! filled CI's disk and spent most of the build in the linker.

mod common;

mod adapters;
mod adaptive;
mod browser;
mod chroma;
mod config_errors;
mod conversations;
mod docs;
mod github;
mod grounded;
mod hardening;
mod hostile;
mod import;
mod judges;
mod langchain;
mod mlflow;
mod openai;
mod options;
mod otlp_export;
mod receiver;
mod reference_scenario;
mod reports;
mod repro;
mod resume;
mod retrieval;
mod traces;
mod verdicts;
