//! The suite's model judge, built when the suite loads: every judged check is found and
//! checked (a judge to call, a prompt to render, a reference answer where correctness needs
//! one), prompt files are read and compiled, and problems are located like any other.

use std::sync::Arc;

use crate::config::locate::KeyPath;
use crate::config::problem::Problem;
use crate::judge::Judge;
use crate::suite::schema::{Criterion, JudgeCheck, SuiteSpec};

type At<'a> = dyn Fn(KeyPath, String) -> Problem + 'a;

/// Every judged check of the suite, with where it is and which cases it judges.
fn judged_checks(spec: &SuiteSpec) -> Vec<(KeyPath, &JudgeCheck, Vec<usize>)> {
    let all: Vec<usize> = (0..spec.cases.len()).collect();
    let mut found = Vec::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        if let Some(check) = rule.answer.as_ref().and_then(|a| a.judge.as_ref()) {
            let here = KeyPath::default()
                .key("rules")
                .index(i)
                .key("answer")
                .key("judge");
            found.push((here, check, all.clone()));
        }
    }
    for (i, case) in spec.cases.iter().enumerate() {
        if let Some(check) = case
            .expect
            .as_ref()
            .and_then(|e| e.answer.as_ref())
            .and_then(|a| a.judge.as_ref())
        {
            let here = KeyPath::default()
                .key("cases")
                .index(i)
                .key("expect")
                .key("answer")
                .key("judge");
            found.push((here, check, vec![i]));
        }
    }
    found
}

/// The judge the suite declares, or `None` when it declares none; problems go to
/// `problems`.
pub fn build(
    spec: &SuiteSpec,
    suite_path: &std::path::Path,
    at: &At<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Arc<Judge>> {
    let checks = judged_checks(spec);
    let Some(judge_spec) = &spec.judge else {
        if let Some((here, _, _)) = checks.first() {
            problems.push(
                at(
                    here.clone(),
                    "a judged check needs the suite's `judge:`".into(),
                )
                .hint("judge: {kind: openai, base_url: http://127.0.0.1:8000/v1, model: …, api_key_env: OPENAI_API_KEY}"),
            );
        }
        return None;
    };
    let mut prompt_files = Vec::new();
    for (here, check, cases) in &checks {
        if check.criterion.is_none() && check.rubric.is_none() && check.prompt_file.is_none() {
            problems.push(
                at(here.clone(), "the judge has nothing to judge by".into())
                    .hint("give criterion (groundedness, relevance, correctness, context_sufficiency), rubric or prompt_file"),
            );
        }
        if check.criterion == Some(Criterion::Correctness) && check.prompt_file.is_none() {
            let missing: Vec<&str> = cases
                .iter()
                .map(|i| &spec.cases[*i])
                .filter(|c| {
                    c.expect
                        .as_ref()
                        .and_then(|e| e.reference_answer.as_ref())
                        .is_none()
                })
                .map(|c| c.id.as_str())
                .collect();
            if !missing.is_empty() {
                problems.push(
                    at(
                        here.clone().key("criterion"),
                        format!(
                            "correctness compares with `expect.reference_answer`, which case(s) {} lack",
                            missing.join(", ")
                        ),
                    )
                    .hint("expect: {reference_answer: \"…\"}"),
                );
            }
        }
        if let Some(file) = &check.prompt_file {
            let resolved = crate::config::files::resolve(suite_path, file);
            match crate::config::files::read_text(&resolved, "judge prompt file") {
                Ok(text) => prompt_files.push((format!("file:{}", file.display()), text)),
                Err(err) => problems.push(
                    at(here.clone().key("prompt_file"), err.message)
                        .hint("the prompt file's path is relative to the suite file"),
                ),
            }
        }
    }
    if judge_spec.repeats == 0 {
        problems.push(at(
            KeyPath::default().key("judge").key("repeats"),
            "repeats must be at least 1".into(),
        ));
    }
    let mut judge_spec = judge_spec.clone();
    for (key, value) in [
        ("base_url", &mut judge_spec.base_url),
        ("model", &mut judge_spec.model),
    ] {
        if let Some(text) = value.as_mut() {
            match crate::config::files::expand_env(text) {
                Ok(expanded) => *text = expanded,
                Err(err) => problems.push(
                    at(KeyPath::default().key("judge").key(key), err.to_string())
                        .hint("export it, or write `${NAME:-default}`"),
                ),
            }
        }
    }
    match Judge::new(&judge_spec, &prompt_files) {
        Ok(judge) => Some(Arc::new(judge)),
        Err(message) => {
            problems.push(at(KeyPath::default().key("judge"), message));
            None
        }
    }
}
