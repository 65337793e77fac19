//! Which MLflow run a report folder belongs to. [`begin`] finds or creates the experiment
//! and the run before the first suite run starts (so traces stream into it), and records
//! it in the folder's `mlflow.json` — one entry per server and experiment, so a resumed or
//! republished folder goes back to the same run. Also: the ids traces get in MLflow, and
//! the earlier run `--baseline mlflow:` gates on.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::export::otlp;
use crate::export::send::{OtlpTarget, Protocol};
use crate::mlflow::client::{Mlflow, MlflowError, filter_string};
use crate::mlflow::target::ExperimentRef;
use crate::mlflow::values;
use crate::model::meta::Meta;
use crate::model::record::RunRecord;
use crate::model::summary::SuiteReport;
use crate::secrets::{redact_url, scrub};

pub use crate::model::meta::MLFLOW_FILE;

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
    /// the folder went to on this server. MLflow keeps a trace in the experiment it first
    /// arrived in, so in any other experiment the traces get ids of their own
    /// ([`mlflow_trace_id`]).
    pub traces_experiment_id: String,
    /// The suite's repository HEAD when the run was made (a param: it must not change
    /// when the folder is published again later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
}

impl RunRef {
    /// Traces go to this run's experiment under their own ids (and so may stream there
    /// while the suite runs).
    pub fn owns_trace_ids(&self) -> bool {
        self.traces_experiment_id == self.experiment_id
    }
}

/// `mlflow.json`: every run the folder went to, latest last.
#[derive(Debug, Default, Serialize, Deserialize)]
struct MlflowFile {
    runs: Vec<RunRef>,
}

impl MlflowFile {
    fn read(dir: &Path) -> MlflowFile {
        std::fs::read_to_string(dir.join(MLFLOW_FILE))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// `run` as the folder's latest on its server and experiment, written.
    fn keep(&mut self, dir: &Path, run: &RunRef) -> Result<(), PublishError> {
        self.runs.retain(|r| {
            !(r.tracking_uri == run.tracking_uri && r.experiment_id == run.experiment_id)
        });
        self.runs.push(run.clone());
        self.write(dir).map_err(|cause| PublishError::Read {
            path: dir.join(MLFLOW_FILE),
            cause,
        })
    }

    fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::atomic::write(&dir.join(MLFLOW_FILE), text + "\n")
    }

    fn on(&self, tracking_uri: &str) -> impl Iterator<Item = &RunRef> {
        self.runs
            .iter()
            .filter(move |r| r.tracking_uri == tracking_uri)
    }
}

/// The run a folder went to last on this server, if any.
pub fn last_run(dir: &Path, mlflow: &Mlflow) -> Option<RunRef> {
    let tracking_uri = redact_url(mlflow.base());
    MlflowFile::read(dir).on(&tracking_uri).last().cloned()
}

