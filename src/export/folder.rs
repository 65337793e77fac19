//! A report folder's traces, exported after the fact: batches of traces read from
//! `runs.jsonl` one record at a time, sent to an OTLP endpoint or written as OTLP JSON
//! Lines (one `ExportTraceServiceRequest` per line).

use std::io::Write;
use std::path::Path;

use crate::export::json;
use crate::export::otlp::{self, OtlpSpan};
use crate::export::send::{self, ExportReport, OtlpTarget};
use crate::store::RunReader;

/// Traces per request or per line.
const BATCH: usize = 64;

/// The folder's traces, `BATCH` at a time: each item is a batch's spans and how many
/// traces it holds, read from `runs.jsonl` as it is consumed.
struct Batches {
    records: RunReader,
    suite: String,
}

impl Iterator for Batches {
    type Item = std::io::Result<(Vec<OtlpSpan>, u64)>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut spans = Vec::new();
        let mut traces = 0;
        while traces < BATCH as u64 {
            match self.records.next() {
                Some(Ok(record)) => {
                    // A conversation run is a trace per turn.
                    traces += record.turns.len().max(1) as u64;
                    spans.extend(otlp::spans_for(&record, &self.suite));
                }
                Some(Err(err)) => return Some(Err(err)),
                None => break,
            }
        }
        (traces > 0).then_some(Ok((spans, traces)))
    }
}

fn batches(dir: &Path, suite: &str) -> std::io::Result<Batches> {
    Ok(Batches {
        records: RunReader::open(dir)?,
        suite: suite.to_owned(),
    })
}

/// Writes the folder's traces as OTLP JSON Lines, a batch per line; returns how many.
pub fn write_json_lines(dir: &Path, suite: &str, out: &mut impl Write) -> std::io::Result<u64> {
    let mut total = 0;
    for batch in batches(dir, suite)? {
        let (spans, traces) = batch?;
        serde_json::to_writer(&mut *out, &json::request(&spans)).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
        total += traces;
    }
    out.flush()?;
    Ok(total)
}

/// Sends the folder's traces to `target`, batch by batch as they are read (memory stays
/// bounded by the batch); failures are counted, the first one kept.
pub async fn send(
    dir: &Path,
    suite: &str,
    target: &OtlpTarget,
    client: &reqwest::Client,
) -> std::io::Result<ExportReport> {
    let mut report = ExportReport::default();
    for batch in batches(dir, suite)? {
        let (spans, traces) = batch?;
        match send::post(client, target, &spans).await {
            Ok(()) => report.sent += traces,
            Err(error) => {
                report.failed += traces;
                report
                    .first_error
                    .get_or_insert_with(|| crate::secrets::scrub(&error.to_string()).into_owned());
            }
        }
    }
    Ok(report)
}
