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

/// Writes the folder's traces as OTLP JSON Lines, a batch per line; returns how many.
pub fn write_json_lines(dir: &Path, suite: &str, out: &mut impl Write) -> std::io::Result<u64> {
    let mut current: Vec<OtlpSpan> = Vec::new();
    let mut in_batch = 0;
    let mut total = 0;
    let flush = |spans: &[OtlpSpan], out: &mut dyn Write| -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, &json::request(spans)).map_err(std::io::Error::other)?;
        out.write_all(b"\n")
    };
    for record in RunReader::open(dir)? {
        current.extend(otlp::spans_for(&record?, suite));
        in_batch += 1;
        total += 1;
        if in_batch == BATCH {
            flush(&current, out)?;
            current.clear();
            in_batch = 0;
        }
    }
    if in_batch > 0 {
        flush(&current, out)?;
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
    let mut current: Vec<OtlpSpan> = Vec::new();
    let mut in_batch = 0u64;
    let mut records = RunReader::open(dir)?;
    loop {
        let next = records.next().transpose()?;
        let end = next.is_none();
        if let Some(record) = next {
            current.extend(otlp::spans_for(&record, suite));
            in_batch += 1;
        }
        if in_batch == BATCH as u64 || (end && in_batch > 0) {
            match send::post(client, target, &current).await {
                Ok(()) => report.sent += in_batch,
                Err(error) => {
                    report.failed += in_batch;
                    report.first_error.get_or_insert(error.to_string());
                }
            }
            current.clear();
            in_batch = 0;
        }
        if end {
            return Ok(report);
        }
    }
}
