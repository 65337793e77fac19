//! Per-run verdicts: suite rules, expected sources and answer checks.
//!
//! A run passes when every expectation of its case holds and no `error`-severity rule is
//! violated. Rule tolerances (`max_rate`) are judged over all runs of a case in `stats`.

use crate::judge::{Judgement, Judgements};
use crate::model::record::{
    Failure, RetrievedDoc, RuleResult, Severity, SourceMetrics, Sources, Verdict,
};
use crate::suite::schema::{AnswerCheck, Expect, RetrievedRule, RuleSpec};

/// How many turns a conversation run's rule detail describes before counting the rest.
const DETAILED_TURNS: usize = 3;

/// The key a model judgement of an expectation is filed under (rules use their id).
pub const EXPECT_ANSWER: &str = "expect.answer";

pub fn judge(
    rules: &[RuleSpec],
    expect: Option<&Expect>,
    retrieved: &[RetrievedDoc],
    answer: &str,
    judgements: &Judgements,
) -> Verdict {
    let rule_results: Vec<RuleResult> = rules
        .iter()
        .map(|rule| judge_rule(rule, retrieved, answer, judgements.get(&rule.id)))
        .collect();

    let mut failed_expectations = Vec::new();
    let mut sources = None;
    if let Some(expect) = expect {
        if !expect.sources.is_empty() {
            // Without a cutoff (an http or command chain, no `expect.k`): what came back.
            let k = expect.k.unwrap_or(retrieved.len());
            let metrics = source_metrics(&expect.sources, expect.relevance_level, k, retrieved);
            if metrics.recall + 1e-9 < expect.min_recall.0 {
                failed_expectations.push(Failure {
                    check: "expect.sources".into(),
                    detail: format!(
                        "recall {:.2} below {:.2}: missing {}",
                        metrics.recall,
                        expect.min_recall.0,
                        metrics.missing.join(", ")
                    ),
                });
            }
            sources = Some(metrics);
        }
        if let Some(check) = &expect.answer {
            let judged = judged_failure(check, judgements.get(EXPECT_ANSWER));
            for detail in check_answer(check, answer, retrieved)
                .into_iter()
                .chain(judged)
            {
                failed_expectations.push(Failure {
                    check: EXPECT_ANSWER.into(),
                    detail,
                });
            }
        }
    }

    let passed = failed_expectations.is_empty()
        && rule_results
            .iter()
            .all(|r| r.passed || r.severity == Severity::Warn);
    Verdict {
        passed,
        rules: rule_results,
        sources,
        failed_expectations,
    }
}

/// A model judge's "fail" as a failure line. A check judged by no one (only where no
/// judge ran, which loading rules out for `run`) adds nothing.
fn judged_failure(check: &AnswerCheck, judgement: Option<&Judgement>) -> Option<String> {
    let judge = check.judge.as_ref()?;
    let judgement = judgement.filter(|j| !j.passed)?;
    let repeats = if judgement.votes.len() > 1 {
        format!(
            ", {} of {} repeats",
            judgement.votes.iter().filter(|v| !**v).count(),
            judgement.votes.len()
        )
    } else {
        String::new()
    };
    Some(format!(
        "judge ({}{repeats}): fail: {}",
        crate::judge::prompts::describe(judge),
        judgement.reason
    ))
}

