//! `ragprobe run`: load every suite (stopping on any configuration problem before a single
//! run), resolve a plan per suite, run it, aggregate, report, and choose the exit code.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use crate::baseline;
use crate::cli::{Format, RunArgs};
use crate::diff::Change;
use crate::error::AppError;
use crate::events::Event;
use crate::exit_codes;
use crate::export::otlp;
use crate::export::send::{self, OtlpTarget, StreamExporter};
use crate::plan::{DEFAULT_CONCURRENCY, Plan, Selection};
use crate::report::progress::{Progress, Style};
use crate::report::terminal::{SuiteReport, SuiteResult, render_text};
use crate::report::{html, junit, markdown};
use crate::results;
use crate::runner::{RunContext, execute};
use crate::stats::{CaseOutcome, aggregate};
use crate::store::{Meta, RunReader, RunWriter, recorded_runs};
use crate::suite::error::{ConfigError, Problem};
use crate::suite::load::load_with;
use crate::suite::{Suite, discover};

pub const DEFAULT_SUITES: &str = "suites";
pub const DEFAULT_REPORTS: &str = "reports";
pub const SUMMARY_FILE: &str = "summary.json";
pub const MARKDOWN_FILE: &str = "summary.md";
pub const JUNIT_FILE: &str = "junit.xml";
pub const HTML_FILE: &str = "report.html";

pub fn run(args: RunArgs) -> Result<i32, AppError> {
    let target = crate::commands::export::resolve_target(&args.otlp)?;
    let plans = match &args.resume {
        Some(dir) => resume_plans(dir, &args)?,
        None => fresh_plans(&args)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(AppError::io("cannot start the async runtime"))?;

    let client = match &target {
        Some(_) => Some(send::client().map_err(AppError::Usage)?),
        None => None,
    };
    let exporter = target.as_ref().zip(client.as_ref());
    let mut reports = Vec::new();
    for plan in plans {
        let report = runtime.block_on(run_plan(&plan, &args, exporter))?;
        if args.format == Format::Text {
            if !reports.is_empty() && !args.quiet {
                println!();
            }
            print!("{}", render_text(&report, args.quiet));
        }
        let interrupted = report.result == SuiteResult::Interrupted;
        reports.push(report);
        if interrupted {
            break;
        }
    }
    let code = overall_exit_code(reports.iter().map(|r| r.exit_code));
    if args.format == Format::Json {
        let document = serde_json::json!({ "suites": reports, "exit_code": code });
        println!(
            "{}",
            serde_json::to_string_pretty(&document).unwrap_or_default()
        );
    }
    Ok(code)
}

/// Interrupted beats infrastructure beats failed checks beats success.
fn overall_exit_code(codes: impl Iterator<Item = i32>) -> i32 {
    let rank = |code: i32| match code {
        exit_codes::INTERRUPTED => 4,
        exit_codes::INFRASTRUCTURE => 3,
        exit_codes::CHECKS_FAILED => 2,
        exit_codes::OK => 0,
        _ => 1,
    };
    codes.max_by_key(|c| rank(*c)).unwrap_or(exit_codes::OK)
}

fn load_all(files: &[PathBuf], chain: Option<&Path>) -> Result<Vec<Suite>, AppError> {
    let mut suites = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        match load_with(file, chain) {
            Ok(suite) => suites.push(suite),
            Err(err) => problems.extend(err.problems),
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems }.into());
    }
    for suite in &suites {
        for warning in &suite.warnings {
            eprintln!("warning: {warning}");
        }
    }
    Ok(suites)
}

pub fn suite_files(path: Option<&Path>) -> Result<Vec<PathBuf>, AppError> {
    let root = path.unwrap_or(Path::new(DEFAULT_SUITES));
    if !root.exists() {
        return Err(AppError::Usage(format!(
            "{} does not exist: give a suite file or a folder of suites",
            root.display()
        )));
    }
    let files = discover(root).map_err(AppError::io(format!("cannot list {}", root.display())))?;
    if files.is_empty() {
        return Err(AppError::Usage(format!(
            "no suites under {}: a suite is a .yaml file with a top-level `cases:` key",
            root.display()
        )));
    }
    Ok(files)
}

