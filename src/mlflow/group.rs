//! A sharded build in MLflow: the shards' runs share a group tag (`ragprobe.group`,
//! `ragprobe.role = shard`); `merge --mlflow` finds them, checks the set is one whole
//! build, fetches their report files, and publishes the merged report to one parent run
//! (`ragprobe.role = group`) that the shards are then nested under (`mlflow.parentRunId`).
//!
//! The parent is made by the merge, not by the shards: shards start at once on machines
//! that share nothing, and MLflow has no lock to make "create the parent unless it exists"
//! safe; the merge runs once.

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use crate::mlflow::client::{Mlflow, filter_string};
use crate::mlflow::link::{PublishError, at, search_runs};

/// Pages of 1,000 runs searched for a group's shards.
const MAX_PAGES: usize = 20;

/// One shard's run.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardRun {
    pub run_id: String,
    pub run_name: String,
    /// `k/n` as the shard was run.
    pub shard: String,
    pub status: String,
    pub start_time: u64,
    pub artifact_uri: String,
}

/// Why a group's runs are not one whole build.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GroupProblem {
    #[error(
        "no shard of group `{0}` in the experiment (did the shards run with --mlflow and the same --group?)"
    )]
    Empty(String),
    #[error("group `{group}` mixes builds: {why}")]
    Mixed { group: String, why: String },
    #[error("group `{group}` is incomplete: {why}")]
    Missing { group: String, why: String },
}

/// Every shard run of `group` in the experiment.
pub async fn shard_runs(
    mlflow: &Mlflow,
    experiment_id: &str,
    group: &str,
) -> Result<Vec<ShardRun>, PublishError> {
    let Some(quoted) = filter_string(group) else {
        return Ok(Vec::new());
    };
    let filter = format!("tags.`ragprobe.group` = {quoted} and tags.`ragprobe.role` = 'shard'");
    let mut runs = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let answer = search_runs(
            mlflow,
            experiment_id,
            &filter,
            ("attributes.start_time ASC", 1000, token.as_deref()),
        )
        .await
        .map_err(at("finding the group's shards"))?;
        runs.extend(
            answer["runs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(shard_run),
        );
        match answer["next_page_token"].as_str() {
            Some(next) if !next.is_empty() && Some(next) != token.as_deref() => {
                token = Some(next.to_owned());
            }
            _ => break,
        }
    }
    Ok(runs)
}

