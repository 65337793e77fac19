//! Traces out of ragprobe: OpenTelemetry spans with MLflow, OpenInference and GenAI
//! attributes, encoded as OTLP/JSON or OTLP/protobuf.

pub mod folder;
pub mod json;
pub mod otlp;
pub mod proto;
pub mod send;
