//! A suite run as an MLflow run. [`begin`] finds or creates the experiment and the run
//! before the first suite run starts (so traces stream into it, linked as they arrive);
//! [`publish`] logs a finished report folder: the traces MLflow lacks, their links to the
//! run, every verdict as assessments, params, metrics, tags, the report files as
//! artifacts, and the run's final status.
//!
//! Everything is read back from the folder, never from memory, so `ragprobe export DIR
//! --mlflow` publishes a folder later (the server was down, or another experiment is
//! wanted) exactly as `run` would have. Publishing again adds nothing twice: traces MLflow
//! already has are not resent, assessments already under ragprobe's source are skipped,
//! params are logged with the same values.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::backend::redact::redact_url;
use crate::export::otlp::{self, OtlpSpan};
use crate::export::send::{self, OtlpTarget, Protocol};
use crate::mlflow::assessments::{self, CaseChecks, SOURCE_ID};
use crate::mlflow::client::{Mlflow, MlflowError, filter_string, trace_search};
use crate::mlflow::target::ExperimentRef;
use crate::mlflow::values::{self, RunValues};
use crate::model::meta::Meta;
use crate::model::summary::{SuiteReport, SuiteResult, read_summary};
use crate::store::RunReader;

/// Which MLflow run a report folder went to: written when the run is created, so a
/// resumed folder continues the same MLflow run and a republish finds it.
pub const MLFLOW_FILE: &str = "mlflow.json";

/// The report files uploaded as the run's artifacts, when the folder has them.
const ARTIFACTS: &[&str] = &[
    "report.html",
    "summary.md",
    "summary.json",
    "junit.xml",
    "results.parquet",
    "meta.json",
    "runs.jsonl",
];

/// Assessment requests in flight at once.
const IN_FLIGHT: usize = 8;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRef {
    /// Without credentials.
    pub tracking_uri: String,
    pub experiment_id: String,
    pub experiment_name: String,
    pub run_id: String,
    /// The run's page in the MLflow UI.
    pub url: String,
    /// The experiment that holds the folder's traces under their own ids: the first one
    /// the folder was logged to. MLflow keeps a trace in the experiment it first arrived
    /// in, so in any other experiment the traces get ids of their own ([`mlflow_trace_id`]).
    #[serde(default)]
    pub traces_experiment_id: String,
}

impl RunRef {
    /// Traces go to this run's experiment under their own ids (and so may stream there
    /// while the suite runs).
    pub fn owns_trace_ids(&self) -> bool {
        self.traces_experiment_id == self.experiment_id
    }
}

/// The id a record's trace has in `run`'s experiment: `tr-` and its own id in the
/// experiment that first received the folder's traces; elsewhere an id derived from its
/// own id and the experiment, the same at every publish.
pub fn mlflow_trace_id(record: &crate::model::record::RunRecord, run: &RunRef) -> String {
    format!("tr-{}", mlflow_trace_hex(&otlp::trace_id(record), run))
}

