//! A suite run as an MLflow run: once `link::begin` has the run, [`publish`] logs a
//! finished report folder: the traces MLflow lacks, their links to the
//! run, every verdict as assessments, params, metrics, tags, the report files as
//! artifacts, and the run's final status.
//!
//! Everything is read back from the folder, never from memory, so `ragprobe export DIR
//! --mlflow` publishes a folder later (the server was down, or another experiment is
//! wanted) exactly as `run` would have. Publishing again adds nothing twice: traces MLflow
//! already has are not resent, assessments already under ragprobe's source are skipped,
//! params and metrics are the same values (params from meta.json and mlflow.json, metric
//! timestamps the run's creation time), which MLflow takes as no change.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use crate::export::otlp::{self, OtlpSpan};
use crate::export::send::{self, OtlpTarget};
use crate::mlflow::assessments::{self, CaseChecks, SOURCE_ID};
use crate::mlflow::client::{Mlflow, MlflowError, trace_search};
use crate::mlflow::link::{
    PublishError, RunRef, artifact_path, at, mlflow_trace_id, now_ms, otlp_target, query_value,
    set_status,
};
use crate::mlflow::values::{self, RunValues};
use crate::model::meta::Meta;
use crate::model::summary::{SuiteResult, read_summary};
use crate::secrets::scrub;
use crate::store::RunReader;

/// The report files uploaded as the run's artifacts, when the folder has them.
const ARTIFACTS: &[&str] = &[
    "report.html",
    "summary.md",
    "summary.json",
    "junit.xml",
    "results.parquet",
    "retrieved.parquet",
    "meta.json",
    "runs.jsonl",
];

/// Assessment requests in flight at once.
const IN_FLIGHT: usize = 8;

/// What [`publish`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Published {
    /// Traces MLflow lacked, sent now.
    pub traces_sent: u64,
    /// Traces of the folder, all linked to the run.
    pub traces_linked: u64,
    pub assessments: u64,
    /// Assessments found from an earlier publish, not written again.
    pub assessments_kept: u64,
    pub metrics: usize,
    pub params: usize,
    pub artifacts: Vec<String>,
    /// Why no artifact could be uploaded, when none could.
    pub artifacts_skipped: Option<String>,
    /// The suite was interrupted: the run is marked KILLED, the rest waits for `--resume`.
    pub interrupted: bool,
    /// Worth telling, not worth failing for.
    pub warnings: Vec<String>,
}

/// One line on what was published where, and how long it took.
pub fn describe(done: &Published, run: &RunRef, took: std::time::Duration) -> String {
    use crate::text::count;
    if done.interrupted {
        return format!(
            "mlflow: run {} marked interrupted; `ragprobe run --resume` continues it",
            run.url
        );
    }
    format!(
        "mlflow: run {} in experiment `{}`: {} linked ({} sent now), {} written ({} already there), {}, {}, {} in {:.1} s",
        run.url,
        run.experiment_name,
        count(done.traces_linked, "trace"),
        done.traces_sent,
        count(done.assessments, "assessment"),
        done.assessments_kept,
        count(done.metrics as u64, "metric"),
        count(done.params as u64, "param"),
        count(done.artifacts.len() as u64, "report file"),
        took.as_secs_f64()
    )
}