fn judge_rule(
    rule: &RuleSpec,
    retrieved: &[RetrievedDoc],
    answer: &str,
    judgement: Option<&Judgement>,
) -> RuleResult {
    let mut result = RuleResult {
        id: rule.id.clone(),
        severity: rule.severity,
        passed: true,
        offending_documents: Vec::new(),
        detail: None,
        judge_votes: judgement.map(|j| j.votes.clone()),
    };
    if let Some(retrieved_rule) = &rule.retrieved {
        let (offending, detail): (Vec<&RetrievedDoc>, Option<String>) = match retrieved_rule {
            RetrievedRule::Every(_) | RetrievedRule::None(_)
                if retrieved.is_empty() && !rule.allow_empty =>
            {
                let quantifier = match retrieved_rule {
                    RetrievedRule::Every(_) => "every",
                    _ => "none",
                };
                (
                    Vec::new(),
                    Some(format!(
                        "no documents were retrieved: `{quantifier}` cannot be judged over none (`allow_empty: true` on the rule if the chain may retrieve nothing)"
                    )),
                )
            }
            RetrievedRule::Every(w) => {
                let bad: Vec<_> = retrieved
                    .iter()
                    .filter(|d| retrieved_rule.objects_to(&d.metadata))
                    .collect();
                let detail =
                    (!bad.is_empty()).then(|| format!("retrieved documents not matching {w}"));
                (bad, detail)
            }
            RetrievedRule::None(w) => {
                let bad: Vec<_> = retrieved
                    .iter()
                    .filter(|d| retrieved_rule.objects_to(&d.metadata))
                    .collect();
                let detail = (!bad.is_empty()).then(|| format!("retrieved documents matching {w}"));
                (bad, detail)
            }
            RetrievedRule::Any(w) => {
                let found = retrieved.iter().any(|d| w.matches(&d.metadata));
                let detail = (!found).then(|| format!("no retrieved document matches {w}"));
                (Vec::new(), detail)
            }
        };
        result.passed = detail.is_none();
        result.offending_documents = offending.iter().map(|d| d.id.clone()).collect();
        result.detail = detail;
    }
    if let Some(check) = &rule.answer {
        let mut failures = check_answer(check, answer, retrieved);
        failures.extend(judged_failure(check, judgement));
        if !failures.is_empty() {
            result.passed = false;
            let joined = failures.join("; ");
            result.detail = Some(match result.detail.take() {
                Some(previous) => format!("{previous}; {joined}"),
                None => joined,
            });
        }
    }
    result
}

/// Every way `answer` fails `check`, one line each. `retrieved` is what `grounded` checks
/// the answer against.
pub fn check_answer(check: &AnswerCheck, answer: &str, retrieved: &[RetrievedDoc]) -> Vec<String> {
    let fold = |s: &str| {
        if check.ignore_case {
            s.to_lowercase()
        } else {
            s.to_owned()
        }
    };
    let haystack = fold(answer);
    let has = |needle: &str| haystack.contains(&fold(needle));
    let mut failures = Vec::new();
    if let Some(all) = &check.contains {
        for needle in all.0.iter().filter(|n| !has(n)) {
            failures.push(format!("answer does not contain {needle:?}"));
        }
    }
    if let Some(any) = &check.contains_any
        && !any.0.iter().any(|n| has(n))
    {
        failures.push(format!("answer contains none of {:?}", any.0));
    }
    if let Some(none) = &check.not_contains {
        for needle in none.0.iter().filter(|n| has(n)) {
            failures.push(format!("answer contains {needle:?}"));
        }
    }
    if let Some(pattern) = &check.matches
        && !pattern.0.is_match(answer)
    {
        failures.push(format!("answer does not match /{}/", pattern.0.as_str()));
    }
    if let Some(pattern) = &check.not_matches
        && let Some(found) = pattern.0.find(answer)
    {
        failures.push(format!(
            "answer matches /{}/ at {:?}",
            pattern.0.as_str(),
            found.as_str()
        ));
    }
    if let Some(grounded) = &check.grounded {
        for sentence in support(answer, retrieved) {
            if sentence.support + 1e-9 < grounded.min_support {
                failures.push(format!(
                    "unsupported sentence (support {:.2} < {:.2}, best document {}): {:?}",
                    sentence.support,
                    grounded.min_support,
                    sentence.best_document.as_deref().unwrap_or("none"),
                    sentence.text
                ));
            }
        }
    }
    failures
}

/// How well the retrieved documents support one sentence of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceSupport {
    pub text: String,
    /// Share of the sentence's distinct content words found in `best_document`.
    pub support: f64,
    pub best_document: Option<String>,
}

