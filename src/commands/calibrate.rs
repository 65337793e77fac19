//! `ragprobe calibrate`: how far to trust a model judge. Human verdicts on recorded runs
//! (JSON Lines) against the judge's own verdicts on the same runs, per judged rule:
//! agreement, Cohen's kappa with a 95% interval, the confusion matrix, and a warning when
//! kappa is below 0.6 or the labels are too few to say.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::CalibrateArgs;
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::model::calibration::{Calibration, Confusion};
use crate::model::record::RunRecord;
use crate::out;
use crate::stats::{Agreement, cohen_kappa};
use crate::suite::load::load;

/// Below this kappa the judge agrees with people too little to gate on (a common reading
/// of Landis & Koch's "substantial").
const MIN_KAPPA: f64 = 0.6;
/// Fewer labels than this, or fewer than `MIN_PER_LABEL` of either human verdict, and the
/// interval is too wide to say anything.
const MIN_LABELS: u32 = 20;
const MIN_PER_LABEL: u32 = 5;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Label {
    /// The report folder, relative to the labels file (default: --report).
    #[serde(default)]
    report: Option<PathBuf>,
    case: String,
    run: u32,
    rule: String,
    label: Verdict,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Pass,
    Fail,
}

pub fn calibrate(args: CalibrateArgs) -> Result<Outcome, AppError> {
    let suite = load(&args.suite)?;
    let text = crate::commands::common::read_input(&args.labels)?;
    let base = args.labels.parent().unwrap_or(Path::new("."));
    let mut folders: HashMap<PathBuf, HashMap<(String, u32), RunRecord>> = HashMap::new();
    // Rule → confusion counts [judge pass/fail][human pass/fail].
    let mut confusion: BTreeMap<String, [[u32; 2]; 2]> = BTreeMap::new();
    // One label per run and rule: (folder, case, run, rule) → (verdict, line).
    let mut labelled: HashMap<(PathBuf, String, u32, String), (Verdict, usize)> = HashMap::new();
    let mut duplicates = 0usize;
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |message: String| {
            AppError::Usage(format!(
                "{}:{}: {message}",
                args.labels.display(),
                number + 1
            ))
        };
        let label: Label = serde_json::from_str(line).map_err(|e| at(e.to_string()))?;
        let folder = match (&label.report, &args.report) {
            (Some(dir), _) => base.join(dir),
            (None, Some(dir)) => dir.clone(),
            (None, None) => {
                return Err(at(
                    "the line names no `report` folder and --report is not given".into(),
                ));
            }
        };
        if !folders.contains_key(&folder) {
            let runs = read_runs(&folder).map_err(&at)?;
            folders.insert(folder.clone(), runs);
        }
        let record = folders
            .get(&folder)
            .and_then(|runs| runs.get(&(label.case.clone(), label.run)))
            .ok_or_else(|| {
                at(format!(
                    "no run {} of case `{}` in {}",
                    label.run,
                    label.case,
                    folder.display()
                ))
            })?;
        let result = record
            .verdict
            .as_ref()
            .and_then(|v| v.rules.iter().find(|r| r.id == label.rule))
            .ok_or_else(|| {
                at(format!(
                    "run {} of case `{}` has no verdict on rule `{}`",
                    label.run, label.case, label.rule
                ))
            })?;
        let votes = result
            .judge_votes
            .as_ref()
            .ok_or_else(|| at(format!("rule `{}` is not judged by a model", label.rule)))?;
        let key = (
            folder.canonicalize().unwrap_or_else(|_| folder.clone()),
            label.case.clone(),
            label.run,
            label.rule.clone(),
        );
        match labelled.get(&key) {
            Some((verdict, _)) if *verdict == label.label => {
                // The same label again: counted once.
                duplicates += 1;
                continue;
            }
            Some((_, first)) => {
                return Err(at(format!(
                    "run {} of case `{}` is labelled again for rule `{}`, differently from line {}: one label per run (decide which holds)",
                    label.run, label.case, label.rule, first
                )));
            }
            None => {
                labelled.insert(key, (label.label, number + 1));
            }
        }
        // The judge's own verdict (the majority of its repeats), not the rule's: a rule
        // may add other checks.
        let judge_passed = votes.iter().filter(|v| **v).count() * 2 > votes.len();
        let row = usize::from(!judge_passed);
        let column = usize::from(label.label == Verdict::Fail);
        confusion.entry(label.rule.clone()).or_default()[row][column] += 1;
    }
    if confusion.is_empty() {
        return Err(AppError::Usage(format!(
            "{}: no labels",
            args.labels.display()
        )));
    }
    let judge = suite
        .judge
        .as_ref()
        .map_or("no judge declared".to_owned(), |j| j.describe());
    let mut text = format!(
        "calibrate: suite {} · judge {judge} · labels {}\n",
        suite.spec.name,
        args.labels.display()
    );
    if duplicates > 0 {
        text.push_str(&format!(
            "{duplicates} repeated label{} (same run, same verdict) counted once\n",
            if duplicates == 1 { "" } else { "s" }
        ));
    }
    let mut doubtful = false;
    for (rule, counts) in &confusion {
        doubtful |= render_rule(&mut text, rule, *counts);
    }
    if let Some(save) = &args.save {
        let mut inputs: Vec<&Path> = vec![args.labels.as_path()];
        inputs.extend(folders.keys().map(PathBuf::as_path));
        crate::store::folder::refuse_output_over_inputs(save, &inputs, false)?;
        let calibration = Calibration {
            labels: args.labels.display().to_string(),
            rules: confusion
                .iter()
                .map(|(rule, counts)| (rule.clone(), Confusion::from_matrix(*counts)))
                .collect(),
        };
        let json = serde_json::to_string_pretty(&calibration).unwrap_or_default() + "\n";
        crate::atomic::write(save, json)
            .map_err(AppError::io(format!("cannot write {}", save.display())))?;
        let _ = writeln!(
            text,
            "\ncalibration saved to {}: name it in the suite's `judge: {{calibration: …}}` to correct judged pass rates in reports",
            save.display()
        );
    }
    out::print(&text);
    Ok(if doubtful {
        Outcome::ChecksFailed
    } else {
        Outcome::Ok
    })
}

