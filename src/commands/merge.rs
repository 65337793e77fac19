//! `ragprobe merge`: the shard folders of one `run --shard k/n` into one report folder,
//! with the same reports an unsharded run writes; with `--mlflow`, the shards of one build
//! fetched from MLflow (no shared disk) and the merged report published to the build's
//! parent run.

use std::path::{Path, PathBuf};

use crate::cli::MergeArgs;
use crate::commands::common::{report_meta, runtime};
use crate::commands::github;
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::mlflow::client::Mlflow;
use crate::mlflow::group::{self, GroupProblem, ShardRun};
use crate::mlflow::link::{self, GroupTag, RunRef, Scope, at};
use crate::mlflow::target::{ExperimentRef, MlflowTarget};
use crate::model::summary::SuiteReport;
use crate::out;
use crate::plan;
use crate::report::terminal::render_text;
use crate::session::{self, Executed, Stages};
use crate::store::{folder, merge as combine};

pub fn merge(args: MergeArgs) -> Result<Outcome, AppError> {
    let (report, published) = match &args.mlflow {
        Some(url) => merge_from_mlflow(&args, url)?,
        None => (merge_folders(&args.dirs, &args)?.0, true),
    };
    out::print(&render_text(&report, args.quiet));
    let actions = github::actions();
    if actions.is_some() || args.pr_comment {
        let reports = std::slice::from_ref(&report);
        let publication = github::Publication::of_reports(reports, actions.as_ref());
        github::publish(&publication, actions.as_ref(), args.pr_comment, false);
    }
    Ok(Outcome::worst(
        [Outcome::from(report.result)]
            .into_iter()
            .chain((!published).then_some(Outcome::Infrastructure)),
    ))
}

/// Shard folders on disk into `--out`: the merged report, and the plan it was made from.
fn merge_folders(
    dirs: &[PathBuf],
    args: &MergeArgs,
) -> Result<(SuiteReport, plan::Plan), AppError> {
    let metas = dirs
        .iter()
        .map(|dir| Ok((dir.clone(), report_meta(dir)?)))
        .collect::<Result<Vec<_>, AppError>>()?;
    let plan = plan::merged(&metas, &args.out, args.baseline.as_deref())?;
    for warning in &plan.warnings {
        out::eprintln(&format!("warning: {warning}"));
    }
    let shards: Vec<&Path> = dirs.iter().map(PathBuf::as_path).collect();
    // Before anything is touched: `--force` would clear a shard that is also the output.
    folder::refuse_output_over_inputs(&plan.out_dir, &shards, true)?;
    let _lock = folder::prepare(&plan.out_dir, &plan.meta(), args.force)?;
    combine::combine(dirs, &args.out, &plan.case_ids())?;
    let executed = Executed {
        planned_runs: plan.planned_runs(),
        adaptive_dropped: 0,
        interrupted: false,
        trace_export: None,
        budget_spent: None,
    };
    let report = session::finish(&plan, executed, &mut Stages::new(false))?;
    Ok((report, plan))
}

/// The report files a merge needs from each shard.
const SHARD_FILES: [&str; 2] = [crate::model::meta::META_FILE, crate::store::RUNS_FILE];