/// Each sentence of `answer` that has content words, with its best-supporting document.
/// Lexical: a paraphrase with other words scores low, and a negation or a changed number
/// with the same words scores high; the README says so.
pub fn support(answer: &str, retrieved: &[RetrievedDoc]) -> Vec<SentenceSupport> {
    use std::collections::HashSet;
    let documents: Vec<(&str, HashSet<String>)> = retrieved
        .iter()
        .map(|d| {
            (
                d.id.as_str(),
                crate::chain::text::tokens(&d.text).into_iter().collect(),
            )
        })
        .collect();
    crate::chain::text::sentences(answer)
        .into_iter()
        .filter_map(|sentence| {
            let words: HashSet<String> = crate::chain::text::tokens(sentence).into_iter().collect();
            if words.is_empty() {
                return None;
            }
            let best = documents
                .iter()
                .map(|(id, vocabulary)| {
                    let found = words.iter().filter(|w| vocabulary.contains(*w)).count();
                    (found as f64 / words.len() as f64, *id)
                })
                // The first of equally good documents, in retrieval order.
                .fold(None::<(f64, &str)>, |best, (score, id)| match best {
                    Some((b, _)) if b >= score => best,
                    _ => Some((score, id)),
                });
            Some(SentenceSupport {
                text: sentence.to_owned(),
                support: best.map_or(0.0, |(score, _)| score),
                best_document: best.map(|(_, id)| id.to_owned()),
            })
        })
        .collect()
}

/// The expected-source metrics of one run, as trec_eval computes them at cutoff `k` over
/// the ranking as retrieved: P@k (relevant in the top k, over k — also when fewer than k
/// came back), R@k (over every document the case judges relevant), hit@k, reciprocal rank,
/// nDCG@k (gain = grade, log2 discount, the ideal ranking built from every judged grade)
/// and AP@k (trec_eval's map_cut). A document is relevant when its grade reaches `level`.
pub fn source_metrics(
    sources: &Sources,
    level: u32,
    k: usize,
    retrieved: &[RetrievedDoc],
) -> SourceMetrics {
    let k = k.max(1);
    let ranked = &retrieved[..retrieved.len().min(k)];
    let level = level.max(1);
    let grades: Vec<u32> = ranked.iter().map(|d| sources.grade(&d.id)).collect();
    let relevant: Vec<bool> = grades.iter().map(|g| *g >= level).collect();
    let num_relevant = sources.relevant(level).count();
    let found = relevant.iter().filter(|r| **r).count();
    let precision = found as f64 / k as f64;
    let recall = if num_relevant == 0 {
        1.0
    } else {
        found as f64 / num_relevant as f64
    };
    let reciprocal_rank = relevant
        .iter()
        .position(|r| *r)
        .map_or(0.0, |rank| 1.0 / (rank as f64 + 1.0));
    let discount = |rank: usize| 1.0 / (rank as f64 + 2.0).log2();
    let dcg: f64 = grades
        .iter()
        .enumerate()
        .map(|(rank, grade)| f64::from(*grade) * discount(rank))
        .sum();
    let mut ideal_grades: Vec<u32> = sources
        .0
        .iter()
        .map(|(_, g)| *g)
        .filter(|g| *g > 0)
        .collect();
    ideal_grades.sort_unstable_by(|a, b| b.cmp(a));
    let ideal: f64 = ideal_grades
        .iter()
        .take(k)
        .enumerate()
        .map(|(rank, grade)| f64::from(*grade) * discount(rank))
        .sum();
    let mut hits = 0usize;
    let mut precision_sum = 0.0;
    for (rank, is_relevant) in relevant.iter().enumerate() {
        if *is_relevant {
            hits += 1;
            precision_sum += hits as f64 / (rank as f64 + 1.0);
        }
    }
    let average_precision = if num_relevant == 0 {
        0.0
    } else {
        precision_sum / num_relevant as f64
    };
    let missing = sources
        .relevant(level)
        .filter(|id| !ranked.iter().any(|d| d.id == id.0))
        .map(|id| id.0.clone())
        .collect();
    SourceMetrics {
        precision,
        recall,
        hit: found > 0,
        reciprocal_rank,
        ndcg: if ideal > 0.0 { dcg / ideal } else { 0.0 },
        average_precision,
        k,
        missing,
    }
}

