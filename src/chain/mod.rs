//! The chain under test: what ragprobe asks, and how each answer came about.

pub mod build;
pub mod chroma;
pub mod config;
pub mod corpus;
pub mod embed;
pub mod error;
pub mod extractive;
pub mod history;
pub mod intake;
pub mod invoke;
pub mod memory;
pub mod openai;
pub mod pipeline;
pub mod postings;
pub mod prompt;
pub mod service;
pub mod text;

pub use invoke::{
    Chain, ChainFailure, ChainOutput, ContextEdit, Conversation, Intervention, PreflightError,
    Supports,
};
pub use pipeline::PipelineChain;
pub use service::{CommandChain, HttpChain};