/// The group's shards from MLflow into `--out`, then published to the group's parent run.
/// Returns the report and whether MLflow took it.
fn merge_from_mlflow(args: &MergeArgs, url: &str) -> Result<(SuiteReport, bool), AppError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let group = args
        .group
        .clone()
        .or_else(|| env("RAGPROBE_GROUP"))
        .or_else(|| crate::ci::group::default_group(env, None))
        .ok_or_else(|| {
            AppError::Usage(
                "merge --mlflow: give --group (or RAGPROBE_GROUP) as the shards were run: no commit in the environment to default to".into(),
            )
        })?;
    crate::ci::group::check(&group).map_err(AppError::Usage)?;
    let experiment = args
        .experiment
        .clone()
        .or_else(|| env("MLFLOW_EXPERIMENT_NAME"));
    let target = MlflowTarget::resolve(Some(url), experiment.as_deref(), false, &mut |w| {
        out::eprintln(&format!("warning: {w}"))
    })?
    .ok_or_else(|| AppError::Usage("merge --mlflow needs a tracking server URL".into()))?;
    if matches!(target.experiment, ExperimentRef::SuiteName) {
        return Err(AppError::Usage(
            "merge --mlflow: give --experiment NAME (or MLFLOW_EXPERIMENT_NAME), the experiment the shards published to".into(),
        ));
    }
    let client = Mlflow::new(&target.tracking_uri, target.auth.clone())?;
    let runtime = runtime()?;
    let interrupted = || AppError::Interrupted("while talking to MLflow: nothing merged".into());

    // 1. The group's shards, checked to be one whole build.
    let (experiment_id, experiment_name, runs) = runtime
        .block_on(session::unless_stopped(async {
            let (id, name) = link::experiment(&client, &target.experiment, false)
                .await
                .map_err(at("the experiment"))?;
            let runs = group::shard_runs(&client, &id, &group).await?;
            Ok::<_, AppError>((id, name, runs))
        }))
        .ok_or_else(interrupted)??;
    let (chosen, notes) = group::choose(&group, runs).map_err(|problem| match problem {
        GroupProblem::Mixed { .. } => AppError::Usage(format!("merge --mlflow: {problem}")),
        GroupProblem::Empty(_) | GroupProblem::Missing { .. } => {
            AppError::Unavailable(format!("merge --mlflow: {problem}"))
        }
    })?;
    for note in &notes {
        out::eprintln(&format!("mlflow: {note}"));
    }
    if !args.quiet {
        out::eprintln(&format!(
            "mlflow: group {group}: {} shards in experiment `{experiment_name}`: {}",
            chosen.len(),
            chosen
                .iter()
                .map(|r| format!("{} ({})", r.shard, r.run_id))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    // 2. Their report files into a scratch folder, merged exactly as a local merge does.
    let scratch = Scratch::new()?;
    let dirs = runtime
        .block_on(session::unless_stopped(fetch(&client, &chosen, &scratch.0)))
        .ok_or_else(interrupted)??;
    let (report, plan) = merge_folders(&dirs, args)?;
    drop(scratch);

    // 3. The merged report published to the group's parent, the shards nested under it.
    let published = runtime
        .block_on(session::unless_stopped(publish_to_parent(
            &client,
            (&experiment_id, &experiment_name),
            &group,
            &chosen,
            &plan,
            args.quiet,
        )))
        .ok_or_else(|| {
            AppError::Interrupted(format!(
                "while publishing to MLflow: {} has the merged report",
                args.out.display()
            ))
        })?;
    Ok((report, published))
}

/// Each shard's report files into `scratch/shard-k`.
async fn fetch(
    client: &Mlflow,
    runs: &[ShardRun],
    scratch: &Path,
) -> Result<Vec<PathBuf>, AppError> {
    let mut dirs = Vec::new();
    for (k, run) in runs.iter().enumerate() {
        let dir = scratch.join(format!("shard-{}", k + 1));
        std::fs::create_dir_all(&dir)
            .map_err(AppError::io(format!("cannot make {}", dir.display())))?;
        for file in SHARD_FILES {
            let bytes = group::download(client, run, file).await?;
            std::fs::write(dir.join(file), bytes).map_err(AppError::io(format!(
                "cannot write {}",
                dir.join(file).display()
            )))?;
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Finds or makes the group's parent run, nests the shards under it and publishes the
/// merged folder there; `false` (said on stderr) when MLflow did not take it.
async fn publish_to_parent(
    client: &Mlflow,
    (experiment_id, experiment_name): (&str, &str),
    group_name: &str,
    shards: &[ShardRun],
    plan: &plan::Plan,
    quiet: bool,
) -> bool {
    let out = plan.out_dir.as_path();
    let result = async {
        if let Some((run_id, _)) = group::parent(client, experiment_id, group_name).await? {
            // A merge of this group ran before: the same parent gets the new report.
            let earlier = RunRef {
                tracking_uri: crate::secrets::redact_url(client.base()),
                experiment_id: experiment_id.to_owned(),
                experiment_name: experiment_name.to_owned(),
                url: client.run_url(experiment_id, &run_id),
                traces_experiment_id: experiment_id.to_owned(),
                run_id,
                git_commit: None,
            };
            link::remember(out, &earlier)?;
        }
        let scope = Scope {
            subset: false,
            reopen: true,
            group: Some(GroupTag {
                name: group_name.to_owned(),
                role: "group",
            }),
        };
        let parent = link::begin(
            client,
            &ExperimentRef::Id(experiment_id.to_owned()),
            out,
            &plan.meta(),
            scope,
        )
        .await?;
        for shard in shards {
            group::adopt(client, &shard.run_id, &parent.run_id).await?;
        }
        let checks = crate::mlflow::assessments::case_checks(&plan.suite);
        let started = std::time::Instant::now();
        let done = crate::mlflow::publish::publish(client, &parent, out, &checks).await?;
        Ok::<_, link::PublishError>((parent, done, started.elapsed()))
    };
    match result.await {
        Ok((parent, done, took)) => {
            if !quiet {
                out::eprintln(&crate::mlflow::publish::describe(&done, &parent, took));
            }
            true
        }
        Err(error) => {
            out::eprintln(&format!("error: {error}"));
            out::eprintln(&format!(
                "mlflow: {} has the merged report; `ragprobe export {} --mlflow …` publishes it later",
                out.display(),
                out.display()
            ));
            false
        }
    }
}

/// A scratch folder for the shards' files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, AppError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("ragprobe-merge-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(AppError::io(format!("cannot make {}", dir.display())))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
