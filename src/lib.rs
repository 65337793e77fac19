//! ragprobe: an evaluation and regression-testing harness for RAG chains.
//!
//! The pipeline runs one way: suite YAML → [`plan`] → [`runner`] → [`checks`] → [`store`]
//! → [`results`] (parquet) → [`stats`] (polars) → [`report`].

pub mod aggregate;
pub mod atomic;
pub mod backend;
pub mod baseline;
pub mod chain;
pub mod checks;
pub mod ci;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diff;
pub mod distributions;
pub mod error;
pub mod events;
pub mod exit_codes;
pub mod export;
pub mod gate;
pub mod import;
pub mod invisible;
pub mod judge;
pub mod mlflow;
pub mod model;
pub mod multiple;
pub mod out;
pub mod plan;
pub mod power;
pub mod receiver;
pub mod report;
pub mod repro;
pub mod results;
pub mod rules;
pub mod runner;
pub mod schedule;
pub mod secrets;
pub mod seed;
pub mod sequential;
pub mod session;
pub mod stats;
pub mod store;
pub mod suite;
pub mod text;
pub mod trace;