/// Logs the finished report folder `dir` to `run`. `checks` are the cases' expectations
/// (empty when the suite file cannot be read: then only failed expectations show).
pub async fn publish(
    mlflow: &Mlflow,
    run: &RunRef,
    dir: &Path,
    checks: &HashMap<String, CaseChecks>,
) -> Result<Published, PublishError> {
    let report = read_summary(dir).map_err(|e| PublishError::Read {
        path: dir.join(crate::model::summary::SUMMARY_FILE),
        cause: std::io::Error::other(e.to_string()),
    })?;
    let meta = Meta::read(dir).map_err(|source| PublishError::Read {
        path: dir.join(crate::model::meta::META_FILE),
        cause: source,
    })?;
    let mut published = Published::default();
    let end_status = |result| async move {
        set_status(
            mlflow,
            &run.run_id,
            values::run_status(result),
            Some(now_ms()),
        )
        .await
        .map_err(at("setting the run's status"))
    };
    if report.result == SuiteResult::Interrupted {
        // The rest waits for `--resume`, which continues this run.
        end_status(report.result).await?;
        published.interrupted = true;
        return Ok(published);
    }

    // 1. Traces MLflow lacks, sent; every trace linked; what assessments are still due.
    let traces = sync_traces(mlflow, run, dir, &meta.suite_name, checks).await?;
    published.traces_sent = traces.sent;
    published.traces_linked = traces.linked;
    published.assessments_kept = traces.assessments_kept;
    let mut durations = traces.durations;
    let pending = traces.pending;

    // 2. Verdicts as assessments, a few at a time.
    published.assessments = post_assessments(mlflow, pending).await?;

    // 3. Params, metrics, tags.
    let RunValues {
        params,
        metrics,
        mut tags,
    } = values::run_values(&report, &meta, &mut durations, run.git_commit.as_deref());
    if let Ok(note) = std::fs::read_to_string(dir.join(crate::model::summary::MARKDOWN_FILE)) {
        // The run's description in MLflow's UI.
        tags.push((
            "mlflow.note.content".into(),
            note.chars().take(8000).collect(),
        ));
    }
    published.params = params.len();
    published.metrics = metrics.len();
    // The same timestamp at every publish: MLflow keeps one point per (value, time, step).
    let timestamp = humantime::parse_rfc3339(&meta.created_at)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(now_ms, |d| d.as_millis() as u64);
    if let Err(error) = log_params(mlflow, run, &params).await {
        match error {
            // Logged before with other values (a folder resumed after its suite file
            // changed): MLflow keeps the first; the rest still goes on.
            PublishError::Mlflow {
                cause: MlflowError::Status { ref message, .. },
                ..
            } if message.contains("Changing param values is not allowed") => {
                published.warnings.push(format!(
                    "params kept as first logged (they changed since): {message}"
                ));
            }
            error => return Err(error),
        }
    }
    log_metrics_and_tags(mlflow, run, metrics, tags, timestamp).await?;

    // 4. Report files as artifacts, 5. the status.
    let answer = mlflow
        .get(
            &format!(
                "/api/2.0/mlflow/runs/get?run_id={}",
                query_value(&run.run_id)
            ),
            "runs/get",
        )
        .await
        .map_err(at("the run"))?;
    let uri = answer["run"]["info"]["artifact_uri"]
        .as_str()
        .unwrap_or_default();
    match artifact_path(uri) {
        Some(prefix) => published.artifacts = upload_report_files(mlflow, &prefix, dir).await?,
        None => {
            published.artifacts_skipped = Some(format!(
                "the server stores this run's artifacts at `{}`, which it does not serve over HTTP; start `mlflow server` with `--serve-artifacts` and `--artifacts-destination` (not a local `--default-artifact-root`) to get the report files in MLflow",
                crate::secrets::redact_url(uri)
            ))
        }
    }
    end_status(report.result).await?;
    Ok(published)
}

/// Uploads the report files the folder has; returns their names.
async fn upload_report_files(
    mlflow: &Mlflow,
    prefix: &str,
    dir: &Path,
) -> Result<Vec<String>, PublishError> {
    let mut uploaded = Vec::new();
    for name in ARTIFACTS {
        let Ok(bytes) = std::fs::read(dir.join(name)) else {
            continue;
        };
        mlflow
            .send(
                Method::PUT,
                &format!("{prefix}/{name}"),
                Some(bytes),
                "application/octet-stream",
                "mlflow-artifacts upload",
            )
            .await
            .map_err(at("uploading the report files"))?;
        uploaded.push((*name).to_owned());
    }
    Ok(uploaded)
}

