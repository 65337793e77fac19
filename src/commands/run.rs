//! `ragprobe run`: the command line resolved into plans (every configuration problem found
//! before a single run), each plan executed and finished by `session`, the summaries
//! printed, and the worst outcome returned.

use crate::cli::{Format, RunArgs};
use crate::commands::common::runtime;
use crate::commands::github;
use crate::commands::mlflow_log::MlflowLog;
use crate::commands::receive::Receivers;
use crate::error::AppError;
use crate::events::Reporter;
use crate::exit_codes::Outcome;
use crate::export::send::{self, OtlpTarget, TraceStreamer};
use crate::mlflow::client::Mlflow;
use crate::mlflow::target::MlflowTarget;
use crate::model::summary::{SuiteReport, SuiteResult};
use crate::out;
use crate::plan::{self, Overrides, Plan, Selection};
use crate::report::progress::{Progress, Style};
use crate::report::terminal::render_text;
use crate::runner::Budget;
use crate::session::{self, Stages};
use crate::store::RunWriter;
use crate::store::folder;
use crate::store::lock::FolderLock;
use crate::suite::discover::suite_files;
use crate::suite::load::load_all;

/// `--baseline mlflow:`: the experiment's last finished run of the suite.
pub const MLFLOW_BASELINE: &str = "mlflow:";

pub fn run(args: RunArgs) -> Result<Outcome, AppError> {
    let mlflow_target = MlflowTarget::resolve(
        args.mlflow.mlflow.as_deref(),
        args.mlflow.experiment.as_deref(),
        args.mlflow.no_mlflow,
        &mut |warning| out::eprintln(&format!("warning: {warning}")),
    )?;
    let baseline_from_mlflow =
        args.baseline.as_deref() == Some(std::path::Path::new(MLFLOW_BASELINE));
    if baseline_from_mlflow && mlflow_target.is_none() {
        return Err(AppError::Usage(
            "--baseline mlflow: needs an MLflow server: --mlflow URL or MLFLOW_TRACKING_URI".into(),
        ));
    }
    // With an OTLP endpoint too, traces stream there and reach MLflow when it publishes.
    let otlp = OtlpTarget::resolve(
        args.otlp.otlp.as_deref(),
        &args.otlp.otlp_headers,
        args.otlp.otlp_protocol.as_deref(),
    )?;
    let (plans, _locks) = resolve(&args, baseline_from_mlflow)?;
    let group = shard_group(&args, &plans, mlflow_target.is_some())?;
    for plan in &plans {
        for warning in &plan.warnings {
            out::eprintln(&format!("warning: {warning}"));
        }
    }
    let runtime = runtime()?;
    let client = otlp.as_ref().map(|_| send::client()).transpose()?;
    let mlflow = mlflow_target
        .map(|target| {
            Mlflow::new(&target.tracking_uri, target.auth.clone()).map(|client| MlflowLog {
                target,
                client,
                baseline: baseline_from_mlflow,
                group: group.clone(),
            })
        })
        .transpose()?;
    if args.max_cost.is_some_and(|c| !(c > 0.0 && c.is_finite())) || args.max_calls == Some(0) {
        return Err(AppError::Usage(
            "--max-cost and --max-calls take a positive budget".into(),
        ));
    }
    if args.max_cost.is_some() {
        for plan in &plans {
            let prices = plan.suite.prices();
            if prices.model.is_none() && prices.judge.is_none() {
                return Err(AppError::Usage(format!(
                    "--max-cost: {} gives its models no price (llm: {{price: {{input_per_million, output_per_million}}}}, judge: {{price: …}})",
                    plan.suite.path.display()
                )));
            }
        }
    }
    let budget = (args.max_cost.is_some() || args.max_calls.is_some())
        .then(|| std::sync::Arc::new(Budget::new(args.max_cost, args.max_calls)));
    let mut reports: Vec<SuiteReport> = Vec::new();
    let mut unpublished = false;
    let mut receivers = Receivers::default();
    runtime.block_on(async {
        for plan in &plans {
            receivers
                .attach(&plan.suite.chain, args.receive_otlp.as_deref(), args.quiet)
                .await?;
        }
        Ok::<(), AppError>(())
    })?;
    for mut plan in plans {
        let (report, published) = runtime.block_on(run_plan(
            &mut plan,
            &args,
            otlp.as_ref().zip(client.as_ref()),
            mlflow.as_ref(),
            budget.clone(),
        ))?;
        unpublished |= !published;
        if args.format == Format::Text {
            if !reports.is_empty() && !args.quiet {
                out::println("");
            }
            out::print(&render_text(&report, args.quiet));
        }
        let interrupted = report.result == SuiteResult::Interrupted;
        reports.push(report);
        if interrupted {
            break;
        }
    }
    receivers.summarize(args.quiet);
    // A suite whose results did not all reach MLflow has not done what was asked: exit 3
    // (infrastructure outranks failed checks, as for a chain that could not be evaluated).
    let outcome = Outcome::worst(
        reports
            .iter()
            .map(|r| Outcome::from(r.result))
            .chain(unpublished.then_some(Outcome::Infrastructure)),
    );
    if args.format == Format::Json {
        let document = serde_json::json!({ "suites": reports, "exit_code": outcome.code() });
        out::print_data(&serde_json::to_string_pretty(&document).unwrap_or_default());
    }
    let actions = github::actions();
    if actions.is_some() || args.pr_comment {
        let publication = github::Publication::of_reports(&reports, actions.as_ref());
        github::publish(
            &publication,
            actions.as_ref(),
            args.pr_comment,
            args.format == Format::Json,
        );
    }
    Ok(outcome)
}

