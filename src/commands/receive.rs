//! The OTLP receivers a command listens with: one per address that a chain's
//! `receive_otlp:` or `--receive-otlp` names, started before the first run, kept until the
//! command ends, and summed up on stderr.

use crate::chain::Chain;
use crate::chain::config::DocumentsFrom;
use crate::error::AppError;
use crate::out;
use crate::receiver::{Receiver, ReceiverCounts};

#[derive(Default)]
pub struct Receivers {
    listening: Vec<(String, Receiver)>,
}

impl Receivers {
    /// Connects `chain` to the receiver for `flag` or its own `receive_otlp`, starting it
    /// on first use. Must run inside the runtime.
    pub async fn attach(
        &mut self,
        chain: &Chain,
        flag: Option<&str>,
        quiet: bool,
    ) -> Result<(), AppError> {
        if let Some(flag) = flag {
            crate::receiver::parse_addr(flag)?;
        }
        let Some(intake) = chain.span_intake() else {
            if flag.is_some() {
                out::eprintln(
                    "warning: --receive-otlp: a pipeline chain records its own spans; there is no service to receive from",
                );
            }
            return Ok(());
        };
        let Some(addr) = flag.or(intake.listen.as_deref()) else {
            if intake.documents_from == DocumentsFrom::Spans {
                return Err(AppError::Usage(
                    "`documents_from: spans` needs the service's spans: set `receive_otlp: 127.0.0.1:4318` on the chain or pass --receive-otlp".into(),
                ));
            }
            return Ok(());
        };
        let at = match self.listening.iter().position(|(a, _)| a == addr) {
            Some(at) => at,
            None => {
                let receiver = Receiver::start(addr).await?;
                if !quiet {
                    out::eprintln(&format!(
                        "otlp receiver: listening at {} (point the service's OTEL_EXPORTER_OTLP_TRACES_ENDPOINT here)",
                        receiver.endpoint()
                    ));
                }
                self.listening.push((addr.to_owned(), receiver));
                self.listening.len() - 1
            }
        };
        intake.attach(std::sync::Arc::clone(&self.listening[at].1.inbox));
        Ok(())
    }

    /// One line per receiver: what joined, what came late or belonged to no run, and a
    /// hint when nothing arrived at all.
    pub fn summarize(&self, quiet: bool) {
        for (_, receiver) in &self.listening {
            let counts = receiver.counts();
            let troubled = counts.joined == 0
                || counts.late
                    + counts.unknown
                    + counts.over_limit
                    + counts.rejected
                    + counts.attribute_bytes_dropped
                    > 0;
            if !quiet || troubled {
                out::eprintln(&summary_line(&receiver.endpoint(), &counts));
            }
        }
    }
}

fn summary_line(endpoint: &str, c: &ReceiverCounts) -> String {
    if c.spans == 0 && c.rejected == 0 {
        return format!(
            "otlp receiver: no spans arrived at {endpoint}; is the service exporting there, and does it continue the `traceparent` ragprobe sends?"
        );
    }
    let mut line = format!(
        "otlp receiver: {} spans joined their runs ({} requests)",
        c.joined, c.requests
    );
    let notes = [
        (
            c.incomplete_runs,
            "runs recorded before their spans were complete (raise span_grace_ms)",
        ),
        (c.late, "late spans dropped"),
        (
            c.unknown,
            "spans of traces no run sent dropped (a service that does not continue `traceparent`?)",
        ),
        (c.over_limit, "spans over the memory bound dropped"),
        (
            c.attribute_bytes_dropped,
            "attribute bytes not kept (strings over 32 KiB, spans over 256 KiB of attributes)",
        ),
        (c.rejected, "requests refused"),
    ];
    for (count, what) in notes.into_iter().filter(|(count, _)| *count > 0) {
        line.push_str(&format!(" · {count} {what}"));
    }
    line
}
