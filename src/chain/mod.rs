//! The chain under test: what ragprobe asks, and how each answer came about.

pub mod config;
pub mod corpus;
mod embedded;
pub mod extractive;
pub mod memory;
pub mod prompt;
pub mod text;

pub use embedded::EmbeddedChain;

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
    Embedded(EmbeddedChain),
}

impl Chain {
    pub async fn invoke(
        &self,
        question: &str,
        vars: &serde_json::Map<String, serde_json::Value>,
        seed: u64,
    ) -> Result<ChainOutput, ChainFailure> {
        match self {
            Chain::Embedded(chain) => chain.invoke(question, vars, seed).await,
        }
    }

    /// One line for summaries: what retrieves and what generates.
    pub fn describe(&self) -> String {
        match self {
            Chain::Embedded(chain) => chain.describe(),
        }
    }
}
