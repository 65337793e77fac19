//! Where received spans wait for their run. A run says which trace it expects before it
//! calls the service, and collects that trace's spans once the service has answered,
//! waiting (bounded) until the tree is whole. Spans of a trace no run expects are counted
//! and dropped; so are spans that come after their run was recorded, and spans beyond the
//! memory bounds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use crate::receiver::decode::Received;
use crate::trace::Span;

/// Memory bounds: spans and their bytes held at once over all runs, and per run.
#[derive(Debug, Clone, Copy)]
pub struct InboxLimits {
    pub max_spans: usize,
    pub max_spans_per_trace: usize,
    pub max_bytes: usize,
    pub max_bytes_per_trace: usize,
    /// Finished traces remembered, to tell a late span from one of an unknown trace.
    pub remembered: usize,
}

impl Default for InboxLimits {
    fn default() -> Self {
        InboxLimits {
            max_spans: 200_000,
            max_spans_per_trace: 10_000,
            max_bytes: 256 * 1024 * 1024,
            max_bytes_per_trace: 8 * 1024 * 1024,
            remembered: 100_000,
        }
    }
}

/// What the receiver saw over a whole command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReceiverCounts {
    /// OTLP requests answered 200.
    pub requests: u64,
    /// OTLP requests refused (bad body, too large, wrong path or type).
    pub rejected: u64,
    pub spans: u64,
    /// Spans given to their run.
    pub joined: u64,
    /// Spans that came after their run was recorded.
    pub late: u64,
    /// Spans of traces no run expects (a service that does not continue `traceparent`,
    /// or another program exporting here).
    pub unknown: u64,
    /// Spans dropped at the memory bounds (spans or bytes, per run or in all).
    pub over_limit: u64,
    /// Attribute bytes not kept: cut from long strings, beyond a span's attribute budget.
    pub attribute_bytes_dropped: u64,
    /// Runs whose spans were still incomplete when the grace period ended.
    pub incomplete_runs: u64,
}

/// One run's spans as collected.
#[derive(Debug, Default)]
pub struct Collected {
    pub spans: Vec<Span>,
    /// Every span's parent is the run's root or another received span, and at least one
    /// hangs under the root: the service's top span, which ends (and is exported) last.
    pub complete: bool,
    pub waited: Duration,
}

#[derive(Default)]
struct State {
    open: HashMap<String, Vec<Span>>,
    /// Bytes held per open trace, and in all.
    open_bytes: HashMap<String, usize>,
    held: usize,
    held_bytes: usize,
    finished: HashSet<String>,
    finished_order: VecDeque<String>,
    counts: ReceiverCounts,
    /// A run waited the whole grace period and nothing at all had ever arrived: later runs
    /// do not wait again for a service that does not export here.
    silent: bool,
}

pub struct Inbox {
    state: Mutex<State>,
    arrived: Notify,
    limits: InboxLimits,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox")
            .field("counts", &self.counts())
            .finish()
    }
}

