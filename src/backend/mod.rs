//! Talking to backends: model endpoints, Chroma servers, RAG services and trace
//! collectors. `client` makes requests reliably within the `limits` a config sets,
//! `error` says why one failed, `redact` keeps credentials and long replies out of
//! messages.

pub mod client;
pub mod error;
pub mod limits;
pub mod redact;

pub use client::Backend;
pub use error::{BackendError, ErrorKind};
pub use limits::Limits;