/// What one pass over the folder's records found and did.
struct TraceSync {
    sent: u64,
    linked: u64,
    assessments_kept: u64,
    durations: Vec<f64>,
    /// (trace id, assessment body) still to write.
    pending: Vec<(String, Value)>,
}

/// One pass over `runs.jsonl`: sends the traces MLflow lacks (in batches, so memory stays
/// bounded), links every trace to the run, and lists the assessments not yet written.
async fn sync_traces(
    mlflow: &Mlflow,
    run: &RunRef,
    dir: &Path,
    suite: &str,
    checks: &HashMap<String, CaseChecks>,
) -> Result<TraceSync, PublishError> {
    let mut known = linked_traces(mlflow, run).await?;
    let read_error = |source| PublishError::Read {
        path: dir.join(crate::store::RUNS_FILE),
        cause: source,
    };
    let mut sync = TraceSync {
        sent: 0,
        linked: 0,
        assessments_kept: 0,
        durations: Vec::new(),
        pending: Vec::new(),
    };
    let mut trace_ids: Vec<String> = Vec::new();
    let mut missing: Vec<OtlpSpan> = Vec::new();
    let mut missing_traces = 0u64;
    let target = otlp_target(mlflow, run);
    let client = send::client().map_err(|e| PublishError::Read {
        path: dir.to_owned(),
        cause: std::io::Error::other(e.to_string()),
    })?;
    for record in RunReader::open(dir).map_err(read_error)? {
        let record = record.map_err(read_error)?;
        sync.durations.push(record.duration_ms);
        // A conversation run is a trace per turn, grouped in MLflow as one session; a turn
        // has no case-level expectations (its own are in its verdict).
        let case_checks = checks
            .get(&record.case)
            .filter(|_| !record.is_conversation());
        for unit in otlp::exported(&record) {
            let record = unit.as_ref();
            let trace_id = mlflow_trace_id(record, run);
            if !known.contains_key(&trace_id) {
                // Not linked to this run, but maybe in MLflow already: a merged folder's
                // shard traces, a run deleted in the UI, another spelling of the address.
                if let Some(ours) = stored_trace(mlflow, &trace_id).await? {
                    known.insert(trace_id.clone(), ours);
                }
            }
            let existing = known.get(&trace_id);
            if existing.is_none() {
                let hex = trace_id.trim_start_matches("tr-");
                missing.extend(otlp::spans_of_one(record, suite).into_iter().map(|span| {
                    OtlpSpan {
                        trace_id: hex.to_owned(),
                        ..span
                    }
                }));
                missing_traces += 1;
            }
            // A scripted turn was never asked: there is nothing of it to assess.
            let assessed = if otlp::is_scripted(record) {
                Vec::new()
            } else {
                assessments::for_record(record, case_checks)
            };
            for assessment in assessed {
                let kind = if assessment.is_expectation() {
                    "expectation"
                } else {
                    "feedback"
                };
                if existing.is_some_and(|have| have.contains(&(assessment.name.clone(), kind))) {
                    sync.assessments_kept += 1;
                    continue;
                }
                sync.pending
                    .push((trace_id.clone(), assessment.body(&trace_id, record)));
            }
            trace_ids.push(trace_id);
        }
        if missing_traces >= 64 {
            send_traces(&client, &target, &mut missing).await?;
            sync.sent += missing_traces;
            missing_traces = 0;
        }
    }
    if missing_traces > 0 {
        send_traces(&client, &target, &mut missing).await?;
        sync.sent += missing_traces;
    }
    for chunk in trace_ids.chunks(100) {
        mlflow
            .post(
                "/api/2.0/mlflow/traces/link-to-run",
                &json!({"trace_ids": chunk, "run_id": run.run_id}),
                "traces/link-to-run",
            )
            .await
            .map_err(at("linking traces to the run"))?;
    }
    sync.linked = trace_ids.len() as u64;
    Ok(sync)
}

