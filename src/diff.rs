//! Lines two report folders up case by case: pass-rate changes judged against noise over
//! all cases at once (see [`crate::gate`]), documents that entered or left the
//! retrieved set, rule violation rate changes, word diffs of the most common answer and
//! prompt, latency deltas, and a representative run of each side.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use similar::{ChangeTag, TextDiff};

use crate::gate::{CasePair, judge_cases};
use crate::model::record::{RunRecord, RunStatus};
use crate::model::summary::{
    CaseStats, CaseTest, Change, Correction, Gate, RetrievalChange, RetrievalGate, SummaryError,
    read_summary,
};
use crate::stats::ratio;
use crate::store::RunReader;

#[derive(Debug, Clone, Serialize)]
pub struct Side {
    pub passed: u32,
    pub evaluated: u32,
    pub pass_rate: f64,
    pub outcome: String,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub errors: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct DocumentChange {
    pub id: String,
    pub a_runs: u32,
    pub b_runs: u32,
    /// `entered`, `left`, `more`, `fewer` or `same`.
    pub kind: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleChange {
    pub id: String,
    pub a_rate: Option<f64>,
    pub b_rate: Option<f64>,
}

/// One word-level edit: `equal`, `delete` or `insert`, and its text.
#[derive(Debug, Clone, Serialize)]
pub struct Edit {
    pub tag: &'static str,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TextChange {
    pub a: String,
    pub a_runs: u32,
    pub b: String,
    pub b_runs: u32,
    pub changed: bool,
    pub edits: Vec<Edit>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CaseDiff {
    pub id: String,
    pub question: String,
    pub change: Change,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<Side>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<Side>,
    /// One-sided p-value for the direction the pass rate moved (1 for a case one side
    /// lacks).
    pub p_value: f64,
    /// The same after the correction for the number of cases.
    pub p_adjusted: f64,
    /// Benjamini–Hochberg q-value of the two-sided p-value (moved either way).
    pub q_value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<CaseTest>,
    /// The smallest drop these run counts detect with 80% power.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detectable_drop: Option<f64>,
    pub documents: Vec<DocumentChange>,
    pub rules: Vec<RuleChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer: Option<TextChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<TextChange>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a_run: Option<RunRecord>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b_run: Option<RunRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub a: PathBuf,
    pub b: PathBuf,
    pub a_suite: String,
    pub b_suite: String,
    pub alpha: f64,
    pub min_effect: f64,
    pub regressions: usize,
    pub improvements: usize,
    /// The gate over the cases both sides have.
    pub gate: Gate,
    pub cases: Vec<CaseDiff>,
    /// Retrieval measures compared over the cases both sides scored, paired by case.
    pub retrieval: Vec<RetrievalChange>,
}

/// The paired retrieval comparisons: each case's mean over its runs on both sides. The
/// `gate` measure is judged at `alpha` by the paired randomization test.
pub fn retrieval_changes(
    a: &[CaseStats],
    b: &[CaseStats],
    gate: RetrievalGate,
    alpha: f64,
) -> Vec<RetrievalChange> {
    use crate::model::summary::SourceSummary;
    let pairs: Vec<(&str, &SourceSummary, &SourceSummary)> = a
        .iter()
        .filter_map(|x| {
            let y = b.iter().find(|y| y.id == x.id)?;
            Some((x.id.as_str(), x.sources.as_ref()?, y.sources.as_ref()?))
        })
        .collect();
    if pairs.is_empty() {
        return Vec::new();
    }
    type Measure = (&'static str, fn(&SourceSummary) -> f64);
    let measures: [Measure; 5] = [
        ("ndcg", |s| s.ndcg),
        ("average_precision", |s| s.average_precision),
        ("recall", |s| s.recall),
        ("precision", |s| s.precision),
        ("mrr", |s| s.mrr),
    ];
    measures
        .iter()
        .map(|(measure, value)| {
            let xs: Vec<f64> = pairs.iter().map(|(_, x, _)| value(x)).collect();
            let ys: Vec<f64> = pairs.iter().map(|(_, _, y)| value(y)).collect();
            let mut moved: Vec<(String, f64)> = pairs
                .iter()
                .map(|(id, x, y)| ((*id).to_owned(), value(y) - value(x)))
                .filter(|(_, d)| d.abs() > 1e-12)
                .collect();
            moved.sort_by(|p, q| q.1.abs().total_cmp(&p.1.abs()).then_with(|| p.0.cmp(&q.0)));
            moved.truncate(3);
            let test = crate::stats::paired_test(&xs, &ys);
            let verdict = if test.p_randomization >= alpha || test.mean_difference == 0.0 {
                Change::Unchanged
            } else if test.mean_difference < 0.0 {
                Change::Regression
            } else {
                Change::Improvement
            };
            let change = (gate.measure() == Some(*measure)).then_some(verdict);
            RetrievalChange {
                measure: (*measure).to_owned(),
                test,
                moved_most: moved,
                change,
            }
        })
        .collect()
}

/// What a side's runs say about one case.
#[derive(Default)]
struct CaseRuns {
    document_runs: BTreeMap<String, u32>,
    answers: HashMap<String, u32>,
    prompts: HashMap<String, u32>,
}

/// What a run is compared by: itself, or a conversation's last asked turn, so both sides
/// set the same turn against each other (the turn that decided a run can differ between
/// them). Each turn's own numbers are in turns.parquet.
fn compared(record: RunRecord) -> RunRecord {
    match record.asked_turns().last() {
        Some(last) if record.status != RunStatus::Error => record.turn_as_run(last, None),
        _ => record,
    }
}

fn read_runs(dir: &Path) -> Result<HashMap<String, CaseRuns>, SummaryError> {
    let fail = |source| SummaryError::Read {
        path: dir.join(crate::store::RUNS_FILE),
        source,
    };
    let mut cases: HashMap<String, CaseRuns> = HashMap::new();
    for record in RunReader::open(dir).map_err(fail)? {
        let record = compared(record.map_err(fail)?);
        if record.status == RunStatus::Error {
            continue;
        }
        let case = cases.entry(record.case).or_default();
        for doc in record.retrieved {
            *case.document_runs.entry(doc.id).or_default() += 1;
        }
        *case.answers.entry(record.answer).or_default() += 1;
        *case.prompts.entry(record.prompt).or_default() += 1;
    }
    Ok(cases)
}

/// The most frequent text and its count; ties go to the lexically first, for stable output.
fn most_common(counts: &HashMap<String, u32>) -> Option<(String, u32)> {
    counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(text, count)| (text.clone(), *count))
}

fn text_change(a: &HashMap<String, u32>, b: &HashMap<String, u32>) -> Option<TextChange> {
    let (a_text, a_runs) = most_common(a)?;
    let (b_text, b_runs) = most_common(b)?;
    let words: Vec<(ChangeTag, String)> = TextDiff::from_words(&a_text, &b_text)
        .iter_all_changes()
        .map(|change| (change.tag(), change.value().to_owned()))
        .collect();
    let edits = readable_edits(words);
    Some(TextChange {
        changed: a_text != b_text,
        a: a_text,
        a_runs,
        b: b_text,
        b_runs,
        edits,
    })
}

/// Groups word edits into readable blocks: white space between two changes joins the
/// change, and each block shows everything removed, then everything added.
fn readable_edits(words: Vec<(ChangeTag, String)>) -> Vec<Edit> {
    let mut edits = Vec::new();
    let (mut removed, mut added) = (String::new(), String::new());
    let flush = |edits: &mut Vec<Edit>, removed: &mut String, added: &mut String| {
        if !removed.is_empty() {
            edits.push(Edit {
                tag: "delete",
                text: std::mem::take(removed),
            });
        }
        if !added.is_empty() {
            edits.push(Edit {
                tag: "insert",
                text: std::mem::take(added),
            });
        }
    };
    for (i, (tag, text)) in words.iter().enumerate() {
        let between_changes = *tag == ChangeTag::Equal
            && text.trim().is_empty()
            && i > 0
            && words[i - 1].0 != ChangeTag::Equal
            && words
                .get(i + 1)
                .is_some_and(|next| next.0 != ChangeTag::Equal);
        match tag {
            ChangeTag::Delete => removed.push_str(text),
            ChangeTag::Insert => added.push_str(text),
            ChangeTag::Equal if between_changes => {
                removed.push_str(text);
                added.push_str(text);
            }
            ChangeTag::Equal => {
                flush(&mut edits, &mut removed, &mut added);
                match edits.last_mut() {
                    Some(last) if last.tag == "equal" => last.text.push_str(text),
                    _ => edits.push(Edit {
                        tag: "equal",
                        text: text.clone(),
                    }),
                }
            }
        }
    }
    flush(&mut edits, &mut removed, &mut added);
    edits
}

/// For each (case, answer) wanted, the lowest-numbered run of the case with that answer:
/// one pass over the folder's runs, whatever the number of cases.
fn representatives(dir: &Path, wanted: &HashMap<&str, &str>) -> HashMap<String, RunRecord> {
    let mut found: HashMap<String, RunRecord> = HashMap::new();
    let Ok(reader) = RunReader::open(dir) else {
        return found;
    };
    for record in reader.filter_map(Result::ok).map(compared) {
        if record.status == RunStatus::Error
            || wanted.get(record.case.as_str()) != Some(&record.answer.as_str())
        {
            continue;
        }
        match found.get(&record.case) {
            Some(kept) if kept.run <= record.run => {}
            _ => {
                found.insert(record.case.clone(), record);
            }
        }
    }
    found
}

fn side(case: &CaseStats) -> Side {
    Side {
        passed: case.passed,
        evaluated: case.evaluated,
        pass_rate: case.pass_rate,
        outcome: format!("{:?}", case.outcome).to_lowercase(),
        p50_ms: case.latency.p50_ms,
        p95_ms: case.latency.p95_ms,
        errors: case.errors,
    }
}

/// How `diff` judges: the family-wise level, how cases share it, the smallest change that
/// counts, and the gated retrieval measure.
#[derive(Debug, Clone, Copy)]
pub struct DiffSettings {
    pub alpha: f64,
    pub correction: Correction,
    pub min_effect: f64,
    pub retrieval_gate: RetrievalGate,
}

pub fn diff(
    a_dir: &Path,
    b_dir: &Path,
    settings: DiffSettings,
) -> Result<DiffReport, SummaryError> {
    let DiffSettings {
        alpha,
        correction,
        min_effect,
        retrieval_gate,
    } = settings;
    let a = read_summary(a_dir)?;
    let b = read_summary(b_dir)?;
    let a_runs = read_runs(a_dir)?;
    let b_runs = read_runs(b_dir)?;
    let empty = CaseRuns::default();

    let mut ids: Vec<&str> = a.stats.cases.iter().map(|c| c.id.as_str()).collect();
    let mut seen: HashSet<&str> = ids.iter().copied().collect();
    for case in &b.stats.cases {
        if seen.insert(case.id.as_str()) {
            ids.push(&case.id);
        }
    }
    let a_by_id: HashMap<&str, &CaseStats> =
        a.stats.cases.iter().map(|c| (c.id.as_str(), c)).collect();
    let b_by_id: HashMap<&str, &CaseStats> =
        b.stats.cases.iter().map(|c| (c.id.as_str(), c)).collect();
    let pairs: Vec<CasePair> = ids
        .iter()
        .filter_map(|id| {
            Some(CasePair {
                before: a_by_id.get(id)?,
                after: b_by_id.get(id)?,
                min_effect,
                significance: None,
            })
        })
        .collect();
    let mut retrieval = retrieval_changes(&a.stats.cases, &b.stats.cases, retrieval_gate, alpha);
    let (verdicts, drops, gate) = judge_cases(&pairs, alpha, correction, &mut retrieval);
    let judged: HashMap<&str, (crate::gate::CaseVerdict, Option<f64>)> = pairs
        .iter()
        .map(|p| p.after.id.as_str())
        .zip(verdicts.into_iter().zip(drops))
        .collect();
    let mut cases = Vec::new();
    for id in ids {
        let a_case = a_by_id.get(id).copied();
        let b_case = b_by_id.get(id).copied();
        let a_case_runs = a_runs.get(id).unwrap_or(&empty);
        let b_case_runs = b_runs.get(id).unwrap_or(&empty);
        let (change, p_value, p_adjusted, q_value, test, detectable_drop) = match judged.get(id) {
            Some((v, drop)) => (
                v.change,
                v.p_value,
                v.p_adjusted,
                v.q_value,
                Some(v.test),
                *drop,
            ),
            None if a_case.is_some() => (Change::OnlyInA, 1.0, 1.0, 1.0, None, None),
            None => (Change::OnlyInB, 1.0, 1.0, 1.0, None, None),
        };
        let question = a_case
            .or(b_case)
            .map(|c| c.question.clone())
            .unwrap_or_default();

        let doc_ids: BTreeSet<&String> = a_case_runs
            .document_runs
            .keys()
            .chain(b_case_runs.document_runs.keys())
            .collect();
        let documents = doc_ids
            .into_iter()
            .map(|doc| {
                let a_n = a_case_runs.document_runs.get(doc).copied().unwrap_or(0);
                let b_n = b_case_runs.document_runs.get(doc).copied().unwrap_or(0);
                let a_rate = a_case.map_or(0.0, |c| ratio(a_n, c.evaluated));
                let b_rate = b_case.map_or(0.0, |c| ratio(b_n, c.evaluated));
                DocumentChange {
                    id: doc.clone(),
                    a_runs: a_n,
                    b_runs: b_n,
                    kind: match (a_n, b_n) {
                        (0, _) => "entered",
                        (_, 0) => "left",
                        _ if (a_rate - b_rate).abs() < 1e-12 => "same",
                        _ if b_rate > a_rate => "more",
                        _ => "fewer",
                    },
                }
            })
            .collect();

        let mut rule_ids: Vec<&str> = Vec::new();
        for case in a_case.iter().chain(b_case.iter()) {
            for rule in &case.rules {
                if !rule_ids.contains(&rule.id.as_str()) {
                    rule_ids.push(&rule.id);
                }
            }
        }
        let rate_of = |case: Option<&CaseStats>, rule: &str| {
            case.and_then(|c| c.rules.iter().find(|r| r.id == rule))
                .map(|r| r.rate)
        };
        let rules = rule_ids
            .into_iter()
            .map(|rule| RuleChange {
                id: rule.to_owned(),
                a_rate: rate_of(a_case, rule),
                b_rate: rate_of(b_case, rule),
            })
            .collect();

        let answer = text_change(&a_case_runs.answers, &b_case_runs.answers);
        let prompt = text_change(&a_case_runs.prompts, &b_case_runs.prompts);
        cases.push(CaseDiff {
            id: id.to_owned(),
            question,
            change,
            a: a_case.map(side),
            b: b_case.map(side),
            p_value,
            p_adjusted,
            q_value,
            test,
            detectable_drop,
            documents,
            rules,
            answer,
            prompt,
            a_run: None,
            b_run: None,
        });
    }
    // The representative runs, one pass over each side.
    for (dir, side_a) in [(a_dir, true), (b_dir, false)] {
        let wanted: HashMap<&str, &str> = cases
            .iter()
            .filter_map(|c| {
                let text = c.answer.as_ref()?;
                Some((
                    c.id.as_str(),
                    if side_a {
                        text.a.as_str()
                    } else {
                        text.b.as_str()
                    },
                ))
            })
            .collect();
        let mut found = representatives(dir, &wanted);
        drop(wanted);
        for case in &mut cases {
            let run = found.remove(&case.id);
            if side_a {
                case.a_run = run;
            } else {
                case.b_run = run;
            }
        }
    }
    Ok(DiffReport {
        a: a_dir.to_owned(),
        b: b_dir.to_owned(),
        a_suite: a.suite,
        b_suite: b.suite,
        alpha,
        min_effect,
        regressions: cases
            .iter()
            .filter(|c| c.change == Change::Regression)
            .count(),
        improvements: cases
            .iter()
            .filter(|c| c.change == Change::Improvement)
            .count(),
        gate,
        cases,
        retrieval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(a: &str, b: &str) -> String {
        let words = TextDiff::from_words(a, b)
            .iter_all_changes()
            .map(|c| (c.tag(), c.value().to_owned()))
            .collect();
        readable_edits(words)
            .iter()
            .map(|e| match e.tag {
                "delete" => format!("[-{}-]", e.text),
                "insert" => format!("{{+{}+}}", e.text),
                _ => e.text.clone(),
            })
            .collect()
    }

    #[test]
    fn word_diffs_group_into_blocks() {
        assert_eq!(
            render("use t4g.micro instances today", "use Delta files today"),
            "use [-t4g.micro instances-]{+Delta files+} today"
        );
        assert_eq!(render("same text", "same text"), "same text");
        assert_eq!(render("a b", "a b c"), "a b{+ c+}");
    }
}