/// The id a record's trace has in `run`'s experiment: `tr-` and its own id in the
/// experiment that first received the folder's traces; elsewhere an id derived from its
/// own id and the experiment, the same at every publish.
pub fn mlflow_trace_id(record: &RunRecord, run: &RunRef) -> String {
    let own = otlp::trace_id(record);
    if run.owns_trace_ids() {
        return format!("tr-{own}");
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
    format!("tr-{:016x}{:016x}", hash("ragprobe-a"), hash("ragprobe-b"))
}

/// Why logging to MLflow stopped. The report folder is untouched by it.
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

impl PublishError {
    /// The server answered that the request is wrong (a credential refused, an
    /// experiment id that does not exist, a URL that is not MLflow): nothing a retry
    /// fixes. Unreachable servers, 5xx and 429 are not.
    pub fn is_config(&self) -> bool {
        match self {
            PublishError::Mlflow { cause, .. } => cause.is_config(),
            PublishError::Read { .. } => false,
        }
    }
}

pub fn at(stage: &'static str) -> impl FnOnce(MlflowError) -> PublishError {
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
    let read = |answer: &serde_json::Value| -> Result<(String, String), MlflowError> {
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
    let name = match wanted {
        ExperimentRef::Id(id) => {
            let path = format!(
                "/api/2.0/mlflow/experiments/get?experiment_id={}",
                query_value(id)
            );
            return read(&mlflow.get(&path, "experiments/get").await?);
        }
        ExperimentRef::Name(name) => name,
        ExperimentRef::SuiteName => {
            return Err(MlflowError::Shape {
                what: "experiment".into(),
                cause: "no experiment name".into(),
            });
        }
    };
    match by_name(name).await {
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
    }
}

/// What the run holds, as tags a baseline search can tell apart.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only some of the suite's cases (`--case`, `--filter`).
    pub subset: bool,
    /// `run`/`--resume`, which runs again: a finished run is set back to RUNNING. `export`
    /// leaves the status to `publish`.
    pub reopen: bool,
    /// A sharded build's group: the shards' runs and the parent `merge --mlflow` makes
    /// carry it (`ragprobe.group`, and `ragprobe.role` = `shard` or `group`).
    pub group: Option<GroupTag>,
}

/// What a run is in a sharded build.
#[derive(Debug, Clone)]
pub struct GroupTag {
    pub name: String,
    pub role: &'static str,
}

/// Records `run` as the folder's run on its server, so [`begin`] continues it.
pub fn remember(dir: &Path, run: &RunRef) -> Result<(), PublishError> {
    MlflowFile::read(dir).keep(dir, run)
}

/// The run a report folder logs to. `wanted` is the experiment asked for; none asked
/// (`SuiteName`) means the one the folder last went to on this server, else the suite's
/// name. The folder's run in that experiment is continued when it still exists, else a
/// new one is made and recorded.
pub async fn begin(
    mlflow: &Mlflow,
    wanted: &ExperimentRef,
    dir: &Path,
    meta: &Meta,
    scope: Scope,
) -> Result<RunRef, PublishError> {
    let tracking_uri = redact_url(mlflow.base());
    let mut file = MlflowFile::read(dir);
    let wanted = match wanted {
        ExperimentRef::SuiteName => match file.on(&tracking_uri).last() {
            Some(last) => ExperimentRef::Id(last.experiment_id.clone()),
            None => ExperimentRef::Name(meta.suite_name.clone()),
        },
        other => other.clone(),
    };
    let (experiment_id, experiment_name) = experiment(mlflow, &wanted, true)
        .await
        .map_err(at("the experiment"))?;
    // The first experiment a folder went to keeps its traces' own ids. A folder that never
    // went to this server may still have streamed its traces there (`run --otlp` at
    // MLflow's endpoint): they then live in that experiment, and this one needs ids of its
    // own, or its run would link (and assess) traces another experiment holds.
    let traces_experiment_id = match file.on(&tracking_uri).next() {
        Some(first) => first.traces_experiment_id.clone(),
        None => streamed_to(mlflow, dir)
            .await
            .unwrap_or_else(|| experiment_id.clone()),
    };
    let previous = file
        .on(&tracking_uri)
        .filter(|r| r.experiment_id == experiment_id)
        .last()
        .cloned();
    if let Some(previous) = previous {
        let path = format!(
            "/api/2.0/mlflow/runs/get?run_id={}",
            query_value(&previous.run_id)
        );
        match mlflow.get(&path, "runs/get").await {
            Ok(answer) if answer["run"]["info"]["lifecycle_stage"] == "active" => {
                if scope.reopen {
                    set_status(mlflow, &previous.run_id, "RUNNING", None)
                        .await
                        .map_err(at("reopening the run"))?;
                }
                return Ok(previous);
            }
            // Deleted in the UI, or gone with its database: a new run.
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
    let git_commit = values::git_commit(&meta.suite_path);
    let mut tags = vec![
        json!({"key": "mlflow.source.name", "value": "ragprobe"}),
        json!({"key": "mlflow.source.type", "value": "LOCAL"}),
        json!({"key": "ragprobe.suite", "value": meta.suite_name}),
        json!({"key": "ragprobe.report_dir", "value": scrub(&dir.display().to_string())}),
    ];
    if let Some(commit) = &git_commit {
        tags.push(json!({"key": "mlflow.source.git.commit", "value": commit}));
    }
    if let Some(shard) = &meta.shard {
        tags.push(json!({"key": "ragprobe.shard", "value": shard}));
    }
    if scope.subset {
        tags.push(json!({"key": "ragprobe.subset", "value": "true"}));
    }
    if let Some(group) = &scope.group {
        tags.push(json!({"key": "ragprobe.group", "value": group.name}));
        tags.push(json!({"key": "ragprobe.role", "value": group.role}));
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
        git_commit,
    };
    file.keep(dir, &run)?;
    Ok(run)
}

/// The experiment that already holds the folder's first trace under its own id, if any.
async fn streamed_to(mlflow: &Mlflow, dir: &Path) -> Option<String> {
    let first = crate::store::RunReader::open(dir).ok()?.next()?.ok()?;
    let trace_id = format!("tr-{}", otlp::trace_id(&first));
    let answer = mlflow
        .get(
            &format!("/api/3.0/mlflow/traces/{}", query_value(&trace_id)),
            "traces/get",
        )
        .await
        .ok()?;
    let info = &answer["trace"]["trace_info"];
    info["trace_location"]["mlflow_experiment"]["experiment_id"]
        .as_str()
        .or_else(|| info["experiment_id"].as_str())
        .map(str::to_owned)
}

/// Sets a run's status (with its end time when it ends).
pub async fn set_status(
    mlflow: &Mlflow,
    run_id: &str,
    status: &str,
    end_time: Option<u64>,
) -> Result<(), MlflowError> {
    let mut body = json!({"run_id": run_id, "status": status});
    if let Some(end) = end_time {
        body["end_time"] = json!(end);
    }
    mlflow
        .post("/api/2.0/mlflow/runs/update", &body, "runs/update")
        .await?;
    Ok(())
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

/// Where a run's artifacts are read and written through the server: its artifact URI
/// under the `mlflow-artifacts` proxy. `None` for a server that stores artifacts where it
/// does not proxy them (`--default-artifact-root` on a local path, `--no-serve-artifacts`).
pub fn artifact_path(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    // `mlflow-artifacts://host:port/1/…` names the server too; the path is what counts.
    let path = match rest.strip_prefix("//") {
        Some(with_host) => &with_host[with_host.find('/')?..],
        None => rest,
    };
    Some(format!(
        "/api/2.0/mlflow-artifacts/artifacts/{}",
        path.trim_start_matches('/')
    ))
}

/// One page of `runs/search` in an experiment: (order, page size, page token).
pub async fn search_runs(
    mlflow: &Mlflow,
    experiment_id: &str,
    filter: &str,
    (order_by, max_results, page_token): (&str, u32, Option<&str>),
) -> Result<serde_json::Value, MlflowError> {
    let mut body = json!({
        "experiment_ids": [experiment_id],
        "filter": filter,
        "order_by": [order_by],
        "max_results": max_results,
    });
    if let Some(token) = page_token {
        body["page_token"] = json!(token);
    }
    mlflow
        .post("/api/2.0/mlflow/runs/search", &body, "runs/search")
        .await
}

/// The latest finished run of `suite` in the experiment that ran the whole suite (no
/// shard, no subset) and has its summary.json, for `--baseline mlflow:`. Its verdict does
/// not matter: a gate against the last build is a gate against what was last measured.
/// `None` when there is none yet.
pub async fn last_summary(
    mlflow: &Mlflow,
    experiment_id: &str,
    suite: &str,
    except_run: &str,
) -> Result<Option<(String, SuiteReport)>, PublishError> {
    let Some(quoted) = filter_string(suite) else {
        return Ok(None);
    };
    let answer = search_runs(
        mlflow,
        experiment_id,
        &format!("tags.`ragprobe.suite` = {quoted} and attributes.status = 'FINISHED'"),
        ("attributes.start_time DESC", 20, None),
    )
    .await
    .map_err(at("finding the baseline run"))?;
    for run in answer["runs"].as_array().into_iter().flatten() {
        let info = &run["info"];
        let run_id = info["run_id"].as_str().unwrap_or_default();
        let has_tag = |key: &str| {
            run["data"]["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["key"] == key)
        };
        if run_id == except_run || has_tag("ragprobe.shard") || has_tag("ragprobe.subset") {
            continue;
        }
        let Some(path) = info["artifact_uri"].as_str().and_then(artifact_path) else {
            continue;
        };
        let bytes = match mlflow
            .send(
                Method::GET,
                &format!("{path}/summary.json"),
                None,
                "",
                "mlflow-artifacts download",
            )
            .await
        {
            Ok(bytes) => bytes,
            // A run without the report files (publishing stopped short): the one before.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(at("downloading the baseline's summary.json")(e)),
        };
        let Ok(summary) = serde_json::from_slice::<SuiteReport>(&bytes) else {
            continue;
        };
        let run_name = info["run_name"].as_str().unwrap_or_default();
        return Ok(Some((format!("mlflow run {run_id} ({run_name})"), summary)));
    }
    Ok(None)
}

pub fn now_ms() -> u64 {
    crate::trace::now_ns() / 1_000_000
}

/// A query-string value, percent-encoded (unreserved characters kept).
pub fn query_value(value: &str) -> String {
    crate::secrets::percent_encoded(value)
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

    #[test]
    fn artifact_paths_go_through_the_proxy() {
        assert_eq!(
            artifact_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts")
        );
        assert_eq!(
            artifact_path("mlflow-artifacts://mlflow:5000/1/abc/artifacts").as_deref(),
            Some("/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts")
        );
        assert_eq!(artifact_path("/tmp/mlruns/1/abc/artifacts"), None);
        assert_eq!(artifact_path("s3://bucket/1/abc"), None);
    }
}
