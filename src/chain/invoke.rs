//! The chain under test as one type: what ragprobe asks of any kind of chain (a question,
//! its variables, a seed, and optionally an edit of the retrieved context), and what comes
//! back (documents, prompt, answer and trace, or an error with the trace so far).

use std::sync::Arc;

use crate::backend::BackendError;
use crate::chain::error::ChainError;
use crate::chain::{CommandChain, HttpChain, PipelineChain, pipeline};
use crate::model::record::RetrievedDoc;
pub use crate::model::record::{Message, Role};
use crate::trace::Trace;

/// A turn of a conversation, as a chain is asked it: the messages before its question
/// (the users' questions and the assistant's answers, in order) and its number (1 first).
#[derive(Debug, Clone, Copy)]
pub struct Conversation<'a> {
    pub history: &'a [Message],
    pub turn: u32,
    /// The same for every turn of one run, different for every run: for a service that
    /// keeps the history itself under a session id. Exported traces carry it as
    /// `session.id`.
    pub session: &'a str,
}

impl Conversation<'_> {
    /// The history with the current question after it: what a chat API takes.
    pub fn messages(&self, question: &str) -> Vec<Message> {
        let mut messages = self.history.to_vec();
        messages.push(Message {
            role: Role::User,
            content: question.to_owned(),
        });
        messages
    }
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
#[error("{error}")]
pub struct ChainFailure {
    pub error: ChainError,
    pub trace: Option<Trace>,
}

/// What would make every run fail the same way, found before the first.
#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    /// Chroma answered 404 for the collection: `ragprobe index` was not run.
    #[error("{0} (fill it with `ragprobe index`)")]
    NoCollection(BackendError),
    #[error(transparent)]
    Backend(BackendError),
}

/// A template that cannot be rendered for a question.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    #[error("prompt template fails: {0}")]
    Prompt(String),
    #[error("request template fails: {0}")]
    Request(String),
}

/// Every kind of chain ragprobe can drive. An enum rather than a trait object, so each
/// variant keeps plain `async fn`s.
#[derive(Debug)]
pub enum Chain {
    Pipeline(Box<PipelineChain>),
    Http(Box<HttpChain>),
    Command(CommandChain),
}

/// An edit of the retrieved documents before the prompt sees them (triage's conditions).
pub type ContextEdit = Arc<dyn Fn(Vec<RetrievedDoc>) -> Vec<RetrievedDoc> + Send + Sync>;

/// What triage changes in a run: the context the generator sees, or the retriever's filter.
#[derive(Clone)]
pub enum Intervention {
    Edit(ContextEdit),
    Filter(serde_json::Value),
}

/// The interventions a chain can carry out, and why not where it cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supports {
    pub edit: Result<(), String>,
    pub filter: Result<(), String>,
}

impl Chain {
    /// Asks the chain one question, with an intervention where the chain supports it
    /// (see [`Chain::supports`]; one it does not is ignored).
    pub async fn invoke(
        &self,
        question: &str,
        vars: &serde_json::Map<String, serde_json::Value>,
        seed: u64,
        intervention: Option<&Intervention>,
        conversation: Option<Conversation<'_>>,
    ) -> Result<ChainOutput, ChainFailure> {
        use crate::chain::service::RequestExtras;
        let extras = RequestExtras {
            conversation,
            ..RequestExtras::default()
        };
        match (self, intervention) {
            (Chain::Pipeline(chain), Some(Intervention::Edit(edit))) => {
                chain
                    .invoke_with(question, vars, seed, conversation, edit.as_ref())
                    .await
            }
            (Chain::Pipeline(chain), _) => chain.invoke(question, vars, seed, conversation).await,
            (Chain::Http(chain), Some(Intervention::Edit(edit))) if chain.takes_documents => {
                chain
                    .invoke_edited(question, vars, seed, &extras, edit.as_ref())
                    .await
            }
            (Chain::Http(chain), Some(Intervention::Filter(filter))) if chain.takes_filter => {
                let extras = RequestExtras {
                    filter: Some(filter),
                    ..extras
                };
                chain.invoke(question, vars, seed, &extras).await
            }
            (Chain::Http(chain), _) => chain.invoke(question, vars, seed, &extras).await,
            (Chain::Command(chain), _) => chain.invoke(question, vars, seed, conversation).await,
        }
    }