/// A conversation run's verdict from its turns' (scripted turns have none): it passes when
/// every asked turn does. A rule is broken in the run when it is broken on any turn that
/// applies it (its detail says on which, its offending documents are every turn's); an
/// expectation that failed keeps its check and says its turn; retrieval metrics are the
/// mean over the turns that expect sources (hit: every such turn hit).
pub fn join_turns(turns: &[crate::model::record::TurnRecord]) -> Verdict {
    let judged: Vec<(u32, &Verdict)> = turns
        .iter()
        .filter_map(|t| Some((t.turn, t.verdict.as_ref()?)))
        .collect();
    let mut rules: Vec<RuleResult> = Vec::new();
    let mut broken_turns: std::collections::HashMap<String, usize> = Default::default();
    for (turn, verdict) in &judged {
        for result in &verdict.rules {
            let joined = match rules.iter_mut().find(|r| r.id == result.id) {
                Some(joined) => joined,
                None => {
                    rules.push(RuleResult {
                        id: result.id.clone(),
                        severity: result.severity,
                        passed: true,
                        offending_documents: Vec::new(),
                        detail: None,
                        judge_votes: None,
                    });
                    let last = rules.len() - 1;
                    &mut rules[last]
                }
            };
            for doc in &result.offending_documents {
                if !joined.offending_documents.contains(doc) {
                    joined.offending_documents.push(doc.clone());
                }
            }
            // The votes of the first turn that broke the rule, else of the first judged.
            if joined.judge_votes.is_none() || (!result.passed && joined.passed) {
                joined.judge_votes.clone_from(&result.judge_votes);
            }
            if !result.passed {
                joined.passed = false;
                // The first few turns' details, then a count: a long conversation that
                // breaks a rule on every turn stays one readable line.
                let said = match &result.detail {
                    Some(detail) => format!("turn {turn}: {detail}"),
                    None => format!("turn {turn}"),
                };
                let broken_before = *broken_turns.entry(result.id.clone()).or_insert(0);
                broken_turns.insert(result.id.clone(), broken_before + 1);
                joined.detail = match (joined.detail.take(), broken_before) {
                    (None, _) => Some(said),
                    (Some(before), n) if n < DETAILED_TURNS => Some(format!("{before}; {said}")),
                    (Some(before), _) => Some(before),
                };
            }
        }
    }
    for rule in &mut rules {
        let broken = broken_turns.get(&rule.id).copied().unwrap_or(0);
        if broken > DETAILED_TURNS
            && let Some(detail) = rule.detail.as_mut()
        {
            detail.push_str(&format!("; and {} more turns", broken - DETAILED_TURNS));
        }
    }
    let failed_expectations = judged
        .iter()
        .flat_map(|(turn, verdict)| {
            verdict.failed_expectations.iter().map(move |f| Failure {
                check: f.check.clone(),
                detail: format!("turn {turn}: {}", f.detail),
            })
        })
        .collect();
    let metrics: Vec<&SourceMetrics> = judged
        .iter()
        .filter_map(|(_, v)| v.sources.as_ref())
        .collect();
    let sources = (!metrics.is_empty()).then(|| {
        let mean = |f: fn(&SourceMetrics) -> f64| {
            metrics.iter().map(|m| f(m)).sum::<f64>() / metrics.len() as f64
        };
        SourceMetrics {
            precision: mean(|m| m.precision),
            recall: mean(|m| m.recall),
            hit: metrics.iter().all(|m| m.hit),
            reciprocal_rank: mean(|m| m.reciprocal_rank),
            ndcg: mean(|m| m.ndcg),
            average_precision: mean(|m| m.average_precision),
            k: metrics[0].k,
            missing: judged
                .iter()
                .filter_map(|(turn, v)| Some((turn, v.sources.as_ref()?)))
                .flat_map(|(turn, m)| {
                    m.missing
                        .iter()
                        .map(move |id| format!("{id} (turn {turn})"))
                })
                .collect(),
        }
    });
    Verdict {
        passed: judged.iter().all(|(_, v)| v.passed),
        rules,
        sources,
        failed_expectations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str, source: &str) -> RetrievedDoc {
        RetrievedDoc {
            id: id.into(),
            text: String::new(),
            metadata: serde_json::json!({ "docs": source })
                .as_object()
                .cloned()
                .unwrap_or_default(),
            score: Some(1.0),
        }
    }

    fn rule(yaml: &str) -> RuleSpec {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    fn text_doc(id: &str, text: &str) -> RetrievedDoc {
        RetrievedDoc {
            text: text.into(),
            ..doc(id, "databricks")
        }
    }

    #[test]
    fn support_is_the_share_of_content_words_in_the_best_document() {
        let retrieved = [
            text_doc(
                "1",
                "Databases are built on Delta Lake and stored as Delta files.",
            ),
            text_doc(
                "3",
                "Serverless SQL warehouses spin clusters up for short bursts.",
            ),
        ];
        let found = support(
            "Databases are stored as Delta files. It is so! Warehouses are free on Sundays.",
            &retrieved,
        );
        // "It is so!" has no content words and is not judged.
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0].support, 1.0,
            "stemmed: databases/stored meet the document"
        );
        assert_eq!(found[0].best_document.as_deref(), Some("1"));
        // warehous ✓, free ✗, sunday ✗: 1 of 3 in document 3.
        assert!(
            (found[1].support - 1.0 / 3.0).abs() < 1e-9,
            "{:?}",
            found[1]
        );
        assert_eq!(found[1].best_document.as_deref(), Some("3"));
        // What a lexical check barely sees: a negation in the document's own words is one
        // unsupported word ("not") of five, 0.80, which passes the default threshold.
        let negated = support("Databases are not built on Delta Lake.", &retrieved);
        assert!((negated[0].support - 0.8).abs() < 1e-9, "{:?}", negated[0]);
        // Nothing retrieved: nothing supports anything.
        let alone = support("Delta files.", &[]);
        assert_eq!(
            (alone[0].support, alone[0].best_document.clone()),
            (0.0, None)
        );
        let check: AnswerCheck =
            serde_yaml::from_str("{grounded: {min_support: 0.5}}").expect("check");
        let failures = check_answer(&check, "Warehouses are free on Sundays.", &retrieved);
        assert_eq!(
            failures,
            [
                "unsupported sentence (support 0.33 < 0.50, best document 3): \"Warehouses are free on Sundays.\""
            ]
        );
    }

    fn ranked(ids: &[&str]) -> Vec<RetrievedDoc> {
        ids.iter().map(|id| doc(id, "databricks")).collect()
    }

    fn sources(yaml: &str) -> Sources {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    #[test]
    fn source_metrics_are_trec_evals_at_k() {
        // Two documents came back of k = 10, one relevant: P_10 = 0.1, not 0.5.
        let m = source_metrics(&sources("[a, z]"), 1, 10, &ranked(&["a", "b"]));
        assert!((m.precision - 0.1).abs() < 1e-12);
        assert!((m.recall - 0.5).abs() < 1e-12);
        assert_eq!(m.missing, ["z"]);
        // Graded: gains are the grades; the ideal ranking uses every judged grade (3, 2, 1)
        // even where fewer came back.
        let graded = sources("{a: 3, b: 0, c: 1, d: 2}");
        let m = source_metrics(&graded, 1, 3, &ranked(&["c", "b", "a"]));
        let d = |rank: f64| 1.0 / (rank + 1.0).log2();
        let dcg = 1.0 * d(1.0) + 0.0 * d(2.0) + 3.0 * d(3.0);
        let ideal = 3.0 * d(1.0) + 2.0 * d(2.0) + 1.0 * d(3.0);
        assert!((m.ndcg - dcg / ideal).abs() < 1e-12, "{}", m.ndcg);
        // P@3 = 2/3; R@3 = 2 of 3 relevant (grade ≥ 1); RR = 1; AP@3 = (1/1 + 2/3) / 3.
        assert!((m.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.recall - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.reciprocal_rank, 1.0);
        assert!((m.average_precision - (1.0 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        // At relevance level 2 only a and d count for the binary measures.
        let m = source_metrics(&graded, 2, 3, &ranked(&["c", "b", "a"]));
        assert!((m.precision - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.reciprocal_rank - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.missing, ["d"]);
        // Only the top k count.
        let m = source_metrics(&sources("[c]"), 1, 1, &ranked(&["a", "c"]));
        assert_eq!((m.precision, m.hit), (0.0, false));
    }

    #[test]
    fn sources_refuse_duplicates_negative_grades_and_mixed_forms() {
        for (yaml, says) in [
            ("[a, b, a]", "document `a` is listed twice"),
            ("{a: 1, b: -2}", "document `b` has grade -2"),
            ("[a, {b: 2}]", "a document id"),
        ] {
            let error = serde_yaml::from_str::<Sources>(yaml)
                .expect_err(yaml)
                .to_string();
            assert!(error.contains(says), "{yaml}: {error}");
        }
    }

    #[test]
    fn retrieved_rules_name_offending_documents() {
        let retrieved = [doc("4", "aws"), doc("2", "databricks")];
        let every = judge_rule(
            &rule("{id: r, retrieved: {every: {docs: databricks}}}"),
            &retrieved,
            "",
            None,
        );
        assert!(!every.passed);
        assert_eq!(every.offending_documents, ["4"]);
        let none = judge_rule(
            &rule("{id: r, retrieved: {none: {docs: aws}}}"),
            &retrieved,
            "",
            None,
        );
        assert_eq!(none.offending_documents, ["4"]);
        let any = judge_rule(
            &rule("{id: r, retrieved: {any: {docs: gcp}}}"),
            &retrieved,
            "",
            None,
        );
        assert!(!any.passed && any.offending_documents.is_empty());
        let fine = judge_rule(
            &rule("{id: r, retrieved: {any: {docs: aws}}}"),
            &retrieved,
            "",
            None,
        );
        assert!(fine.passed);
    }

    #[test]
    fn answer_checks() {
        let check: AnswerCheck = serde_yaml::from_str(
            r#"{contains: [Delta], contains_any: [S3, ADLS], not_contains: micro, not_matches: "t[0-9]g\\.(nano|micro)"}"#,
        )
        .expect("valid check");
        assert!(check_answer(&check, "Delta files on S3", &[]).is_empty());
        let failures = check_answer(&check, "Use t4g.micro instances", &[]);
        assert_eq!(failures.len(), 4, "{failures:?}");
        assert!(failures[3].contains("\"t4g.micro\""), "{failures:?}");
        let folded: AnswerCheck =
            serde_yaml::from_str("{contains: delta, ignore_case: true}").expect("valid");
        assert!(check_answer(&folded, "DELTA", &[]).is_empty());
    }

    #[test]
    fn source_metrics_by_id() {
        let retrieved = [doc("4", "aws"), doc("2", "x"), doc("9", "x")];
        let m = source_metrics(&sources("['2', '3']"), 1, 3, &retrieved);
        assert!((m.precision - 1.0 / 3.0).abs() < 1e-9);
        assert!((m.recall - 0.5).abs() < 1e-9);
        assert!(m.hit);
        assert!((m.reciprocal_rank - 0.5).abs() < 1e-9);
        // DCG = 1/log2(3); IDCG = 1 + 1/log2(3).
        let expected_ndcg = (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((m.ndcg - expected_ndcg).abs() < 1e-9);
        assert_eq!(m.missing, ["3"]);
        let perfect = source_metrics(
            &sources("['1', '2']"),
            1,
            2,
            &[doc("1", "x"), doc("2", "x")],
        );
        assert!((perfect.ndcg - 1.0).abs() < 1e-9 && perfect.recall == 1.0);
        let nothing = source_metrics(&sources("['1']"), 1, 2, &[]);
        assert_eq!(
            (nothing.precision, nothing.recall, nothing.hit),
            (0.0, 0.0, false)
        );
    }

    #[test]
    fn warn_rules_do_not_fail_the_run() {
        let rules = [
            rule("{id: w, severity: warn, answer: {not_contains: x}}"),
            rule("{id: e, answer: {not_contains: y}}"),
        ];
        assert!(judge(&rules, None, &[], "x", &Judgements::new()).passed);
        assert!(!judge(&rules, None, &[], "y", &Judgements::new()).passed);
    }
}