/// The (name, kind) of the assessments ragprobe wrote on a trace.
fn our_assessments(info: &Value) -> HashSet<(String, &'static str)> {
    info["assessments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["source"]["source_id"] == SOURCE_ID)
        .filter_map(|a| {
            let kind = if a.get("expectation").is_some() {
                "expectation"
            } else {
                "feedback"
            };
            Some((a["assessment_name"].as_str()?.to_owned(), kind))
        })
        .collect()
}

/// A trace MLflow already has (in any experiment), with ragprobe's assessments on it;
/// `None` when it has none by that id.
async fn stored_trace(
    mlflow: &Mlflow,
    trace_id: &str,
) -> Result<Option<HashSet<(String, &'static str)>>, PublishError> {
    match mlflow
        .get(
            &format!("/api/3.0/mlflow/traces/{}", query_value(trace_id)),
            "traces/get",
        )
        .await
    {
        Ok(answer) => Ok(Some(our_assessments(&answer["trace"]["trace_info"]))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(at("looking up a trace")(e)),
    }
}

/// Every trace linked to the run, with the (name, kind) of the assessments ragprobe
/// already wrote on it.
async fn linked_traces(
    mlflow: &Mlflow,
    run: &RunRef,
) -> Result<HashMap<String, HashSet<(String, &'static str)>>, PublishError> {
    let mut found = HashMap::new();
    // Run ids are hex: no quote to escape.
    let filter = format!("run_id = '{}'", run.run_id);
    for info in search_traces(mlflow, &run.experiment_id, &filter, usize::MAX)
        .await
        .map_err(at("searching the run's traces"))?
    {
        let Some(id) = info["trace_id"].as_str() else {
            continue;
        };
        let ours = our_assessments(&info);
        found.insert(id.to_owned(), ours);
    }
    Ok(found)
}

/// The trace infos (no spans) a search filter matches in an experiment, newest first, at
/// most `limit`.
pub async fn search_traces(
    mlflow: &Mlflow,
    experiment_id: &str,
    filter: &str,
    limit: usize,
) -> Result<Vec<Value>, MlflowError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let mut token: Option<String> = None;
    // A server that always says "there is more" must not keep us paging: a token seen
    // before, pages that bring nothing, too many pages or too long all stop the search.
    let mut seen_tokens = std::collections::HashSet::new();
    let (mut pages, mut empty_pages) = (0u32, 0u32);
    let started = std::time::Instant::now();
    let stop = |why: String| MlflowError::Paging {
        url: crate::secrets::redact_url(mlflow.base()),
        what: "traces/search".into(),
        why,
    };
    loop {
        pages += 1;
        if pages > MAX_SEARCH_PAGES {
            return Err(stop(format!("more than {MAX_SEARCH_PAGES} pages")));
        }
        if started.elapsed() > MAX_SEARCH_TIME {
            return Err(stop(format!(
                "still paging after {} s",
                MAX_SEARCH_TIME.as_secs()
            )));
        }
        let page = mlflow
            .post(
                "/api/3.0/mlflow/traces/search",
                &trace_search(experiment_id, filter, token.as_deref()),
                "traces/search",
            )
            .await?;
        let before = out.len();
        for item in page["traces"].as_array().into_iter().flatten() {
            // Each result is a TraceInfo (older servers wrap it in `trace_info`).
            out.push(item.get("trace_info").unwrap_or(item).clone());
            if out.len() >= limit {
                return Ok(out);
            }
        }
        empty_pages = if out.len() == before {
            empty_pages + 1
        } else {
            0
        };
        match page["next_page_token"].as_str() {
            Some(_) if empty_pages >= MAX_EMPTY_PAGES => {
                return Err(stop(format!(
                    "{MAX_EMPTY_PAGES} pages in a row held no trace but promised more"
                )));
            }
            Some(next) if !next.is_empty() => {
                if !seen_tokens.insert(next.to_owned()) {
                    return Err(stop("it sent a page token it had sent before".into()));
                }
                token = Some(next.to_owned());
            }
            _ => return Ok(out),
        }
    }
}

/// Bounds on one trace search: pages (MLflow's pages hold up to 100 traces, so this is a
/// million traces), empty pages in a row, and wall time.
const MAX_SEARCH_PAGES: u32 = 10_000;
const MAX_EMPTY_PAGES: u32 = 3;
const MAX_SEARCH_TIME: std::time::Duration = std::time::Duration::from_secs(600);

async fn send_traces(
    client: &reqwest::Client,
    target: &OtlpTarget,
    spans: &mut Vec<OtlpSpan>,
) -> Result<(), PublishError> {
    let result = send::post(client, target, spans).await;
    spans.clear();
    result.map_err(|e| at("sending traces")(MlflowError::Traces(e.to_string())))
}

async fn post_assessments(
    mlflow: &Mlflow,
    pending: Vec<(String, Value)>,
) -> Result<u64, PublishError> {
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (trace_id, body) in pending {
        let mlflow = mlflow.clone();
        let slots = Arc::clone(&slots);
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let path = format!("/api/3.0/mlflow/traces/{trace_id}/assessments");
            mlflow.post(&path, &body, "traces/assessments").await
        });
    }
    let mut written = 0;
    let mut first_error = None;
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Ok(_)) => written += 1,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(MlflowError::Shape {
                    what: "traces/assessments".into(),
                    cause: e.to_string(),
                });
            }
        }
    }
    match first_error {
        Some(e) => Err(at("writing assessments")(e)),
        None => Ok(written),
    }
}

