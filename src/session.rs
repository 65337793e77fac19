//! One suite run, end to end, in two stages the command calls in turn:
//! [`execute`] runs what the plan still lacks, handing every event to the reporters, and
//! [`finish`] turns the folder's runs into results.parquet, statistics, the gate's
//! verdict, summary.json and the report files. `merge` calls only `finish`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;

use crate::aggregate::aggregate;
use crate::baseline;
use crate::chain::PreflightError;
use crate::events::{Event, Reporter};
use crate::exit_codes::Outcome;
use crate::model::meta::Meta;
use crate::model::summary::{SUMMARY_FILE, SuiteReport, SuiteResult, TraceExport};
use crate::plan::Plan;
use crate::report::files::{self, ReportError};
use crate::results::{self, ResultsError};
use crate::runner::{Budget, RunContext, execute as run_jobs};
use crate::schedule::Schedule;
use crate::store::recorded_runs;

/// Why a suite run stopped short of its reports.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{}: {cause}", suite.display())]
    Preflight {
        suite: PathBuf,
        cause: PreflightError,
    },
    #[error("{} holds the runs of another plan (suite `{other}`): its meta.json changed under this run", dir.display())]
    ForeignFolder { dir: PathBuf, other: String },
    #[error("cannot read {}", dir.display())]
    Read {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot record runs in {}; the runs recorded before this are kept: `ragprobe run --resume {}` finishes the plan", dir.display(), dir.display())]
    Record {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot aggregate {}; its runs are kept in runs.jsonl: `ragprobe run --resume {}` writes the reports again", dir.display(), dir.display())]
    Aggregate {
        dir: PathBuf,
        #[source]
        source: ResultsError,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// What [`execute`] did.
#[derive(Debug, Clone)]
pub struct Executed {
    /// Runs the plan holds in all (done before and now).
    pub planned_runs: u32,
    /// `runs: auto`: runs that finished after their case was decided, not recorded.
    pub adaptive_dropped: u32,
    pub interrupted: bool,
    /// With `--otlp`, what became of the traces streamed while running.
    pub trace_export: Option<TraceExport>,
    /// The budget that kept runs from starting, said in a line.
    pub budget_spent: Option<String>,
}

/// Runs what `plan` still lacks in its folder, until done or until `stop` resolves (then
/// the runs in flight are dropped, finished ones are kept). Every event goes to every
/// reporter in order; a reporter's error stops the suite.
pub async fn execute(
    plan: &Plan,
    reporters: &mut [&mut dyn Reporter],
    stop: impl Future<Output = ()>,
    budget: Option<Arc<Budget>>,
) -> Result<Executed, SessionError> {
    let dir = &plan.out_dir;
    // The runs already in the folder count as this plan's only if the folder is this
    // plan's: never another suite's runs under this suite's name.
    let on_disk = Meta::read(dir).map_err(|source| SessionError::Read {
        dir: dir.clone(),
        source,
    })?;
    if !plan.meta().same_plan(&on_disk) {
        return Err(SessionError::ForeignFolder {
            dir: dir.clone(),
            other: on_disk.suite_name,
        });
    }
    let done = recorded_runs(dir).map_err(|source| SessionError::Read {
        dir: dir.clone(),
        source,
    })?;
    let remaining = plan.remaining(&done);
    if remaining.iter().any(|(_, left)| *left > 0) {
        plan.suite
            .chain
            .preflight()
            .await
            .map_err(|cause| SessionError::Preflight {
                suite: plan.suite.path.clone(),
                cause,
            })?;
    }
    let planned_runs = plan.planned_runs();
    let mut dispatch = |event: Event| -> Result<(), SessionError> {
        for reporter in reporters.iter_mut() {
            reporter
                .write_event(&event)
                .map_err(|source| SessionError::Record {
                    dir: dir.clone(),
                    source,
                })?;
        }
        Ok(())
    };
    dispatch(Event::SuiteStarted {
        suite: plan.suite.spec.name.clone(),
        remaining,
        concurrency: plan.concurrency,
        adaptive: plan.adaptive.is_some(),
    })?;

    let context = Arc::new(RunContext {
        chain: Arc::clone(&plan.suite.chain),
        rules: Arc::new(plan.suite.spec.rules.clone()),
        timeout: plan.timeout,
        intervention: None,
        judge: plan.suite.judge.clone(),
        prices: plan.suite.prices(),
        budget: budget.clone(),
    });
    let (sender, mut receiver) = mpsc::channel::<Event>(256);
    // Adaptive cases need a schedule that stops them; fixed plans keep the plain order.
    let schedule = match plan.adaptive {
        Some(_) => {
            let recorded = adaptive_records(plan).map_err(|source| SessionError::Read {
                dir: dir.clone(),
                source,
            })?;
            Some(Arc::new(Schedule::new(plan, &done, &recorded)))
        }
        None => None,
    };
    let jobs: Box<dyn Iterator<Item = crate::plan::Job> + Send> = match &schedule {
        Some(schedule) => {
            let schedule = Arc::clone(schedule);
            Box::new(std::iter::from_fn(move || schedule.next_job()))
        }
        None => Box::new(plan.jobs(&done)),
    };
    let mut dispatch = |event: Event| -> Result<(), SessionError> {
        let Some(schedule) = &schedule else {
            return dispatch(event);
        };
        match event {
            Event::RunFinished(record) => {
                let released = schedule.accept(*record);
                for record in released.records {
                    dispatch(Event::RunFinished(Box::new(record)))?;
                }
                if let Some((case, runs, stop)) = released.decided {
                    dispatch(Event::CaseDecided { case, runs, stop })?;
                }
                Ok(())
            }
            other => dispatch(other),
        }
    };
    let runner = run_jobs(context, jobs, plan.concurrency, sender);
    tokio::pin!(runner);
    tokio::pin!(stop);
    let mut runner_done = false;
    let mut interrupted = false;
    loop {
        tokio::select! {
            event = receiver.recv() => match event {
                Some(event) => dispatch(event)?,
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
        // in flight are dropped with the runner.
        receiver.close();
        while let Ok(event) = receiver.try_recv() {
            dispatch(event)?;
        }
    }
    let adaptive_dropped = schedule.as_ref().map_or(0, |s| s.dropped());
    dispatch(Event::SuiteFinished { interrupted })?;
    Ok(Executed {
        planned_runs,
        adaptive_dropped,
        interrupted,
        trace_export: None,
        budget_spent: budget.filter(|b| b.stopped()).map(|b| {
            let (calls, cost) = b.spent();
            // Dollars only under a cost budget: a calls budget may run unpriced models.
            match b.max_cost_usd {
                Some(_) => format!("{} reached ({calls} calls, ${cost:.4} spent)", b.describe()),
                None => format!("{} reached ({calls} calls)", b.describe()),
            }
        }),
    })
}

/// From a folder of runs to every report: results.parquet, aggregation, the gate,
/// summary.json, summary.md, junit.xml, report.html.
pub fn finish(
    plan: &Plan,
    executed: Executed,
    stages: &mut Stages,
) -> Result<SuiteReport, SessionError> {
    let dir = &plan.out_dir;
    let failed_to_aggregate = |source| SessionError::Aggregate {
        dir: dir.clone(),
        source,
    };
    let mut sources: results::SourcesByTurn<'_> = HashMap::new();
    for case in &plan.suite.spec.cases {
        let turns = case.turns.iter().flatten().enumerate();
        let expects = turns
            .map(|(t, turn)| (t as u32 + 1, turn.expect.as_ref()))
            .chain([(0, case.expect.as_ref())]);
        for (turn, expect) in expects {
            if let Some(expect) = expect.filter(|e| !e.sources.is_empty()) {
                sources.insert((case.id.as_str(), turn), &expect.sources);
            }
        }
    }
    let rows = results::write(dir, &plan.suite.spec.name, &sources).map_err(failed_to_aggregate)?;
    stages.done(&format!("results.parquet ({rows} rows), retrieved.parquet"));
    let mut stats =
        aggregate(&plan.suite, &plan.case_ids_with_runs(), dir).map_err(failed_to_aggregate)?;
    let mut planned_runs = executed.planned_runs;
    let mut adaptive_runs = None;
    if let Some(settings) = plan.adaptive {
        let records = adaptive_records(plan).map_err(|source| SessionError::Read {
            dir: dir.clone(),
            source,
        })?;
        let ids: HashSet<String> = records.iter().map(|r| r.case.clone()).collect();
        let adaptive_ids: HashSet<String> = plan
            .adaptive_case_ids()
            .into_iter()
            .filter(|id| ids.contains(id))
            .collect();
        crate::aggregate::apply_adaptive(
            &plan.suite,
            plan.baseline.as_ref().map(|b| &b.summary),
            settings,
            &adaptive_ids,
            &records,
            &mut stats,
        );
        // A decided case is complete with the runs it used.
        let (mut used, mut most) = (0, 0);
        for case in &stats.cases {
            if let Some(adaptive) = case.adaptive {
                used = u32::saturating_add(used, adaptive.runs_used);
                most = u32::saturating_add(most, adaptive.max_runs);
                if adaptive.stop.is_final() {
                    planned_runs = planned_runs.saturating_sub(adaptive.runs_saved);
                }
            }
        }
        let fixed_design = plan
            .baseline
            .as_ref()
            .map(|before| fixed_design(plan, &before.summary, &stats));
        adaptive_runs = Some(crate::model::summary::AdaptiveRuns {
            settings,
            runs_used: used,
            max_runs_total: most,
            dropped: executed.adaptive_dropped,
            fixed_design,
        });
    }
    stages.done("aggregation (polars)");
    let mut baseline_retrieval = plan
        .baseline
        .as_ref()
        .map(|before| {
            crate::diff::retrieval_changes(
                &before.summary.stats.cases,
                &stats.cases,
                plan.suite.spec.retrieval_gate,
                plan.suite.spec.significance.0,
            )
        })
        .unwrap_or_default();
    let (baseline_cases, gate) = match plan.baseline.as_ref() {
        Some(before) => {
            let (cases, gate) = baseline::compare(
                &before.summary,
                &stats,
                &plan.suite,
                &mut baseline_retrieval,
            );
            (Some(cases), Some(gate))
        }
        None => (None, None),
    };
    let failed = baseline::failing_cases(&stats, baseline_cases.as_deref());
    let result = if executed.interrupted {
        SuiteResult::Interrupted
    } else if stats.runs < planned_runs {
        SuiteResult::Incomplete
    } else if stats.errors_exceeded || stats.cases.iter().any(|c| c.outcome.is_error()) {
        SuiteResult::Error
    } else if !failed.is_empty() || crate::model::summary::retrieval_regressed(&baseline_retrieval)
    {
        SuiteResult::Fail
    } else {
        SuiteResult::Pass
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
        exit_code: Outcome::from(result).code(),
        baseline: plan.baseline.as_ref().map(|b| b.label.clone()),
        baseline_cases: baseline_cases.unwrap_or_default(),
        gate,
        failed,
        stats,
        trace_export: executed.trace_export,
        budget_spent: executed.budget_spent,
        baseline_retrieval,
        adaptive: adaptive_runs,
    };
    let summary = serde_json::to_string_pretty(&report).map_err(|e| SessionError::Write {
        path: dir.join(SUMMARY_FILE),
        source: std::io::Error::other(e),
    })?;
    crate::atomic::write(&dir.join(SUMMARY_FILE), summary + "\n").map_err(|source| {
        SessionError::Write {
            path: dir.join(SUMMARY_FILE),
            source,
        }
    })?;
    files::write_all(&report, &plan.suite)?;
    stages.done("summary.json, summary.md, junit.xml, report.html");
    Ok(report)
}

/// What a fixed design would need for the adaptive cases' guarantees against `baseline`:
/// per case, the fewest new runs that catch a drop of `detect` with 80% power at the level
/// one regressed case faces under the suite's correction.
fn fixed_design(
    plan: &Plan,
    baseline: &SuiteReport,
    stats: &crate::model::summary::SuiteStats,
) -> crate::model::summary::FixedDesign {
    let spec = &plan.suite.spec;
    let before: HashMap<&str, &crate::model::summary::CaseStats> = baseline
        .stats
        .cases
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();
    let rates: Vec<f64> = stats
        .cases
        .iter()
        .filter_map(|c| before.get(c.id.as_str()))
        .map(|b| crate::stats::ratio(b.passed, b.evaluated))
        .collect();
    let mut design = crate::model::summary::FixedDesign {
        detect: spec.detect.0,
        runs: 0,
        adaptive_runs: 0,
        unreachable: 0,
    };
    let mut known: HashMap<(u32, u32), Option<u32>> = HashMap::new();
    for case in &stats.cases {
        let (Some(adaptive), Some(b)) = (case.adaptive, before.get(case.id.as_str())) else {
            continue;
        };
        let rate = crate::stats::ratio(b.passed, b.evaluated);
        let level =
            crate::power::planning_level(spec.correction, spec.significance.0, &rates, rate);
        let needed = *known.entry((b.passed, b.evaluated)).or_insert_with(|| {
            crate::power::runs_needed_against(
                rate,
                spec.detect.0 - spec.min_effect.0,
                b.evaluated,
                level,
                crate::gate::TARGET_POWER,
                100_000,
            )
        });
        match needed {
            Some(n) => {
                design.runs += u64::from(n);
                design.adaptive_runs += u64::from(adaptive.runs_used);
            }
            None => design.unreachable += 1,
        }
    }
    design
}

/// The recorded runs of the plan's adaptive cases, which their tests start from.
fn adaptive_records(plan: &Plan) -> std::io::Result<Vec<crate::model::record::RunRecord>> {
    let ids: HashSet<String> = plan.adaptive_case_ids().into_iter().collect();
    let mut records = Vec::new();
    if !plan.out_dir.join(crate::store::runs::RUNS_FILE).exists() {
        return Ok(records);
    }
    for record in crate::store::RunReader::open(&plan.out_dir)? {
        let record = record?;
        if ids.contains(&record.case) {
            records.push(record);
        }
    }
    Ok(records)
}

/// `work`, unless Ctrl-C or SIGTERM comes first (then `None`, at once: whatever `work` was
/// doing is dropped). For what comes after the runs — publishing, exporting — so a signal
/// is never ignored while a slow server is talked to.
pub async fn unless_stopped<T>(work: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        value = work => Some(value),
        () = stop_signal() => None,
    }
}

/// Resolves on Ctrl-C, or on SIGTERM (what CI runners and `timeout` send).
pub async fn stop_signal() {
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

/// With `--timings`, one stderr line per finished stage, with the peak RSS so far.
pub struct Stages {
    enabled: bool,
    last: Instant,
}

impl Stages {
    pub fn new(enabled: bool) -> Stages {
        Stages {
            enabled,
            last: Instant::now(),
        }
    }

    pub fn done(&mut self, stage: &str) {
        if self.enabled {
            eprintln!(
                "timing: {stage}: {:.3} s{}",
                self.last.elapsed().as_secs_f64(),
                peak_rss_mb().map_or(String::new(), |mb| format!(", peak RSS so far {mb:.1} MB"))
            );
        }
        self.last = Instant::now();
    }
}

/// The process's peak resident set, from /proc (Linux only).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}
