//! Talking to backends: model endpoints, Chroma servers, RAG services and trace
//! collectors. `client` makes requests reliably within the `limits` a config sets,
//! `error` says why one failed, `body` reads a reply with a cap. (Keeping credentials and
//! long replies out of messages is `crate::secrets`, at the bottom of the crate: every
//! layer's messages go through it.)

pub mod body;
pub mod client;
pub mod error;
pub mod limits;

pub use body::{BodyError, read_capped};
pub use client::Backend;
pub use error::{BackendError, ErrorKind};
pub use limits::Limits;