fn shard_run(run: &Value) -> ShardRun {
    let info = &run["info"];
    let tag = |key: &str| {
        run["data"]["tags"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["key"] == key)
            .and_then(|t| t["value"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    ShardRun {
        run_id: text(&info["run_id"]),
        run_name: text(&info["run_name"]),
        shard: tag("ragprobe.shard"),
        status: text(&info["status"]),
        start_time: info["start_time"]
            .as_u64()
            .or_else(|| info["start_time"].as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0),
        artifact_uri: text(&info["artifact_uri"]),
    }
}

/// One run per shard, 1 to n, in order: for a shard run more than once (a retried job),
/// the newest finished run, said in the notes. Refused: no runs, shards of different
/// counts, a shard without a finished run, missing shards.
pub fn choose(
    group: &str,
    runs: Vec<ShardRun>,
) -> Result<(Vec<ShardRun>, Vec<String>), GroupProblem> {
    if runs.is_empty() {
        return Err(GroupProblem::Empty(group.to_owned()));
    }
    let mut counts = BTreeMap::new();
    let mut by_index: BTreeMap<u32, Vec<ShardRun>> = BTreeMap::new();
    for run in runs {
        let parsed = run.shard.split_once('/').and_then(|(k, n)| {
            Some((k.trim().parse::<u32>().ok()?, n.trim().parse::<u32>().ok()?))
        });
        let Some((k, n)) = parsed.filter(|(k, n)| *k >= 1 && k <= n) else {
            return Err(GroupProblem::Mixed {
                group: group.to_owned(),
                why: format!(
                    "run {} has no shard k/n (tag `ragprobe.shard` = {:?})",
                    run.run_id, run.shard
                ),
            });
        };
        counts
            .entry(n)
            .or_insert_with(Vec::new)
            .push(run.run_id.clone());
        by_index.entry(k).or_default().push(run);
    }
    if counts.len() > 1 {
        let said: Vec<String> = counts
            .iter()
            .map(|(n, ids)| format!("{} run(s) of {n} shards ({})", ids.len(), ids.join(", ")))
            .collect();
        return Err(GroupProblem::Mixed {
            group: group.to_owned(),
            why: format!("{}: give each build its own --group", said.join("; ")),
        });
    }
    let total = counts.keys().next().copied().unwrap_or(0);
    let mut chosen = Vec::new();
    let mut notes = Vec::new();
    let mut missing = Vec::new();
    for k in 1..=total {
        let mut candidates = by_index.remove(&k).unwrap_or_default();
        let runs_of_k = candidates.len();
        candidates.retain(|r| r.status == "FINISHED");
        candidates.sort_by(|a, b| (a.start_time, &a.run_id).cmp(&(b.start_time, &b.run_id)));
        match candidates.pop() {
            Some(newest) => {
                if runs_of_k > 1 {
                    notes.push(format!(
                        "shard {k}/{total}: {runs_of_k} runs in the group (a retried job?): the newest finished one, {}, is taken",
                        newest.run_id
                    ));
                }
                chosen.push(newest);
            }
            None if runs_of_k > 0 => missing.push(format!("{k}/{total} (not finished)")),
            None => missing.push(format!("{k}/{total}")),
        }
    }
    if !missing.is_empty() {
        return Err(GroupProblem::Missing {
            group: group.to_owned(),
            why: format!(
                "shard{} {} missing; found {} of {total}",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", "),
                chosen.len()
            ),
        });
    }
    Ok((chosen, notes))
}

/// A report file of a run, through the server's artifact proxy.
pub async fn download(
    mlflow: &Mlflow,
    run: &ShardRun,
    file: &str,
) -> Result<Vec<u8>, PublishError> {
    let Some(path) = crate::mlflow::link::artifact_path(&run.artifact_uri) else {
        return Err(at("fetching a shard's report files")(
            crate::mlflow::client::MlflowError::Shape {
                what: format!("run {}", run.run_id),
                cause: format!(
                    "its artifacts are at `{}`, which the server does not serve over HTTP (start `mlflow server` with --serve-artifacts)",
                    run.artifact_uri
                ),
            },
        ));
    };
    mlflow
        .send(
            Method::GET,
            &format!("{path}/{file}"),
            None,
            "",
            "mlflow-artifacts download",
        )
        .await
        .map_err(at("fetching a shard's report files"))
}

/// The group's parent run, if a merge made one before: (run id, run name).
pub async fn parent(
    mlflow: &Mlflow,
    experiment_id: &str,
    group: &str,
) -> Result<Option<(String, String)>, PublishError> {
    let Some(quoted) = filter_string(group) else {
        return Ok(None);
    };
    let answer = search_runs(
        mlflow,
        experiment_id,
        &format!("tags.`ragprobe.group` = {quoted} and tags.`ragprobe.role` = 'group'"),
        ("attributes.start_time ASC", 1, None),
    )
    .await
    .map_err(at("finding the group's parent run"))?;
    Ok(answer["runs"]
        .as_array()
        .and_then(|runs| runs.first())
        .map(|run| {
            let info = &run["info"];
            (
                info["run_id"].as_str().unwrap_or_default().to_owned(),
                info["run_name"].as_str().unwrap_or_default().to_owned(),
            )
        }))
}

/// Nests a shard's run under the parent in MLflow's UI.
pub async fn adopt(mlflow: &Mlflow, child: &str, parent: &str) -> Result<(), PublishError> {
    mlflow
        .post(
            "/api/2.0/mlflow/runs/set-tag",
            &json!({"run_id": child, "key": "mlflow.parentRunId", "value": parent}),
            "runs/set-tag",
        )
        .await
        .map(|_| ())
        .map_err(at("nesting the shards under the parent run"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, shard: &str, status: &str, start: u64) -> ShardRun {
        ShardRun {
            run_id: id.into(),
            run_name: id.into(),
            shard: shard.into(),
            status: status.into(),
            start_time: start,
            artifact_uri: String::new(),
        }
    }

    #[test]
    fn a_whole_build_is_chosen_and_anything_else_refused() {
        let (chosen, notes) = choose(
            "g",
            vec![
                run("b", "2/2", "FINISHED", 5),
                run("a", "1/2", "FINISHED", 1),
                run("a2", "1/2", "FINISHED", 9),
                run("a3", "1/2", "RUNNING", 12),
            ],
        )
        .expect("whole");
        let ids: Vec<&str> = chosen.iter().map(|r| r.run_id.as_str()).collect();
        assert_eq!(
            ids,
            ["a2", "b"],
            "the newest finished run of a retried shard"
        );
        assert!(notes[0].contains("shard 1/2: 3 runs"), "{notes:?}");

        assert_eq!(choose("g", vec![]), Err(GroupProblem::Empty("g".into())));
        let missing = choose(
            "g",
            vec![
                run("a", "1/3", "FINISHED", 1),
                run("c", "3/3", "RUNNING", 1),
            ],
        )
        .expect_err("incomplete")
        .to_string();
        assert!(
            missing.contains("shards 2/3, 3/3 (not finished) missing; found 1 of 3"),
            "{missing}"
        );
        let mixed = choose(
            "g",
            vec![
                run("a", "1/2", "FINISHED", 1),
                run("b", "1/3", "FINISHED", 1),
            ],
        )
        .expect_err("mixed")
        .to_string();
        assert!(
            mixed.contains("mixes builds") && mixed.contains("own --group"),
            "{mixed}"
        );
        assert!(matches!(
            choose("g", vec![run("a", "", "FINISHED", 1)]),
            Err(GroupProblem::Mixed { .. })
        ));
    }
}
