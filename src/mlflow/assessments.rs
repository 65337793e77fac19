//! Each run's verdict as MLflow assessments on its trace, the shape `mlflow.genai.evaluate`
//! leaves: one Feedback per rule and per expectation (boolean, the reason as rationale,
//! source CODE `ragprobe`), one for the run as a whole (`passed`), and the case's
//! expectations as Expectations under MLflow's own names (`expected_retrieved_context`,
//! `expected_facts`) so MLflow's scorers and UI read them as theirs.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::model::record::{RunRecord, RunStatus};
use crate::suite::Suite;

/// Source id of every assessment ragprobe writes; a republish skips what it finds under it.
pub const SOURCE_ID: &str = "ragprobe";

/// What a case expects, as the suite says (the records say only what failed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaseChecks {
    pub sources: Vec<String>,
    /// The case has `expect.answer`.
    pub answer: bool,
    /// `expect.answer.contains`: facts a good answer states.
    pub facts: Vec<String>,
}

/// Every case's expectations, by id.
pub fn case_checks(suite: &Suite) -> HashMap<String, CaseChecks> {
    suite
        .spec
        .cases
        .iter()
        .map(|case| {
            let checks = case
                .expect
                .as_ref()
                .map_or_else(CaseChecks::default, |e| CaseChecks {
                    sources: e
                        .sources
                        .relevant(e.relevance_level)
                        .map(|s| s.0.clone())
                        .collect(),
                    answer: e.answer.is_some(),
                    facts: e
                        .answer
                        .as_ref()
                        .and_then(|a| a.contains.as_ref())
                        .map(|c| c.0.clone())
                        .unwrap_or_default(),
                });
            (case.id.clone(), checks)
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub enum Judgement {
    Feedback(bool),
    /// The run could not be judged: MLflow shows the feedback as an error.
    FeedbackError(String),
    Expectation(Value),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub name: String,
    pub value: Judgement,
    pub rationale: Option<String>,
}

impl Assessment {
    pub fn is_expectation(&self) -> bool {
        matches!(self.value, Judgement::Expectation(_))
    }

    /// The body of `POST /api/3.0/mlflow/traces/{trace_id}/assessments`.
    pub fn body(&self, trace_id: &str, record: &RunRecord) -> Value {
        let mut assessment = json!({
            "assessment_name": self.name,
            "trace_id": trace_id,
            "source": {"source_type": "CODE", "source_id": SOURCE_ID},
            "metadata": {
                "ragprobe.case": record.case,
                "ragprobe.run": record.run.to_string(),
                "ragprobe.seed": record.seed.to_string(),
            },
        });
        match &self.value {
            Judgement::Feedback(passed) => assessment["feedback"] = json!({"value": passed}),
            Judgement::FeedbackError(message) => {
                assessment["feedback"] = json!({"error": {
                    "error_code": "RUN_ERROR",
                    "error_message": message,
                }});
            }
            Judgement::Expectation(value) => assessment["expectation"] = json!({"value": value}),
        }
        if let Some(rationale) = &self.rationale {
            assessment["rationale"] = json!(rationale);
        }
        json!({ "assessment": assessment })
    }
}

/// The assessments of one run.
pub fn for_record(record: &RunRecord, checks: Option<&CaseChecks>) -> Vec<Assessment> {
    let mut out = Vec::new();
    let feedback = |name: &str, passed: bool, rationale: String| Assessment {
        name: name.to_owned(),
        value: Judgement::Feedback(passed),
        rationale: Some(rationale),
    };
    match (&record.verdict, record.status) {
        (Some(verdict), RunStatus::Passed | RunStatus::Failed) => {
            let broken: Vec<String> = verdict
                .rules
                .iter()
                .filter(|r| !r.passed)
                .map(|r| r.id.clone())
                .chain(verdict.failed_expectations.iter().map(|f| f.check.clone()))
                .collect();
            out.push(feedback(
                "passed",
                verdict.passed,
                if broken.is_empty() {
                    "every check held".to_owned()
                } else {
                    format!("broken: {}", broken.join(", "))
                },
            ));
            for rule in &verdict.rules {
                let mut rationale = if rule.passed {
                    "held".to_owned()
                } else {
                    rule.detail.clone().unwrap_or_else(|| "violated".to_owned())
                };
                if !rule.offending_documents.is_empty() {
                    rationale.push_str(&format!(
                        "; offending documents: {}",
                        rule.offending_documents.join(", ")
                    ));
                }
                if rule.severity == crate::model::record::Severity::Warn {
                    rationale.push_str(" (severity warn: never fails the run)");
                }
                out.push(feedback(&rule.id, rule.passed, rationale));
            }
            let expectation = |check: &str| {
                let failures: Vec<&str> = verdict
                    .failed_expectations
                    .iter()
                    .filter(|f| f.check == check)
                    .map(|f| f.detail.as_str())
                    .collect();
                (failures.is_empty(), failures.join("; "))
            };
            let sources_checked =
                verdict.sources.is_some() || checks.is_some_and(|c| !c.sources.is_empty());
            if sources_checked {
                let (held, why) = expectation("expect.sources");
                out.push(feedback(
                    "expect.sources",
                    held,
                    if held { "held".to_owned() } else { why },
                ));
            }
            let (answer_held, why) = expectation("expect.answer");
            if checks.is_some_and(|c| c.answer) || !answer_held {
                out.push(feedback(
                    "expect.answer",
                    answer_held,
                    if answer_held { "held".to_owned() } else { why },
                ));
            }
        }
        _ => out.push(Assessment {
            name: "passed".into(),
            value: Judgement::FeedbackError(
                record
                    .error
                    .clone()
                    .unwrap_or_else(|| "the run could not be evaluated".into()),
            ),
            rationale: Some("the chain could not be evaluated: not a wrong answer".into()),
        }),
    }
    if let Some(checks) = checks {
        if !checks.sources.is_empty() {
            out.push(Assessment {
                name: "expected_retrieved_context".into(),
                value: Judgement::Expectation(Value::Array(
                    checks
                        .sources
                        .iter()
                        .map(|id| json!({ "doc_uri": id }))
                        .collect(),
                )),
                rationale: None,
            });
        }
        if !checks.facts.is_empty() {
            out.push(Assessment {
                name: "expected_facts".into(),
                value: Judgement::Expectation(json!(checks.facts)),
                rationale: None,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::record::{Failure, RuleResult, Severity, Verdict};

    fn record(verdict: Option<Verdict>, status: RunStatus) -> RunRecord {
        RunRecord {
            seed: 7,
            question: "q".into(),
            error: (status == RunStatus::Error).then(|| "timed out after 30000 ms".into()),
            verdict,
            duration_ms: 1.0,
            ..RunRecord::blank("aws-instance", 3, status)
        }
    }

    #[test]
    fn a_failing_run_gets_one_feedback_per_check_with_its_reason() {
        let verdict = Verdict {
            passed: false,
            rules: vec![RuleResult {
                id: "databricks-only".into(),
                severity: Severity::Error,
                passed: false,
                offending_documents: vec!["aws-12".into()],
                detail: Some("retrieved documents not matching {\"docs\":\"databricks\"}".into()),
                judge_votes: None,
            }],
            sources: None,
            failed_expectations: vec![Failure {
                check: "expect.answer".into(),
                detail: "contains \"t4g.micro\"".into(),
            }],
        };
        let checks = CaseChecks {
            sources: vec!["db-1".into()],
            answer: true,
            facts: vec!["m5.large".into()],
        };
        let all = for_record(&record(Some(verdict), RunStatus::Failed), Some(&checks));
        let names: Vec<&str> = all.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "passed",
                "databricks-only",
                "expect.sources",
                "expect.answer",
                "expected_retrieved_context",
                "expected_facts"
            ]
        );
        assert_eq!(all[0].value, Judgement::Feedback(false));
        assert_eq!(
            all[0].rationale.as_deref(),
            Some("broken: databricks-only, expect.answer")
        );
        assert!(
            all[1]
                .rationale
                .as_deref()
                .is_some_and(|r| r.contains("aws-12"))
        );
        assert_eq!(all[2].value, Judgement::Feedback(true));
        assert_eq!(all[3].value, Judgement::Feedback(false));
        let body = all[4].body("tr-1", &record(None, RunStatus::Failed));
        assert_eq!(
            body["assessment"]["expectation"]["value"],
            json!([{"doc_uri": "db-1"}])
        );
        assert_eq!(body["assessment"]["source"]["source_type"], "CODE");
        assert_eq!(body["assessment"]["metadata"]["ragprobe.run"], "3");
    }

    #[test]
    fn an_error_run_is_an_error_feedback_not_a_failure() {
        let all = for_record(&record(None, RunStatus::Error), None);
        assert_eq!(all.len(), 1);
        let body = all[0].body("tr-1", &record(None, RunStatus::Error));
        assert_eq!(
            body["assessment"]["feedback"]["error"]["error_message"],
            "timed out after 30000 ms"
        );
        assert!(body["assessment"]["feedback"].get("value").is_none());
    }
}
