//! The spans a service exports over OTLP while ragprobe runs it, taken into the run: the
//! chain says which trace it expects before the request, and after the reply collects
//! the trace's spans from the receiver's inbox and nests them under the run's root.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde_json::Value;

use crate::chain::config::{ChainConfig, DocumentsFrom};
use crate::receiver::Inbox;
use crate::trace::{OpenSpan, Span, TraceBuilder};

/// The default wait for a service's spans after its reply: the OpenTelemetry batch span
/// processor's default export delay.
pub const DEFAULT_GRACE: Duration = Duration::from_millis(5000);

#[derive(Debug, Default)]
pub struct SpanIntake {
    /// Where the chain asks ragprobe to listen (`receive_otlp:`); `--receive-otlp`
    /// overrides it.
    pub listen: Option<String>,
    pub grace: Duration,
    pub documents_from: DocumentsFrom,
    inbox: OnceLock<Arc<Inbox>>,
}

impl SpanIntake {
    pub fn from_config(config: &ChainConfig) -> Self {
        SpanIntake {
            listen: config.receive_otlp.clone(),
            grace: config
                .span_grace_ms
                .map_or(DEFAULT_GRACE, Duration::from_millis),
            documents_from: config.documents_from.unwrap_or_default(),
            inbox: OnceLock::new(),
        }
    }

    /// Connects the chain to a running receiver; a second call is ignored.
    pub fn attach(&self, inbox: Arc<Inbox>) {
        let _ = self.inbox.set(inbox);
    }

    pub fn is_attached(&self) -> bool {
        self.inbox.get().is_some()
    }

    /// Before the request: spans of this trace are now the run's, not unknown.
    pub fn expect(&self, trace: &TraceBuilder) {
        if let Some(inbox) = self.inbox.get() {
            inbox.expect(trace.trace_id());
        }
    }

    /// After the reply (`replied`) or the failure: the trace's spans, waited for until
    /// whole or the grace period ends. A request that got no reply does not wait: a service
    /// that never answered has nothing more to send. Records on the root what was joined.
    pub async fn collect(
        &self,
        trace: &TraceBuilder,
        root: &mut OpenSpan,
        replied: bool,
    ) -> Vec<Span> {
        let Some(inbox) = self.inbox.get() else {
            return Vec::new();
        };
        let grace = if replied { self.grace } else { Duration::ZERO };
        let collected = inbox.collect(trace.trace_id(), root.id(), grace).await;
        root.set("received_spans", collected.spans.len());
        root.set("received_complete", collected.complete);
        root.set(
            "received_wait_ms",
            (collected.waited.as_secs_f64() * 1000.0).round(),
        );
        collected.spans
    }
}

/// Adds received spans under `root`: one whose parent is neither the root nor another
/// received span (its parent was never exported, or was dropped) hangs under the root,
/// with the missing parent's id kept.
pub fn join(trace: &mut TraceBuilder, root: &OpenSpan, spans: Vec<Span>) {
    let ids: std::collections::HashSet<String> = spans.iter().map(|s| s.span_id.clone()).collect();
    for mut span in spans {
        let parent_known = span
            .parent_span_id
            .as_deref()
            .is_some_and(|p| p == root.id() || ids.contains(p));
        if !parent_known {
            if let Some(missing) = span.parent_span_id.take() {
                span.attributes
                    .insert("ragprobe.missing_parent".into(), Value::String(missing));
            }
            span.parent_span_id = Some(root.id().to_owned());
        }
        trace.adopt(span, root.id());
    }
}
