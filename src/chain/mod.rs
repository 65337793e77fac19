//! The chain under test: what ragprobe asks, and how each answer came about.

pub mod chroma;
pub mod config;
pub mod corpus;
pub mod embed;
pub mod extractive;
pub mod memory;
pub mod openai;
pub mod pipeline;
pub mod prompt;
pub mod service;
pub mod text;

pub use pipeline::PipelineChain;
pub use service::{CommandChain, HttpChain};

use serde::{Deserialize, Serialize};

use crate::rules::Metadata;
use crate::trace::Trace;

/// A document as the retriever returned it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RetrievedDoc {
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub metadata: Metadata,
    pub score: f64,
}

/// Everything one invocation produced.
#[derive(Debug, Clone)]
pub struct ChainOutput {
    pub retrieved: Vec<RetrievedDoc>,
    pub prompt: String,
    pub answer: String,
    pub trace: Trace,
}

/// An invocation that could not complete; the trace shows how far it got.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ChainFailure {
    pub message: String,
    pub trace: Option<Trace>,
}

/// Every kind of chain ragprobe can drive. An enum rather than a trait object, so each
/// variant keeps plain `async fn`s.
#[derive(Debug)]
pub enum Chain {
    Pipeline(Box<PipelineChain>),
    Http(Box<HttpChain>),
    Command(CommandChain),
}

impl Chain {
    pub async fn invoke(
        &self,
        question: &str,
        vars: &serde_json::Map<String, serde_json::Value>,
        seed: u64,
    ) -> Result<ChainOutput, ChainFailure> {
        match self {
            Chain::Pipeline(chain) => chain.invoke(question, vars, seed).await,
            Chain::Http(chain) => chain.invoke(question, vars, seed).await,
            Chain::Command(chain) => chain.invoke(question, vars, seed).await,
        }
    }

    /// Checks, before any run, what would make every run fail the same way: today, that a
    /// Chroma collection exists (a missing one means `ragprobe index` was not run).
    pub async fn preflight(&self) -> Result<(), String> {
        if let Chain::Pipeline(pipeline) = self
            && let pipeline::Retriever::Chroma(chroma) = &pipeline.retriever
        {
            chroma
                .handle
                .id(&chroma.client, &chroma.collection)
                .await
                .map_err(|e| {
                    if e.message.contains("404") {
                        format!("{} (fill it with `ragprobe index`)", e.message)
                    } else {
                        e.message
                    }
                })?;
        }
        Ok(())
    }

    /// One line for summaries: what retrieves and what generates.
    pub fn describe(&self) -> String {
        match self {
            Chain::Pipeline(chain) => chain.describe(),
            Chain::Http(chain) => chain.describe(),
            Chain::Command(chain) => chain.describe(),
        }
    }
}