/// `runs/log-batch` takes at most 100 params per call. Values are scrubbed of secrets.
async fn log_params(
    mlflow: &Mlflow,
    run: &RunRef,
    params: &[(String, String)],
) -> Result<(), PublishError> {
    for chunk in params.chunks(100) {
        log_batch(mlflow, run, pairs(chunk), json!([]), json!([])).await?;
    }
    Ok(())
}

/// At most 100 tags and 1000 metrics per call.
async fn log_metrics_and_tags(
    mlflow: &Mlflow,
    run: &RunRef,
    metrics: Vec<(String, f64)>,
    tags: Vec<(String, String)>,
    timestamp: u64,
) -> Result<(), PublishError> {
    for chunk in tags.chunks(100) {
        log_batch(mlflow, run, json!([]), json!([]), pairs(chunk)).await?;
    }
    for chunk in metrics.chunks(1000) {
        let metrics: Vec<Value> = chunk
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v, "timestamp": timestamp, "step": 0}))
            .collect();
        log_batch(mlflow, run, json!([]), json!(metrics), json!([])).await?;
    }
    Ok(())
}

fn pairs(items: &[(String, String)]) -> Value {
    json!(
        items
            .iter()
            .map(|(k, v)| json!({"key": k, "value": scrub(v)}))
            .collect::<Vec<_>>()
    )
}

async fn log_batch(
    mlflow: &Mlflow,
    run: &RunRef,
    params: Value,
    metrics: Value,
    tags: Value,
) -> Result<(), PublishError> {
    mlflow
        .post(
            "/api/2.0/mlflow/runs/log-batch",
            &json!({"run_id": run.run_id, "params": params, "metrics": metrics, "tags": tags}),
            "runs/log-batch",
        )
        .await
        .map_err(at("logging params, metrics and tags"))?;
    Ok(())
}

/// Reads the folder's suite for its expectations; a suite file that moved or no longer
/// loads leaves only the failed expectations to show.
pub fn checks_from_folder(meta: &Meta) -> HashMap<String, CaseChecks> {
    crate::suite::load::load_all(
        std::slice::from_ref(&meta.suite_path),
        meta.chain_path.as_deref(),
    )
    .ok()
    .and_then(|mut suites| suites.pop())
    .filter(|suite| suite.spec.name == meta.suite_name)
    .map(|suite| assessments::case_checks(&suite))
    .unwrap_or_default()
}