impl Inbox {
    pub fn new(limits: InboxLimits) -> Self {
        Inbox {
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves counts, not invariants, half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A run is about to send `trace_id` to the service.
    pub fn expect(&self, trace_id: &str) {
        self.lock().open.entry(trace_id.to_owned()).or_default();
    }

    pub fn deliver(&self, spans: Vec<Received>) {
        {
            let mut state = self.lock();
            let state = &mut *state;
            for received in spans {
                state.counts.spans += 1;
                state.counts.attribute_bytes_dropped += received.dropped_bytes;
                let size = received.size();
                let trace_bytes = state
                    .open_bytes
                    .get(&received.trace_id)
                    .copied()
                    .unwrap_or(0);
                match state.open.get_mut(&received.trace_id) {
                    Some(held) => {
                        if state.held >= self.limits.max_spans
                            || held.len() >= self.limits.max_spans_per_trace
                            || state.held_bytes + size > self.limits.max_bytes
                            || trace_bytes + size > self.limits.max_bytes_per_trace
                        {
                            state.counts.over_limit += 1;
                        } else {
                            held.push(received.span);
                            state.held += 1;
                            state.held_bytes += size;
                            *state.open_bytes.entry(received.trace_id).or_default() += size;
                            state.counts.joined += 1;
                        }
                    }
                    None if state.finished.contains(&received.trace_id) => state.counts.late += 1,
                    None => state.counts.unknown += 1,
                }
            }
        }
        self.arrived.notify_waiters();
    }

    pub fn count_request(&self, accepted: bool) {
        let mut state = self.lock();
        if accepted {
            state.counts.requests += 1;
        } else {
            state.counts.rejected += 1;
        }
    }

    pub fn counts(&self) -> ReceiverCounts {
        self.lock().counts.clone()
    }

    /// The spans of `trace_id`, once whole under `root` or when `grace` has passed; the
    /// trace is then closed, and what comes later counts as late.
    pub async fn collect(&self, trace_id: &str, root: &str, grace: Duration) -> Collected {
        // tokio's clock, so tests can pause it.
        let started = tokio::time::Instant::now();
        let deadline = started + grace;
        loop {
            // Registered before the check, so a delivery between the check and the wait
            // still wakes this run.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            {
                let state = self.lock();
                let spans = state.open.get(trace_id).map_or(&[][..], Vec::as_slice);
                if is_complete(spans, root) || (state.silent && state.counts.joined == 0) {
                    break;
                }
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                break;
            }
        }
        let mut state = self.lock();
        let spans = state.open.remove(trace_id).unwrap_or_default();
        state.held -= spans.len();
        let bytes = state.open_bytes.remove(trace_id).unwrap_or(0);
        state.held_bytes -= bytes;
        let complete = is_complete(&spans, root);
        if !complete {
            state.counts.incomplete_runs += 1;
            if state.counts.joined == 0 {
                state.silent = true;
            }
        }
        if state.finished.insert(trace_id.to_owned()) {
            state.finished_order.push_back(trace_id.to_owned());
            if state.finished_order.len() > self.limits.remembered
                && let Some(oldest) = state.finished_order.pop_front()
            {
                state.finished.remove(&oldest);
            }
        }
        Collected {
            spans,
            complete,
            waited: started.elapsed(),
        }
    }
}

fn is_complete(spans: &[Span], root: &str) -> bool {
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    spans
        .iter()
        .any(|s| s.parent_span_id.as_deref() == Some(root))
        && spans.iter().all(|s| match s.parent_span_id.as_deref() {
            Some(parent) => parent == root || ids.contains(parent),
            None => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{SpanKind, SpanStatus};

    fn span(id: &str, parent: &str) -> Span {
        Span {
            span_id: id.into(),
            parent_span_id: Some(parent.into()),
            name: id.into(),
            kind: SpanKind::Chain,
            start_ns: 0,
            end_ns: 1,
            status: SpanStatus::Ok,
            attributes: Default::default(),
            service: Some("svc".into()),
        }
    }

    fn received(trace: &str, id: &str, parent: &str) -> Received {
        Received {
            trace_id: trace.into(),
            span: span(id, parent),
            dropped_bytes: 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_waits_for_its_top_span_then_later_spans_are_late() {
        let inbox = std::sync::Arc::new(Inbox::new(InboxLimits::default()));
        inbox.expect("t1");
        // The child arrives first (it ended first); its parent is not there yet.
        inbox.deliver(vec![received("t1", "child", "top")]);
        let waiting = {
            let inbox = inbox.clone();
            tokio::spawn(async move { inbox.collect("t1", "root", Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        inbox.deliver(vec![
            received("t1", "top", "root"),
            received("t9", "x", "y"),
        ]);
        let collected = waiting.await.expect("joins");
        assert!(collected.complete);
        assert_eq!(collected.spans.len(), 2);
        assert!(
            collected.waited < Duration::from_secs(1),
            "{:?}",
            collected.waited
        );
        inbox.deliver(vec![received("t1", "straggler", "top")]);
        let counts = inbox.counts();
        assert_eq!((counts.joined, counts.late, counts.unknown), (2, 1, 1));
        assert_eq!(counts.incomplete_runs, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_incomplete_trace_is_taken_at_the_grace_and_silence_stops_later_waits() {
        let inbox = Inbox::new(InboxLimits::default());
        inbox.expect("t1");
        let collected = inbox.collect("t1", "root", Duration::from_secs(2)).await;
        assert!(!collected.complete && collected.spans.is_empty());
        assert!(collected.waited >= Duration::from_secs(2));
        // Nothing ever arrived: the next run does not wait again.
        inbox.expect("t2");
        let next = inbox.collect("t2", "root", Duration::from_secs(2)).await;
        assert!(next.waited < Duration::from_millis(10));
        assert_eq!(inbox.counts().incomplete_runs, 2);
    }

    #[tokio::test]
    async fn memory_bounds_drop_and_count() {
        let inbox = Inbox::new(InboxLimits {
            max_spans: 3,
            max_spans_per_trace: 2,
            remembered: 1,
            ..InboxLimits::default()
        });
        inbox.expect("a");
        inbox.expect("b");
        inbox.deliver(
            (0..3)
                .map(|i| received("a", &format!("a{i}"), "root"))
                .collect(),
        );
        inbox.deliver(
            (0..3)
                .map(|i| received("b", &format!("b{i}"), "root"))
                .collect(),
        );
        let counts = inbox.counts();
        assert_eq!((counts.joined, counts.over_limit), (3, 3));
        let a = inbox.collect("a", "root", Duration::ZERO).await;
        assert_eq!(a.spans.len(), 2);
        inbox.collect("b", "root", Duration::ZERO).await;
        // Only the last finished trace is remembered: `a` is now unknown, `b` late.
        inbox.deliver(vec![received("a", "x", "root"), received("b", "y", "root")]);
        let counts = inbox.counts();
        assert_eq!((counts.late, counts.unknown), (1, 1));
    }
}
