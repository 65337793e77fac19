//! Why one invocation of a chain produced no answer. The run records the message; callers
//! that must decide (repro, triage, the exit code) look at the variant.

use crate::backend::BackendError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChainError {
    /// A model, embedder, Chroma server or RAG service failed for good.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The prompt template failed on this question (an undefined variable, a loop
    /// beyond the rendering limits).
    #[error("prompt template: {0}")]
    Prompt(String),
    /// The http chain's body or header template failed on this question.
    #[error("{0}")]
    Request(String),
    /// The service answered, but not in the configured shape.
    #[error("malformed response: {0}")]
    Reply(String),
    /// The reply was fine, but the spans the run reads its documents from
    /// (`documents_from: spans`) did not arrive.
    #[error("{0}")]
    NoSpans(String),
    /// The command chain's program failed.
    #[error("{0}")]
    Command(String),
    /// The embedder answered without a vector.
    #[error("the embedder returned no vector")]
    NoVector,
    /// The suite's judge could not give a verdict (unreachable, or a reply without one).
    #[error("{0}")]
    Judge(String),
    /// The whole run took longer than the suite's `timeout_ms`.
    #[error("timed out after {0} ms")]
    TimedOut(u128),
}