/// The group a sharded run's MLflow run joins: `--group`, else the commit (and the CI's
/// pipeline); `None` without shards or MLflow.
fn shard_group(args: &RunArgs, plans: &[Plan], mlflow: bool) -> Result<Option<String>, AppError> {
    let Some(plan) = plans.iter().find(|p| p.shard.is_some()).filter(|_| mlflow) else {
        return Ok(None);
    };
    let group = args.group.clone().or_else(|| {
        crate::ci::group::default_group(
            |name| std::env::var(name).ok(),
            crate::mlflow::values::git_commit(&plan.suite.path),
        )
    });
    match group {
        Some(group) => {
            crate::ci::group::check(&group).map_err(AppError::Usage)?;
            if !args.quiet {
                out::eprintln(&format!(
                    "mlflow: shard {} of group {group} (`ragprobe merge --mlflow … --group {group}` merges the group)",
                    plan.shard.map(|s| s.to_string()).unwrap_or_default()
                ));
            }
            Ok(Some(group))
        }
        None => {
            out::eprintln(
                "warning: mlflow: no --group and no commit to name this build's group: `merge --mlflow` cannot find this shard (give --group or RAGPROBE_GROUP)",
            );
            Ok(None)
        }
    }
}

/// Raw flags and suite files into plans, with their folders locked for this process and
/// prepared for fresh runs.
fn resolve(
    args: &RunArgs,
    baseline_from_mlflow: bool,
) -> Result<(Vec<Plan>, Vec<FolderLock>), AppError> {
    if args.shards.is_some() && args.shard != Some(crate::ci::shard::ShardArg::Auto) {
        return Err(AppError::Usage(
            "--shards N goes with --shard auto (a fixed --shard says k/n itself)".into(),
        ));
    }
    let shard = match args.shard {
        Some(arg) => {
            let (shard, from) = arg
                .resolve(|name| std::env::var(name).ok(), args.shards)
                .map_err(|e| AppError::Usage(e.to_string()))?;
            // Said even with --quiet: a CI log should show which slice a job ran.
            if let Some(from) = from {
                out::eprintln(&format!("ragprobe: {from}"));
            }
            Some(shard)
        }
        None => None,
    };
    let overrides = Overrides {
        runs: args.runs,
        seed: args.seed,
        concurrency: args.concurrency,
        timeout_ms: args.timeout_ms,
        shard,
        // Taken from MLflow once the experiment is known (in `run_plan`).
        baseline: args.baseline.clone().filter(|_| !baseline_from_mlflow),
    };
    if let Some(dir) = &args.resume {
        let plans = plan::resume(dir, &overrides)?;
        let locks = plans
            .iter()
            .map(|plan| folder::lock_existing(&plan.out_dir))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((plans, locks));
    }
    let files = suite_files(args.path.as_deref())?;
    let suites = load_all(&files, args.chain.as_deref())?;
    for suite in &suites {
        for warning in &suite.warnings {
            out::eprintln(&format!("warning: {warning}"));
        }
    }
    let selection = Selection {
        ids: args.cases.clone(),
        filter: args.filter.clone(),
    };
    let plans = plan::fresh(suites, &selection, args.out.as_deref(), &overrides)?;
    // Before anything is touched: `--force` would replace the baseline's own report.
    if let Some(baseline) = &overrides.baseline {
        for plan in &plans {
            folder::refuse_output_over_inputs(&plan.out_dir, &[baseline.as_path()], true)?;
        }
    }
    let locks = plans
        .iter()
        .map(|plan| folder::prepare(&plan.out_dir, &plan.meta(), args.force))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((plans, locks))
}