fn mlflow_trace_hex(own: &str, run: &RunRef) -> String {
    if run.owns_trace_ids() {
        return own.to_owned();
    }
    let hash = |salt: &str| {
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in salt
            .bytes()
            .chain([0])
            .chain(own.bytes())
            .chain([0])
            .chain(run.experiment_id.bytes())
        {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    format!("{:016x}{:016x}", hash("ragprobe-a"), hash("ragprobe-b"))
}

impl RunRef {
    pub fn read(dir: &Path) -> Option<RunRef> {
        let text = std::fs::read_to_string(dir.join(MLFLOW_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::atomic::write(&dir.join(MLFLOW_FILE), text + "\n")
    }
}

/// Why publishing stopped. The report folder is untouched by it.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("mlflow: {stage}: {cause}")]
    Mlflow {
        stage: &'static str,
        cause: MlflowError,
    },
    #[error("mlflow: cannot read {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
}

fn at(stage: &'static str) -> impl FnOnce(MlflowError) -> PublishError {
    move |cause| PublishError::Mlflow { stage, cause }
}

/// The experiment's id and name; a name that does not exist yet is created when
/// `create_missing`, else it is an error that says so.
pub async fn experiment(
    mlflow: &Mlflow,
    wanted: &ExperimentRef,
    create_missing: bool,
) -> Result<(String, String), MlflowError> {
    let by_name = |name: &str| {
        let path = format!(
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name={}",
            query_value(name)
        );
        async move { mlflow.get(&path, "experiments/get-by-name").await }
    };
    let read = |answer: &Value| -> Result<(String, String), MlflowError> {
        let experiment = &answer["experiment"];
        match (
            experiment["experiment_id"].as_str(),
            experiment["name"].as_str(),
        ) {
            (Some(id), Some(name)) => Ok((id.to_owned(), name.to_owned())),
            _ => Err(MlflowError::Shape {
                what: "experiments/get".into(),
                cause: "no experiment_id and name".into(),
            }),
        }
    };
    match wanted {
        ExperimentRef::Id(id) => {
            let path = format!(
                "/api/2.0/mlflow/experiments/get?experiment_id={}",
                query_value(id)
            );
            read(&mlflow.get(&path, "experiments/get").await?)
        }
        ExperimentRef::Name(name) => match by_name(name).await {
            Ok(answer) => read(&answer),
            Err(e) if e.is_not_found() && create_missing => {
                let created = mlflow
                    .post(
                        "/api/2.0/mlflow/experiments/create",
                        &json!({"name": name, "tags": [{"key": "mlflow.source.name", "value": "ragprobe"}]}),
                        "experiments/create",
                    )
                    .await;
                match created {
                    Ok(answer) => match answer["experiment_id"].as_str() {
                        Some(id) => Ok((id.to_owned(), name.to_owned())),
                        None => Err(MlflowError::Shape {
                            what: "experiments/create".into(),
                            cause: "no experiment_id".into(),
                        }),
                    },
                    // Another process created it in between.
                    Err(e) if e.error_code() == Some("RESOURCE_ALREADY_EXISTS") => {
                        read(&by_name(name).await?)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        },
        ExperimentRef::SuiteName => Err(MlflowError::Shape {
            what: "experiment".into(),
            cause: "no experiment name (MlflowTarget::experiment_for names it)".into(),
        }),
    }
}

/// The run a report folder logs to: the one its `mlflow.json` names (when it is on this
/// server, in this experiment, and still there), else a new one, recorded in the folder.
pub async fn begin(
    mlflow: &Mlflow,
    wanted: &ExperimentRef,
    dir: &Path,
    meta: &Meta,
) -> Result<RunRef, PublishError> {
    let (experiment_id, experiment_name) = experiment(mlflow, wanted, true)
        .await
        .map_err(at("the experiment"))?;
    let tracking_uri = redact_url(mlflow.base());
    let previous = RunRef::read(dir).filter(|r| r.tracking_uri == tracking_uri);
    // The first experiment a folder went to keeps its traces' own ids.
    let traces_experiment_id = previous
        .as_ref()
        .map(|r| r.traces_experiment_id.clone())
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| experiment_id.clone());
    if let Some(previous) = previous.filter(|r| r.experiment_id == experiment_id) {
        let path = format!(
            "/api/2.0/mlflow/runs/get?run_id={}",
            query_value(&previous.run_id)
        );
        match mlflow.get(&path, "runs/get").await {
            Ok(answer) if answer["run"]["info"]["lifecycle_stage"] == "active" => {
                mlflow
                    .post(
                        "/api/2.0/mlflow/runs/update",
                        &json!({"run_id": previous.run_id, "status": "RUNNING"}),
                        "runs/update",
                    )
                    .await
                    .map_err(at("reopening the run"))?;
                return Ok(previous);
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(at("the run")(e)),
        }
    }
    let run_name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| meta.suite_name.clone());
    let mut tags = vec![
        json!({"key": "mlflow.source.name", "value": "ragprobe"}),
        json!({"key": "mlflow.source.type", "value": "LOCAL"}),
        json!({"key": "ragprobe.suite", "value": meta.suite_name}),
        json!({"key": "ragprobe.report_dir", "value": dir.display().to_string()}),
    ];
    if let Some(commit) = values::git_commit(&meta.suite_path) {
        tags.push(json!({"key": "mlflow.source.git.commit", "value": commit}));
    }
    let created = mlflow
        .post(
            "/api/2.0/mlflow/runs/create",
            &json!({
                "experiment_id": experiment_id,
                "run_name": run_name,
                "start_time": now_ms(),
                "tags": tags,
            }),
            "runs/create",
        )
        .await
        .map_err(at("creating the run"))?;
    let run_id = created["run"]["info"]["run_id"]
        .as_str()
        .ok_or_else(|| {
            at("creating the run")(MlflowError::Shape {
                what: "runs/create".into(),
                cause: "no run.info.run_id".into(),
            })
        })?
        .to_owned();
    let run = RunRef {
        url: mlflow.run_url(&experiment_id, &run_id),
        traces_experiment_id,
        tracking_uri,
        experiment_id,
        experiment_name,
        run_id,
    };
    run.write(dir).map_err(|source| PublishError::Read {
        path: dir.join(MLFLOW_FILE),
        cause: source,
    })?;
    Ok(run)
}

/// The server's OTLP endpoint, with the headers that put traces in the run's experiment
/// and link them to the run as they arrive.
pub fn otlp_target(mlflow: &Mlflow, run: &RunRef) -> OtlpTarget {
    let mut headers = vec![
        (
            "x-mlflow-experiment-id".to_owned(),
            run.experiment_id.clone(),
        ),
        ("x-mlflow-run-id".to_owned(), run.run_id.clone()),
    ];
    if let Some(auth) = mlflow.auth() {
        headers.push(("authorization".to_owned(), auth.to_owned()));
    }
    OtlpTarget {
        endpoint: format!("{}/v1/traces", mlflow.base()),
        headers,
        protocol: Protocol::Protobuf,
    }
}

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
}

/// One line on what was published where, and how long it took.
pub fn describe(done: &Published, run: &RunRef, took: std::time::Duration) -> String {
    use crate::report::text::count;
    if done.interrupted {
        return format!(
            "mlflow: run {} marked interrupted; `ragprobe run --resume` continues it",
            run.url
        );
    }
    format!(
        "mlflow: run {} in experiment `{}`: {} linked ({} sent now), {} ({} kept), {}, {}, {} in {:.1} s",
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
    if report.result == SuiteResult::Interrupted {
        // The rest waits for `--resume`, which continues this run.
        set_status(mlflow, run, report.result).await?;
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
    } = values::run_values(
        &report,
        &meta,
        &mut durations,
        values::git_commit(&meta.suite_path).as_deref(),
    );
    if let Ok(note) = std::fs::read_to_string(dir.join(crate::model::summary::MARKDOWN_FILE)) {
        // The run's description in MLflow's UI.
        tags.push((
            "mlflow.note.content".into(),
            note.chars().take(8000).collect(),
        ));
    }
    published.params = params.len();
    published.metrics = metrics.len();
    log_values(mlflow, run, params, metrics, tags).await?;

    // 4. Report files as artifacts, 5. the status.
    match artifact_prefix(mlflow, run).await? {
        Ok(prefix) => published.artifacts = upload_report_files(mlflow, &prefix, dir).await?,
        Err(why) => published.artifacts_skipped = Some(why),
    }
    set_status(mlflow, run, report.result).await?;
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
    let known = linked_traces(mlflow, run).await?;
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
        let trace_id = mlflow_trace_id(&record, run);
        sync.durations.push(record.duration_ms);
        let existing = known.get(&trace_id);
        if existing.is_none() {
            let hex = trace_id.trim_start_matches("tr-");
            missing.extend(
                otlp::spans_for(&record, suite)
                    .into_iter()
                    .map(|span| OtlpSpan {
                        trace_id: hex.to_owned(),
                        ..span
                    }),
            );
            missing_traces += 1;
        }
        for assessment in assessments::for_record(&record, checks.get(&record.case)) {
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
                .push((trace_id.clone(), assessment.body(&trace_id, &record)));
        }
        trace_ids.push(trace_id);
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

/// The run's final status, with its end time.
pub async fn set_status(
    mlflow: &Mlflow,
    run: &RunRef,
    result: SuiteResult,
) -> Result<(), PublishError> {
    mlflow
        .post(
            "/api/2.0/mlflow/runs/update",
            &json!({"run_id": run.run_id, "status": values::run_status(result), "end_time": now_ms()}),
            "runs/update",
        )
        .await
        .map_err(at("setting the run's status"))?;
    Ok(())
}

/// Every trace linked to the run, with the (name, kind) of the assessments ragprobe
/// already wrote on it.
async fn linked_traces(
    mlflow: &Mlflow,
    run: &RunRef,
) -> Result<HashMap<String, HashSet<(String, &'static str)>>, PublishError> {
    let mut found = HashMap::new();
    let filter = format!("run_id = {}", filter_string(&run.run_id));
    for info in search_traces(mlflow, &run.experiment_id, &filter, usize::MAX)
        .await
        .map_err(at("searching the run's traces"))?
    {
        let Some(id) = info["trace_id"].as_str() else {
            continue;
        };
        let ours = info["assessments"]
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
            .collect();
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
    let mut token: Option<String> = None;
    loop {
        let page = mlflow
            .post(
                "/api/3.0/mlflow/traces/search",
                &trace_search(experiment_id, filter, token.as_deref()),
                "traces/search",
            )
            .await?;
        for item in page["traces"].as_array().into_iter().flatten() {
            // Each result is a TraceInfo (older servers wrap it in `trace_info`).
            out.push(item.get("trace_info").unwrap_or(item).clone());
            if out.len() >= limit {
                return Ok(out);
            }
        }
        match page["next_page_token"].as_str() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return Ok(out),
        }
    }
}

async fn send_traces(
    client: &reqwest::Client,
    target: &OtlpTarget,
    spans: &mut Vec<OtlpSpan>,
) -> Result<(), PublishError> {
    let result = send::post(client, target, spans).await;
    spans.clear();
    result.map_err(|e| PublishError::Mlflow {
        stage: "sending traces",
        cause: MlflowError::Unreachable {
            url: redact_url(&target.endpoint),
            cause: e.to_string(),
        },
    })
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

/// `runs/log-batch` takes at most 100 params, 100 tags and 1000 items per call.
async fn log_values(
    mlflow: &Mlflow,
    run: &RunRef,
    params: Vec<(String, String)>,
    metrics: Vec<(String, f64)>,
    tags: Vec<(String, String)>,
) -> Result<(), PublishError> {
    let timestamp = now_ms();
    let pair = |(k, v): &(String, String)| json!({"key": k, "value": v});
    for chunk in params.chunks(100) {
        log_batch(
            mlflow,
            run,
            json!(chunk.iter().map(pair).collect::<Vec<_>>()),
            json!([]),
            json!([]),
        )
        .await?;
    }
    for chunk in tags.chunks(100) {
        log_batch(
            mlflow,
            run,
            json!([]),
            json!([]),
            json!(chunk.iter().map(pair).collect::<Vec<_>>()),
        )
        .await?;
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

/// Where the run's artifacts are uploaded through the server: its artifact URI under the
/// `mlflow-artifacts` proxy. A server that stores artifacts where it does not proxy them
/// (`--default-artifact-root` on a local path, `--no-serve-artifacts`) gets none, and the
/// reason says so.
async fn artifact_prefix(
    mlflow: &Mlflow,
    run: &RunRef,
) -> Result<Result<String, String>, PublishError> {
    let path = format!(
        "/api/2.0/mlflow/runs/get?run_id={}",
        query_value(&run.run_id)
    );
    let answer = mlflow.get(&path, "runs/get").await.map_err(at("the run"))?;
    let uri = answer["run"]["info"]["artifact_uri"]
        .as_str()
        .unwrap_or_default();
    Ok(match uri.strip_prefix("mlflow-artifacts:") {
        Some(rest) => Ok(format!(
            "/api/2.0/mlflow-artifacts/artifacts/{}",
            rest.trim_start_matches('/')
        )),
        None => Err(format!(
            "the server stores this run's artifacts at `{}`, which it does not serve over HTTP; start `mlflow server` with `--serve-artifacts` and `--artifacts-destination` (not a local `--default-artifact-root`) to get the report files in MLflow",
            redact_url(uri)
        )),
    })
}

/// The last finished run of `suite` in the experiment, and its summary.json, for
/// `--baseline mlflow`. `None` when the experiment has no such run yet.
pub async fn last_summary(
    mlflow: &Mlflow,
    experiment_id: &str,
    suite: &str,
    except_run: &str,
) -> Result<Option<(String, SuiteReport)>, PublishError> {
    let filter = format!(
        "tags.`ragprobe.suite` = {} and attributes.status = 'FINISHED' and attributes.run_id != {}",
        filter_string(suite),
        filter_string(except_run)
    );
    let answer = mlflow
        .post(
            "/api/2.0/mlflow/runs/search",
            &json!({
                "experiment_ids": [experiment_id],
                "filter": filter,
                "order_by": ["attributes.start_time DESC"],
                "max_results": 1,
            }),
            "runs/search",
        )
        .await
        .map_err(at("finding the baseline run"))?;
    let Some(info) = answer["runs"].get(0).map(|r| &r["info"]) else {
        return Ok(None);
    };
    let run_id = info["run_id"].as_str().unwrap_or_default();
    let run_name = info["run_name"].as_str().unwrap_or_default();
    let uri = info["artifact_uri"].as_str().unwrap_or_default();
    let Some(rest) = uri.strip_prefix("mlflow-artifacts:") else {
        return Err(at("the baseline run")(MlflowError::Shape {
            what: "runs/search".into(),
            cause: format!("run {run_id}'s artifacts are not served over HTTP ({uri})"),
        }));
    };
    let bytes = mlflow
        .send(
            Method::GET,
            &format!(
                "/api/2.0/mlflow-artifacts/artifacts/{}/summary.json",
                rest.trim_start_matches('/')
            ),
            None,
            "",
            "mlflow-artifacts download",
        )
        .await
        .map_err(at("downloading the baseline's summary.json"))?;
    let summary: SuiteReport = serde_json::from_slice(&bytes).map_err(|e| {
        at("the baseline's summary.json")(MlflowError::Shape {
            what: format!("run {run_id}'s summary.json"),
            cause: e.to_string(),
        })
    })?;
    Ok(Some((format!("mlflow run {run_id} ({run_name})"), summary)))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A query-string value, percent-encoded (unreserved characters kept).
pub fn query_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_value("support bot/ü&x=1"),
            "support%20bot%2F%C3%BC%26x%3D1"
        );
    }
}