    /// Whether a conversation's history reaches this chain, and why not where it cannot.
    pub fn carries_history(&self) -> Result<(), String> {
        match self {
            // The prompt gets `messages` and `history`, an openai model the chat messages,
            // and the retriever the query its `history` setting builds.
            Chain::Pipeline(_) => Ok(()),
            Chain::Http(chain) if chain.takes_history => Ok(()),
            Chain::Http(_) => Err(
                "its body template uses none of `messages`, `chat_history`, `history` or `session_id`, so every turn would be sent alone"
                    .into(),
            ),
            // The program's input always holds `messages` and `turn`.
            Chain::Command(_) => Ok(()),
        }
    }

    /// Which of triage's interventions this chain can carry out.
    pub fn supports(&self) -> Supports {
        match self {
            Chain::Pipeline(_) => Supports {
                edit: Ok(()),
                filter: Err("a pipeline's filter is tried as condition (b), removing what the rule objects to".into()),
            },
            Chain::Http(chain) => Supports {
                edit: if chain.takes_documents {
                    Ok(())
                } else {
                    Err("the chain's body does not use `documents` (a context the service answers from)".into())
                },
                filter: if chain.takes_filter {
                    Ok(())
                } else {
                    Err("the chain's body does not use `filter` (the service's retriever filter)".into())
                },
            },
            Chain::Command(_) => Supports {
                edit: Err("a command chain's input has no context override".into()),
                filter: Err("a command chain's input has no retriever filter".into()),
            },
        }
    }

    /// Checks, before any run, what would make every run fail the same way: today, that a
    /// Chroma collection exists (a missing one means `ragprobe index` was not run).
    pub async fn preflight(&self) -> Result<(), PreflightError> {
        if let Chain::Pipeline(pipeline) = self
            && let pipeline::Retriever::Chroma(chroma) = &pipeline.retriever
        {
            chroma
                .handle
                .id(&chroma.client, &chroma.collection)
                .await
                .map_err(|error| match error.status() {
                    Some(404) => PreflightError::NoCollection(error),
                    _ => PreflightError::Backend(error),
                })?;
        }
        Ok(())
    }

    /// Renders the prompt (pipeline) or the request body and headers (http) for one
    /// question without sending anything, with `sample` documents standing in for the
    /// retrieved ones: a template that fails here would fail on every run.
    pub fn check_render(
        &self,
        question: &str,
        vars: &serde_json::Map<String, serde_json::Value>,
        sample: &[&crate::chain::corpus::Document],
        conversation: Option<Conversation<'_>>,
    ) -> Result<(), RenderError> {
        match self {
            Chain::Pipeline(pipeline) => pipeline
                .prompt
                .render(question, sample, vars, conversation)
                .map(|_| ())
                .map_err(|err| {
                    RenderError::Prompt(crate::chain::prompt::describe_template_error(&err))
                }),
            Chain::Http(http) => http
                .render(
                    question,
                    vars,
                    0,
                    "00-0-0-01",
                    &crate::chain::service::RequestExtras {
                        conversation,
                        ..Default::default()
                    },
                )
                .map(|_| ())
                .map_err(|err| RenderError::Request(err.to_string())),
            Chain::Command(_) => Ok(()),
        }
    }

    /// The intake for spans the service exports, for chains that call a service.
    pub fn span_intake(&self) -> Option<&crate::chain::intake::SpanIntake> {
        match self {
            Chain::Pipeline(_) => None,
            Chain::Http(chain) => Some(&chain.intake),
            Chain::Command(chain) => Some(&chain.intake),
        }
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
