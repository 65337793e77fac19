//! `ragprobe run`: the command line resolved into plans (every configuration problem found
//! before a single run), each plan executed and finished by `session`, the summaries
//! printed, and the worst outcome returned.

use crate::cli::{Format, RunArgs};
use crate::commands::common::runtime;
use crate::error::AppError;
use crate::events::Reporter;
use crate::exit_codes::Outcome;
use crate::export::send::{self, OtlpTarget, TraceStreamer};
use crate::model::summary::{SuiteReport, SuiteResult};
use crate::plan::{self, Overrides, Plan, Selection};
use crate::report::out;
use crate::report::progress::{Progress, Style};
use crate::report::terminal::render_text;
use crate::session::{self, Stages};
use crate::store::RunWriter;
use crate::store::folder;
use crate::store::lock::FolderLock;
use crate::suite::discover::suite_files;
use crate::suite::load::load_all;

pub fn run(args: RunArgs) -> Result<Outcome, AppError> {
    let otlp = OtlpTarget::resolve(
        args.otlp.otlp.as_deref(),
        &args.otlp.otlp_headers,
        args.otlp.otlp_protocol.as_deref(),
    )?;
    let (plans, _locks) = resolve(&args)?;
    for plan in &plans {
        for warning in &plan.warnings {
            out::eprintln(&format!("warning: {warning}"));
        }
    }
    let runtime = runtime()?;
    let client = otlp.as_ref().map(|_| send::client()).transpose()?;
    let mut reports: Vec<SuiteReport> = Vec::new();
    for plan in plans {
        let report =
            runtime.block_on(run_plan(&plan, &args, otlp.as_ref().zip(client.as_ref())))?;
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
    let outcome = Outcome::worst(reports.iter().map(|r| Outcome::from(r.result)));
    if args.format == Format::Json {
        let document = serde_json::json!({ "suites": reports, "exit_code": outcome.code() });
        out::print_data(&serde_json::to_string_pretty(&document).unwrap_or_default());
    }
    Ok(outcome)
}

/// Raw flags and suite files into plans, with their folders locked for this process and
/// prepared for fresh runs.
fn resolve(args: &RunArgs) -> Result<(Vec<Plan>, Vec<FolderLock>), AppError> {
    let overrides = Overrides {
        runs: args.runs,
        seed: args.seed,
        concurrency: args.concurrency,
        timeout_ms: args.timeout_ms,
        shard: args.shard,
        baseline: args.baseline.clone(),
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
    let locks = plans
        .iter()
        .map(|plan| folder::prepare(&plan.out_dir, &plan.meta(), args.force))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((plans, locks))
}

async fn run_plan(
    plan: &Plan,
    args: &RunArgs,
    otlp: Option<(&OtlpTarget, &reqwest::Client)>,
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
    let mut executed = session::execute(plan, &mut reporters, session::stop_signal()).await?;
    drop(reporters);
    if let (Some(streamer), Some((target, _))) = (streamer, otlp) {
        let report = streamer.finish().await;
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