/// Runs one plan to its reports; with MLflow, the MLflow run is made (or reopened) before
/// the first run and published after the reports are written. Returns the report and
/// whether everything asked of MLflow was done.
async fn run_plan(
    plan: &mut Plan,
    args: &RunArgs,
    otlp: Option<(&OtlpTarget, &reqwest::Client)>,
    mlflow: Option<&MlflowLog>,
    budget: Option<std::sync::Arc<Budget>>,
) -> Result<(SuiteReport, bool), AppError> {
    let (mlflow_run, mlflow_otlp) = match mlflow {
        Some(log) => {
            let (run, stream) =
                session::unless_stopped(log.start(plan, args.resume.is_some(), args.quiet))
                    .await
                    .ok_or_else(|| {
                        AppError::Interrupted(
                            "while setting up the MLflow run: nothing was run".into(),
                        )
                    })??;
            (Some(run), stream)
        }
        None => (None, None),
    };
    let otlp = otlp.or(mlflow_otlp.as_ref().map(|(t, c)| (t, c)));
    let report = match execute_and_finish(plan, args, otlp, budget).await {
        Ok(report) => report,
        Err(error) => {
            if let (Some(log), Some(run)) = (mlflow, &mlflow_run) {
                log.fail(run).await;
            }
            return Err(error);
        }
    };
    let published = match (mlflow, &mlflow_run) {
        (Some(log), Some(run)) if report.result == SuiteResult::Interrupted => {
            log.interrupted(run, &plan.out_dir).await;
            false
        }
        (Some(log), Some(run)) => {
            match session::unless_stopped(log.finish(run, plan, args.quiet)).await {
                Some(published) => published,
                None => {
                    out::eprintln(&format!(
                        "mlflow: publishing interrupted; {} has every result, and `ragprobe export {} --mlflow …` publishes it into the same run",
                        plan.out_dir.display(),
                        plan.out_dir.display()
                    ));
                    return Ok((
                        SuiteReport {
                            result: SuiteResult::Interrupted,
                            ..report
                        },
                        false,
                    ));
                }
            }
        }
        _ => true,
    };
    Ok((report, published))
}

/// The plan's runs, streamed to every reporter, then its reports.
async fn execute_and_finish(
    plan: &Plan,
    args: &RunArgs,
    otlp: Option<(&OtlpTarget, &reqwest::Client)>,
    budget: Option<std::sync::Arc<Budget>>,
) -> Result<SuiteReport, AppError> {
    let mut stages = Stages::new(args.timings);
    let dir = &plan.out_dir;
    let mut writer = RunWriter::open(dir).map_err(AppError::io(format!(
        "cannot open {}",
        dir.join(crate::store::RUNS_FILE).display()
    )))?;
    let mut progress = Progress::new(Style::resolve(args.progress, args.quiet));
    let mut streamer =
        otlp.map(|(target, client)| TraceStreamer::start(target.clone(), client.clone()));
    let mut reporters: Vec<&mut dyn Reporter> = vec![&mut writer, &mut progress];
    if let Some(streamer) = streamer.as_mut() {
        reporters.push(streamer);
    }
    let mut executed =
        session::execute(plan, &mut reporters, session::stop_signal(), budget).await?;
    drop(reporters);
    if let (Some(streamer), Some((target, _))) = (streamer, otlp) {
        // A collector that never answers must not make Ctrl-C or SIGTERM wait: the runs are
        // in runs.jsonl, and `export --otlp` sends their traces later.
        let Some(report) = session::unless_stopped(streamer.finish()).await else {
            out::eprintln(&format!(
                "otlp: interrupted while sending the traces; runs.jsonl has every trace: `ragprobe export {} --otlp …` sends them",
                dir.display()
            ));
            executed.interrupted = true;
            stages.done("runs");
            return Ok(session::finish(plan, executed, &mut stages)?);
        };
        executed.trace_export = Some(report.outcome(target));
        if !args.quiet || report.failed > 0 || report.dropped > 0 {
            out::eprintln(&report.summary(target));
        }
        if report.failed > 0 || report.dropped > 0 {
            out::eprintln(&format!(
                "otlp: runs.jsonl has every trace; `ragprobe export {} --otlp …` sends them again",
                dir.display()
            ));
        }
    }
    stages.done("runs");
    Ok(session::finish(plan, executed, &mut stages)?)
}