fn fresh_plans(args: &RunArgs) -> Result<Vec<Plan>, AppError> {
    let files = suite_files(args.path.as_deref())?;
    let suites = load_all(&files, args.chain.as_deref())?;
    let selection = Selection {
        ids: args.cases.clone(),
        filter: args.filter.clone(),
    };
    let stamp = timestamp();
    let several = suites.len() > 1;
    let mut plans = Vec::new();
    let mut unmatched: Vec<String> = args.cases.clone();
    for suite in suites {
        // With several suites, a `--case` id needs to exist in one of them only.
        let own = Selection {
            ids: selection
                .ids
                .iter()
                .filter(|id| suite.spec.cases.iter().any(|c| &c.id == *id))
                .cloned()
                .collect(),
            filter: selection.filter.clone(),
        };
        unmatched.retain(|id| !own.ids.contains(id));
        if !selection.ids.is_empty() && own.ids.is_empty() {
            continue;
        }
        let cases = own.apply(&suite.spec.cases).map_err(AppError::Usage)?;
        if cases.is_empty() {
            continue;
        }
        let slug = slug(&suite.spec.name);
        let out_dir = match (&args.out, several) {
            (Some(out), false) => out.clone(),
            (Some(out), true) => out.join(&slug),
            (None, _) => Path::new(DEFAULT_REPORTS).join(format!("{stamp}-{slug}")),
        };
        let mut plan = make_plan(
            suite,
            cases,
            args.runs,
            args.seed,
            args.concurrency,
            args.timeout_ms,
            out_dir,
        );
        plan.baseline = resolve_baseline(args, &slug)?;
        plan.shard = args.shard;
        plans.push(plan);
    }
    if let Some(id) = unmatched.first() {
        return Err(AppError::Usage(format!("no suite has a case `{id}`")));
    }
    if plans.is_empty() {
        return Err(AppError::Usage("no case matches the selection".into()));
    }
    for plan in &plans {
        prepare_out_dir(plan)?;
    }
    Ok(plans)
}

/// The baseline folder for one suite, checked before any run starts.
fn resolve_baseline(args: &RunArgs, slug: &str) -> Result<Option<PathBuf>, AppError> {
    let Some(dir) = &args.baseline else {
        return Ok(None);
    };
    let found = baseline::locate(dir, slug).ok_or_else(|| {
        AppError::Usage(format!(
            "--baseline {}: no summary.json there or in {}/{slug}",
            dir.display(),
            dir.display()
        ))
    })?;
    baseline::load(&found).map_err(|e| AppError::Usage(format!("--baseline: {e}")))?;
    Ok(Some(found))
}

pub(crate) fn make_plan(
    suite: Suite,
    cases: Vec<usize>,
    runs: Option<u32>,
    seed: Option<u64>,
    concurrency: Option<usize>,
    timeout_ms: Option<u64>,
    out_dir: PathBuf,
) -> Plan {
    Plan {
        runs: runs.unwrap_or(suite.spec.runs).max(1),
        seed: seed.or(suite.spec.seed).unwrap_or(0),
        concurrency: concurrency
            .or(suite.spec.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY)
            .max(1),
        timeout: Duration::from_millis(timeout_ms.unwrap_or(suite.spec.timeout_ms).max(1)),
        cases,
        suite: Arc::new(suite),
        out_dir,
        baseline: None,
        shard: None,
    }
}