/// One rule's agreement; returns whether it deserves a warning.
fn render_rule(out: &mut String, rule: &str, counts: [[u32; 2]; 2]) -> bool {
    let Agreement {
        n,
        observed,
        kappa,
        kappa_ci95: [low, high],
    } = cohen_kappa(counts);
    let _ = writeln!(
        out,
        "\nrule {rule}: {n} labelled runs · agreement {:.1}% · Cohen's kappa {kappa:.2} [{low:.2}, {high:.2}] (95%)",
        observed * 100.0
    );
    let _ = writeln!(out, "                human pass  human fail");
    let _ = writeln!(
        out,
        "  judge pass   {:>10}  {:>10}",
        counts[0][0], counts[0][1]
    );
    let _ = writeln!(
        out,
        "  judge fail   {:>10}  {:>10}",
        counts[1][0], counts[1][1]
    );
    let human_pass = counts[0][0] + counts[1][0];
    let human_fail = counts[0][1] + counts[1][1];
    if n < MIN_LABELS || human_pass < MIN_PER_LABEL || human_fail < MIN_PER_LABEL {
        let _ = writeln!(
            out,
            "  warning: too few labels to say ({n} runs, {human_pass} pass and {human_fail} fail by people; label at least {MIN_LABELS}, {MIN_PER_LABEL} of each)"
        );
        return true;
    }
    if kappa < MIN_KAPPA {
        let _ = writeln!(
            out,
            "  warning: kappa {kappa:.2} is below {MIN_KAPPA}: the judge agrees with people too little to gate on this rule"
        );
        return true;
    }
    false
}

fn read_runs(folder: &Path) -> Result<HashMap<(String, u32), RunRecord>, String> {
    let reader = crate::store::RunReader::open(folder)
        .map_err(|e| format!("{} is not a report folder: {e}", folder.display()))?;
    let mut runs = HashMap::new();
    for record in reader {
        let record = record.map_err(|e| format!("{}: {e}", folder.display()))?;
        runs.insert((record.case.clone(), record.run), record);
    }
    Ok(runs)
}
