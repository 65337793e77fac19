//! `ragprobe plan SUITE --baseline DIR --detect 0.2`: how many runs per case the gate
//! needs to catch a drop of that size with 80% power, from the baseline's pass rates,
//! before anyone pays for the runs.

use std::fmt::Write;

use crate::cli::{Format, PlanArgs};
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::model::summary::read_summary;
use crate::out;
use crate::power::{CaseSize, size_cases};
use crate::report::text::{row, table};
use crate::suite::load::load;

/// The most runs per case a plan will suggest.
const MOST: u32 = 100_000;

#[derive(serde::Serialize)]
struct Sizing {
    suite: String,
    baseline: Option<String>,
    detect: f64,
    min_effect: f64,
    power: f64,
    significance: f64,
    correction: crate::model::summary::Correction,
    /// The most any case needs: the suite's `runs:` for a fixed design.
    runs_per_case: Option<u32>,
    cases: Vec<CaseSize>,
}

pub fn plan(args: PlanArgs) -> Result<Outcome, AppError> {
    let suite = load(&args.suite)?;
    let spec = &suite.spec;
    let detect = args.detect.unwrap_or(spec.detect.0);
    let min_effect = spec.min_effect.0;
    for (flag, value) in [("--detect", detect), ("--power", args.power)] {
        if !(value > 0.0 && value < 1.0) {
            return Err(AppError::Usage(format!(
                "{flag} {value} is not a share: use a value between 0 and 1 (0.2 = 20 points)"
            )));
        }
    }
    if detect <= min_effect {
        return Err(AppError::Usage(format!(
            "--detect {detect} is not above the suite's min_effect ({min_effect}): smaller drops never count"
        )));
    }
    let (label, counts): (Option<String>, Vec<(String, u32, u32)>) = match (
        &args.baseline,
        args.pass_rate,
    ) {
        (Some(dir), _) => {
            let summary = read_summary(dir).map_err(|e| AppError::Usage(e.to_string()))?;
            let counts = spec
                .cases
                .iter()
                .filter_map(|case| {
                    let before = summary.stats.cases.iter().find(|c| c.id == case.id)?;
                    Some((case.id.clone(), before.passed, before.evaluated))
                })
                .collect();
            (Some(dir.display().to_string()), counts)
        }
        (None, Some(rate)) if (0.0..=1.0).contains(&rate) => {
            // An assumed rate, as if from 1,000 baseline runs.
            let passed = (rate * 1000.0).round() as u32;
            let counts = spec
                .cases
                .iter()
                .map(|c| (c.id.clone(), passed, 1000))
                .collect();
            (None, counts)
        }
        (None, Some(rate)) => {
            return Err(AppError::Usage(format!(
                "--pass-rate {rate} is not a share: use a value between 0 and 1"
            )));
        }
        (None, None) => {
            return Err(AppError::Usage(
                    "give --baseline DIR (its pass rates) or --pass-rate P (an assumed rate for every case)".into(),
                ));
        }
    };
    if counts.is_empty() {
        return Err(AppError::Usage(
            "the baseline has none of the suite's cases".into(),
        ));
    }
    let cases = size_cases(
        &counts,
        detect,
        min_effect,
        spec.significance.0,
        spec.correction,
        args.power,
        MOST,
    );
    let sizing = Sizing {
        suite: spec.name.clone(),
        baseline: label,
        detect,
        min_effect,
        power: args.power,
        significance: spec.significance.0,
        correction: spec.correction,
        runs_per_case: cases.iter().filter_map(|c| c.runs).max(),
        cases,
    };
    match args.format {
        Format::Text => out::print(&render(&sizing)),
        Format::Json => out::print_data(&serde_json::to_string_pretty(&sizing).unwrap_or_default()),
    }
    Ok(Outcome::Ok)
}

fn render(sizing: &Sizing) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "suite {} · to catch a drop of {:.0} points with {:.0}% power ({}, family-wise error {}{})",
        sizing.suite,
        sizing.detect * 100.0,
        sizing.power * 100.0,
        sizing.correction.label(),
        sizing.significance,
        if sizing.min_effect > 0.0 {
            format!(", min_effect {:.0} points", sizing.min_effect * 100.0)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        text,
        "rates from {}; runs per case on both sides (baseline and new)\n",
        sizing
            .baseline
            .as_deref()
            .map_or("--pass-rate".to_owned(), |b| format!("the baseline {b}"))
    );
    let mut rows = vec![row(&["case", "baseline", "level", "runs per case"])];
    for case in &sizing.cases {
        rows.push(vec![
            case.id.clone(),
            format!("{}/{}", case.baseline_passed, case.baseline_evaluated),
            format!("{:.2e}", case.level),
            match (case.runs, &case.note) {
                (Some(n), _) => n.to_string(),
                (None, Some(note)) => format!("— ({note})"),
                (None, None) => "—".to_owned(),
            },
        ]);
    }
    table(&mut text, &rows, "  ");
    let sized: Vec<&CaseSize> = sizing.cases.iter().filter(|c| c.runs.is_some()).collect();
    match sizing.runs_per_case {
        Some(most) => {
            let total: u64 = sized.iter().filter_map(|c| c.runs).map(u64::from).sum();
            let _ = writeln!(
                text,
                "\nruns: {most} per case covers every case that can be sized ({} of {}); sized one by one, {} runs in all",
                sized.len(),
                sizing.cases.len(),
                total
            );
            let short: Vec<String> = sizing
                .cases
                .iter()
                .filter(|c| c.baseline_evaluated < most && sizing.baseline.is_some())
                .map(|c| c.id.clone())
                .collect();
            if !short.is_empty() {
                let _ = writeln!(
                    text,
                    "the baseline has fewer runs than that for {}: make it again with --runs {most} too (power needs both sides)",
                    crate::report::gate_text::listed(&short)
                );
            }
        }
        None => {
            let _ = writeln!(text, "\nno case can be sized for this drop");
        }
    }
    text
}