pub(crate) fn prepare_out_dir(plan: &Plan) -> Result<(), AppError> {
    let dir = &plan.out_dir;
    if dir.join(crate::store::RUNS_FILE).exists() {
        return Err(AppError::Usage(format!(
            "{} already holds results: pass --resume {} to finish them, or another --out",
            dir.display(),
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(AppError::io(format!("cannot create {}", dir.display())))?;
    let suite_path =
        std::fs::canonicalize(&plan.suite.path).unwrap_or_else(|_| plan.suite.path.clone());
    Meta {
        ragprobe_version: env!("CARGO_PKG_VERSION").to_owned(),
        suite_name: plan.suite.spec.name.clone(),
        suite_path,
        suite_fingerprint: plan.suite.fingerprint,
        chain_path: plan.suite.chain_override.clone(),
        shard: plan.shard.map(|s| s.to_string()),
        seed: plan.seed,
        runs: plan.runs,
        cases: plan.case_ids(),
        chain: plan.suite.chain.describe(),
        created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
    }
    .write(dir)
    .map_err(AppError::io(format!("cannot write {}", dir.display())))
}

/// The report folders to resume: `dir` itself, or the suite folders inside it.
fn resume_plans(dir: &Path, args: &RunArgs) -> Result<Vec<Plan>, AppError> {
    let mut dirs = Vec::new();
    if dir.join(crate::store::META_FILE).exists() {
        dirs.push(dir.to_owned());
    } else if let Ok(entries) = std::fs::read_dir(dir) {
        let mut inner: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join(crate::store::META_FILE).exists())
            .collect();
        inner.sort();
        dirs.extend(inner);
    }
    if dirs.is_empty() {
        return Err(AppError::Usage(format!(
            "{} is not a report folder: it has no {}",
            dir.display(),
            crate::store::META_FILE
        )));
    }
    let mut plans = Vec::new();
    for dir in dirs {
        let meta =
            Meta::read(&dir).map_err(AppError::io(format!("cannot read {}", dir.display())))?;
        let suite = load_with(&meta.suite_path, meta.chain_path.as_deref())?;
        if suite.fingerprint != meta.suite_fingerprint {
            eprintln!(
                "warning: {} (or its chain or corpus) changed since {} was started; \
                 the remaining runs use the current files",
                meta.suite_path.display(),
                dir.display()
            );
        }
        let mut cases = Vec::new();
        for id in &meta.cases {
            let index = suite
                .spec
                .cases
                .iter()
                .position(|c| &c.id == id)
                .ok_or_else(|| {
                    ConfigError::from(
                        Problem::new(
                            &meta.suite_path,
                            format!("case `{id}` was planned but is no longer in the suite"),
                        )
                        .hint("restore the case, or start a fresh run"),
                    )
                })?;
            cases.push(index);
        }
        let slug = slug(&suite.spec.name);
        let mut plan = make_plan(
            suite,
            cases,
            Some(meta.runs),
            Some(meta.seed),
            args.concurrency,
            args.timeout_ms,
            dir,
        );
        plan.baseline = resolve_baseline(args, &slug)?;
        plan.shard = match meta.shard.as_deref() {
            Some(text) => Some(crate::plan::Shard::parse(text).map_err(AppError::Usage)?),
            None => None,
        };
        plans.push(plan);
    }
    Ok(plans)
}

async fn run_plan(
    plan: &Plan,
    args: &RunArgs,
    otlp_target: Option<(&OtlpTarget, &reqwest::Client)>,
) -> Result<SuiteReport, AppError> {
    let mut stages = Stages::new(args.timings);
    let dir = &plan.out_dir;
    let done =
        recorded_runs(dir).map_err(AppError::io(format!("cannot read {}", dir.display())))?;
    let remaining = plan.remaining(&done);
    if remaining.iter().any(|(_, left)| *left > 0) {
        plan.suite.chain.preflight().await.map_err(|cause| {
            AppError::Unreachable(format!("{}: {cause}", plan.suite.path.display()))
        })?;
    }
    let planned_runs: u32 = plan.remaining(&HashSet::new()).iter().map(|(_, n)| n).sum();
    let mut writer =
        RunWriter::open(dir).map_err(AppError::io(format!("cannot open {}", dir.display())))?;
    let mut progress = Progress::start(
        Style::resolve(args.progress, args.quiet),
        &plan.suite.spec.name,
        &remaining,
        plan.concurrency,
    );

    let context = Arc::new(RunContext {
        chain: Arc::clone(&plan.suite.chain),
        rules: Arc::new(plan.suite.spec.rules.clone()),
        timeout: plan.timeout,
    });
    let (sender, mut receiver) = mpsc::channel::<Event>(256);
    let runner = execute(context, plan.jobs(&done), plan.concurrency, sender);
    tokio::pin!(runner);
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut runner_done = false;
    let mut interrupted = false;
    let exporter =
        otlp_target.map(|(target, client)| StreamExporter::start(target.clone(), client.clone()));
    let suite_name = plan.suite.spec.name.clone();
    let mut handle = |event: Event| -> Result<(), AppError> {
        let Event::RunFinished(record) = &event;
        writer
            .append(record)
            .map_err(AppError::io(format!("cannot append to {}", dir.display())))?;
        if let Some(exporter) = &exporter {
            exporter.offer(otlp::spans_for(record, &suite_name));
        }
        progress.write_event(&event);
        Ok(())
    };
    loop {
        tokio::select! {
            event = receiver.recv() => match event {
                Some(event) => handle(event)?,
                None => break,
            },
            () = &mut runner, if !runner_done => runner_done = true,
            () = &mut stop => {
                interrupted = true;
                break;
            }
        }
    }
    if interrupted {
        // Runs that finished before the signal are in the channel: keep them. Those still
        // in flight are dropped with the runner below.
        receiver.close();
        while let Ok(event) = receiver.try_recv() {
            handle(event)?;
        }
    }
    progress.finish();
    if let (Some(exporter), Some((target, _))) = (exporter, otlp_target) {
        let report = exporter.finish().await;
        if !args.quiet || report.failed > 0 || report.dropped > 0 {
            eprintln!("{}", report.summary(target));
        }
        if report.failed > 0 || report.dropped > 0 {
            eprintln!(
                "otlp: runs.jsonl has every trace; `ragprobe export {} --otlp …` sends them again",
                dir.display()
            );
        }
    }

    stages.done("runs");
    finish_report(plan, planned_runs, interrupted, &mut stages)
}

/// From a folder of runs to every report: results.parquet, aggregation, the exit code,
/// summary.json, summary.md, junit.xml, report.html. `merge` ends the same way.
pub(crate) fn finish_report(
    plan: &Plan,
    planned_runs: u32,
    interrupted: bool,
    stages: &mut Stages,
) -> Result<SuiteReport, AppError> {
    let dir = &plan.out_dir;
    let failed_to_aggregate = |e: &dyn std::fmt::Display| AppError::Io {
        context: format!("cannot aggregate {}", dir.display()),
        source: std::io::Error::other(e.to_string()),
    };
    let rows = results::write(dir, &plan.suite.spec.name).map_err(|e| failed_to_aggregate(&e))?;
    stages.done(&format!("results.parquet ({rows} rows)"));
    let stats = aggregate(&plan.suite, &plan.case_ids_with_runs(), dir)
        .map_err(|e| failed_to_aggregate(&e))?;
    stages.done("aggregation (polars)");
    let baseline_cases = match &plan.baseline {
        Some(baseline_dir) => {
            let before = baseline::load(baseline_dir)
                .map_err(|e| AppError::Usage(format!("--baseline: {e}")))?;
            baseline::compare(&before, &stats, &plan.suite)
        }
        None => Vec::new(),
    };
    let failed: Vec<String> = match &plan.baseline {
        Some(_) => stats
            .cases
            .iter()
            .filter(|c| {
                c.rules.iter().any(|r| r.exceeded)
                    || baseline_cases
                        .iter()
                        .any(|b| b.id == c.id && b.change == Change::Regression)
            })
            .map(|c| c.id.clone())
            .collect(),
        None => stats.failed_cases().map(|c| c.id.clone()).collect(),
    };
    let (result, exit_code) = if interrupted {
        (SuiteResult::Interrupted, exit_codes::INTERRUPTED)
    } else if stats.errors_exceeded || stats.cases.iter().any(|c| c.outcome == CaseOutcome::Error) {
        (SuiteResult::Error, exit_codes::INFRASTRUCTURE)
    } else if !failed.is_empty() {
        (SuiteResult::Fail, exit_codes::CHECKS_FAILED)
    } else {
        (SuiteResult::Pass, exit_codes::OK)
    };
    let report = SuiteReport {
        suite: plan.suite.spec.name.clone(),
        suite_path: plan.suite.path.clone(),
        out_dir: dir.clone(),
        chain: plan.suite.chain.describe(),
        seed: plan.seed,
        runs_per_case: plan.runs,
        planned_runs,
        result,
        exit_code,
        baseline: plan.baseline.clone(),
        baseline_cases,
        failed,
        stats,
    };
    let summary = serde_json::to_string_pretty(&report).map_err(|e| AppError::Io {
        context: "cannot encode the summary".into(),
        source: std::io::Error::other(e),
    })?;
    std::fs::write(dir.join(SUMMARY_FILE), summary + "\n")
        .map_err(AppError::io(format!("cannot write {}", dir.display())))?;
    write_reports(&report, &plan.suite)?;
    stages.done("summary.json, summary.md, junit.xml, report.html");
    Ok(report)
}

/// With `--timings`, one stderr line per finished stage.
pub(crate) struct Stages {
    enabled: bool,
    last: std::time::Instant,
}

impl Stages {
    pub(crate) fn new(enabled: bool) -> Stages {
        Stages {
            enabled,
            last: std::time::Instant::now(),
        }
    }

    fn done(&mut self, stage: &str) {
        if self.enabled {
            eprintln!(
                "timing: {stage}: {:.3} s{}",
                self.last.elapsed().as_secs_f64(),
                peak_rss_mb().map_or(String::new(), |mb| format!(", peak RSS so far {mb:.1} MB"))
            );
        }
        self.last = std::time::Instant::now();
    }
}

/// The process's peak resident set, from /proc (Linux only).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `summary.md`, `junit.xml` and `report.html` beside `runs.jsonl`.
fn write_reports(report: &SuiteReport, suite: &Suite) -> Result<(), AppError> {
    let dir = &report.out_dir;
    let write = |name: &str, text: String| {
        std::fs::write(dir.join(name), text).map_err(AppError::io(format!(
            "cannot write {}",
            dir.join(name).display()
        )))
    };
    write(MARKDOWN_FILE, markdown::render(report))?;
    let junit = junit::render(report).map_err(|e| AppError::Io {
        context: "cannot encode junit.xml".into(),
        source: std::io::Error::other(e),
    })?;
    write(JUNIT_FILE, junit)?;
    let runs =
        RunReader::open(dir).map_err(AppError::io(format!("cannot read {}", dir.display())))?;
    let path = dir.join(HTML_FILE);
    let file = std::fs::File::create(&path)
        .map_err(AppError::io(format!("cannot write {}", path.display())))?;
    let mut out = std::io::BufWriter::new(file);
    html::render(report, suite, runs, &html::new_nonce(), &mut out)
        .and_then(|()| out.flush().map_err(html::HtmlError::from))
        .map_err(|e| AppError::Io {
            context: format!("cannot write {}", path.display()),
            source: std::io::Error::other(e),
        })
}

/// Resolves on Ctrl-C, or on SIGTERM (what CI runners and `timeout` send).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `20261127-171620`, in UTC, for report folder names.
fn timestamp() -> String {
    let digits: String = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("{}-{}", &digits[..8], &digits[8..])
}

/// Lower-case letters, digits and dashes.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let trimmed = out.trim_end_matches('-').to_owned();
    if trimmed.is_empty() {
        "suite".to_owned()
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_timestamps() {
        assert_eq!(
            slug("Databricks support (before fix)"),
            "databricks-support-before-fix"
        );
        assert_eq!(slug("!!!"), "suite");
        let t = timestamp();
        assert_eq!(t.len(), 15, "{t}");
        assert_eq!(t.as_bytes()[8], b'-');
        assert!(
            t.chars().filter(|c| *c != '-').all(|c| c.is_ascii_digit()),
            "{t}"
        );
    }

    #[test]
    fn exit_code_precedence() {
        let codes = |c: &[i32]| overall_exit_code(c.iter().copied());
        assert_eq!(codes(&[0, 1, 0]), 1);
        assert_eq!(codes(&[1, 3]), 3);
        assert_eq!(codes(&[3, 130]), 130);
        assert_eq!(codes(&[]), 0);
    }
}
