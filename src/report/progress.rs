//! Progress on stderr while a suite runs: an indicatif bar on a terminal, one plain line
//! per finished case in CI logs, or nothing.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, Reporter};
use crate::model::record::{RunRecord, RunStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise (and always when CI is set).
    Auto,
    /// A progress bar on stderr.
    Bar,
    /// One line on stderr per finished case.
    Lines,
    /// Nothing while running.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bar,
    Lines,
    Silent,
}

impl Style {
    /// `auto` means a bar only for a person at a terminal: never under CI.
    pub fn resolve(mode: ProgressMode, quiet: bool) -> Style {
        if quiet {
            return Style::Silent;
        }
        match mode {
            ProgressMode::Bar => Style::Bar,
            ProgressMode::Lines => Style::Lines,
            ProgressMode::None => Style::Silent,
            ProgressMode::Auto => {
                if std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
                    Style::Bar
                } else {
                    Style::Lines
                }
            }
        }
    }
}

#[derive(Default)]
struct CaseCounts {
    remaining: u32,
    passed: u32,
    failed: u32,
    errors: u32,
}

pub struct Progress {
    style: Style,
    bar: Option<ProgressBar>,
    cases: HashMap<String, CaseCounts>,
    totals: [u32; 3],
}

impl Reporter for Progress {
    fn write_event(&mut self, event: &Event) -> std::io::Result<()> {
        match event {
            Event::SuiteStarted {
                suite,
                remaining,
                concurrency,
                adaptive,
            } => *self = Progress::start(self.style, suite, remaining, *concurrency, *adaptive),
            Event::RunFinished(record) => self.run_finished(record),
            Event::CaseDecided { case, runs, stop } => self.case_decided(case, *runs, *stop),
            Event::SuiteFinished { .. } => {
                if let Some(bar) = &self.bar {
                    bar.finish_and_clear();
                }
            }
        }
        // Progress is best effort: a closed stderr must not stop the runs.
        Ok(())
    }
}

impl Progress {
    /// Shows nothing until the suite starts.
    pub fn new(style: Style) -> Progress {
        Progress {
            style,
            bar: None,
            cases: HashMap::new(),
            totals: [0; 3],
        }
    }

    /// `remaining`: each case and the runs it still has to make.
    fn start(
        style: Style,
        suite: &str,
        remaining: &[(String, u32)],
        concurrency: usize,
        adaptive: bool,
    ) -> Progress {
        let total: u64 = remaining.iter().map(|(_, n)| u64::from(*n)).sum();
        let cases: HashMap<String, CaseCounts> = remaining
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(id, n)| {
                (
                    id.clone(),
                    CaseCounts {
                        remaining: *n,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let bar = (style == Style::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            if let Ok(template) = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} runs  {msg}  {elapsed}",
            ) {
                bar.set_style(template.progress_chars("=> "));
            }
            bar.set_prefix(crate::out::printable(suite).into_owned());
            bar
        });
        if style == Style::Lines {
            crate::out::eprintln(&format!(
                "ragprobe: {suite}: {}{} over {}, {concurrency} at a time",
                if adaptive { "at most " } else { "" },
                crate::text::count(total, "run"),
                crate::text::count(cases.len() as u64, "case")
            ));
        }
        Progress {
            style,
            bar,
            cases,
            totals: [0; 3],
        }
    }

    fn run_finished(&mut self, record: &RunRecord) {
        let slot = match record.status {
            RunStatus::Passed => 0,
            RunStatus::Failed => 1,
            RunStatus::Error => 2,
        };
        self.totals[slot] += 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!(
                "{} passed, {} failed, {} errors",
                self.totals[0], self.totals[1], self.totals[2]
            ));
        }
        let Some(counts) = self.cases.get_mut(&record.case) else {
            return;
        };
        match record.status {
            RunStatus::Passed => counts.passed += 1,
            RunStatus::Failed => counts.failed += 1,
            RunStatus::Error => counts.errors += 1,
        }
        counts.remaining = counts.remaining.saturating_sub(1);
        if counts.remaining == 0 && self.style == Style::Lines {
            Self::case_line(&record.case, counts, "");
        }
    }

    /// An adaptive case stopped before its `max_runs`: its unused runs leave the total.
    fn case_decided(&mut self, case: &str, runs: u32, stop: crate::sequential::Stop) {
        let Some(counts) = self.cases.get_mut(case) else {
            return;
        };
        let unused = counts.remaining;
        counts.remaining = 0;
        if let Some(bar) = &self.bar
            && let Some(length) = bar.length()
        {
            bar.set_length(length.saturating_sub(u64::from(unused)));
        }
        if self.style == Style::Lines && unused > 0 {
            Self::case_line(case, counts, &format!(" ({} after {runs})", stop.label()));
        }
    }

    fn case_line(case: &str, counts: &CaseCounts, note: &str) {
        let mut stderr = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not stop the runs.
        let _ = writeln!(
            stderr,
            "ragprobe:   {case}: {} runs: {} passed, {} failed, {} errors{note}",
            counts.passed + counts.failed + counts.errors,
            counts.passed,
            counts.failed,
            counts.errors
        );
    }
}
