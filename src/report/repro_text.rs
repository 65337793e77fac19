//! What `repro` and `triage` print.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde_json::Value;

use crate::report::trace_tree;
use crate::repro::{
    Reproduction, Sample, Stop, Stopping, Target, Triage, contrasts, prompt_lengths, temperatures,
};
use crate::stats::{percent, wilson};

/// The bad answer's rate, the first bad run's trace and what bad runs share.
pub fn render_repro(target: &Target, result: &Reproduction, stopping: Stopping) -> String {
    let mut out = String::new();
    let (bad, judged) = result.counts();
    let [_, high] = wilson(bad, judged);
    rate(&mut out, target, result, stopping);
    let Some(first) = result.first_bad() else {
        let _ = match result.stop {
            Stop::Budget => writeln!(out, "\nnot reproduced within the budget"),
            Stop::Precise => writeln!(
                out,
                "\nnot reproduced: at most {} of runs give this answer (95% upper bound)",
                percent(high)
            ),
        };
        return out;
    };
    let _ = writeln!(
        out,
        "\nfirst bad run: run {} (seed {})",
        first.record.run, first.record.seed
    );
    out.push_str(&trace_tree::render(&first.record, &target.suite));
    let _ = writeln!(
        out,
        "\nwhat bad runs have in common (share of bad runs vs good runs):"
    );
    if judged == bad {
        let _ = writeln!(out, "  every run was bad: nothing to contrast");
    } else {
        documents_and_metadata(&mut out, result);
    }
    broken_and_generation(&mut out, result, first);
    out
}

/// The header: question, chain, what is bad, how many runs and the rate.
fn rate(out: &mut String, target: &Target, result: &Reproduction, stopping: Stopping) {
    let (bad, judged) = result.counts();
    let errors = result.samples.len() as u32 - judged;
    let [low, high] = wilson(bad, judged);
    let _ = writeln!(out, "repro: {:?}", target.question);
    for line in target.history_lines() {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "chain: {}", target.chain.describe());
    let _ = writeln!(out, "bad answer: {}", target.bad.describe());
    let why = match result.stop {
        Stop::Precise => format!(
            "stopped when the 95% interval was within ±{}",
            percent(stopping.precision)
        ),
        Stop::Budget => format!("stopped at the budget of {} runs", stopping.max_runs),
    };
    let error_note = if errors > 0 {
        format!(", {errors} errors not counted")
    } else {
        String::new()
    };
    let _ = writeln!(out, "runs: {} ({why}{error_note})", result.samples.len());
    let _ = writeln!(
        out,
        "bad runs: {bad} of {judged} · reproduction rate {} [{}, {}] (95% Wilson)",
        percent(f64::from(bad) / f64::from(judged.max(1))),
        percent(low),
        percent(high)
    );
}

/// Retrieved documents and metadata values whose presence differs between bad and good
/// runs by 20 points or more.
fn documents_and_metadata(out: &mut String, result: &Reproduction) {
    let all = contrasts(&result.samples);
    let telling: Vec<_> = all
        .iter()
        .filter(|c| (c.in_bad - c.in_good).abs() >= 0.2)
        .take(8)
        .collect();
    if telling.is_empty() {
        let constant: Vec<&str> = all
            .iter()
            .filter(|c| c.in_bad == 1.0 && c.in_good == 1.0 && c.feature.starts_with("document"))
            .map(|c| c.feature.as_str())
            .collect();
        let _ = writeln!(
            out,
            "  no retrieved document or metadata value tells bad runs from good ones{}",
            if constant.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} in every run): the difference arises after retrieval, in generation",
                    constant.join(", ")
                )
            }
        );
    }
    for c in telling {
        let direction = if c.in_bad > c.in_good {
            "over"
        } else {
            "under"
        };
        let _ = writeln!(
            out,
            "  {:<44} {:>6} vs {:>6}  {direction}-represented in bad runs",
            c.feature,
            percent(c.in_bad),
            percent(c.in_good)
        );
    }
}

/// The rules the first bad run broke, and what the chain exposes of generation: prompt
/// lengths (when it reports its prompt) and temperatures (when its spans carry them).
fn broken_and_generation(out: &mut String, result: &Reproduction, first: &Sample) {
    let (bad, judged) = result.counts();
    let violating: BTreeSet<&str> = first
        .record
        .verdict
        .iter()
        .flat_map(|v| v.rules.iter())
        .filter(|r| !r.passed)
        .map(|r| r.id.as_str())
        .collect();
    if !violating.is_empty() {
        let names: Vec<&str> = violating.into_iter().collect();
        let _ = writeln!(out, "  rules the first bad run broke: {}", names.join(", "));
    }
    let prompts_known = result.samples.iter().any(|s| !s.record.prompt.is_empty());
    if judged > bad && prompts_known {
        let (bad_len, good_len) = prompt_lengths(&result.samples);
        let _ = writeln!(
            out,
            "  prompt length: {bad_len:.0} chars in bad runs vs {good_len:.0} in good runs"
        );
    }
    let (bad_t, good_t) = temperatures(&result.samples);
    if !bad_t.is_empty() {
        let join = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            out,
            "  temperature: {} in bad runs, {} in good runs",
            join(&bad_t),
            if good_t.is_empty() {
                "-".into()
            } else {
                join(&good_t)
            }
        );
    }
}

/// The conditions' table, the retriever replay, the cause and the suggested fix.
pub fn render_triage(target: &Target, result: &Triage, runs: u32) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "triage: {:?}", target.question);
    for line in target.history_lines() {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "chain: {}", target.chain.describe());
    let _ = writeln!(out, "bad answer: {}", target.bad.describe());
    let _ = writeln!(out, "{} runs per condition, the same seeds in each\n", runs);
    let labels: Vec<String> = result
        .conditions
        .iter()
        .map(|c| format!("({}) {}", c.key, c.label))
        .collect();
    let width = crate::report::text::widest(&labels).max(44);
    let _ = writeln!(
        out,
        "{:<width$} {:>5} {:>4} {:>7}  95% CI",
        "condition", "runs", "bad", "rate"
    );
    // Conditions run and conditions the chain cannot run, in key order.
    let mut lines: Vec<(char, String)> = Vec::new();
    for (c, label) in result.conditions.iter().zip(&labels) {
        let [low, high] = wilson(c.bad, c.judged);
        let errors = if c.errors > 0 {
            format!("  ({} errors)", c.errors)
        } else {
            String::new()
        };
        lines.push((
            c.key,
            format!(
                "{label:<width$} {:>5} {:>4} {:>7}  [{}, {}]{errors}",
                c.judged,
                c.bad,
                percent(c.rate()),
                percent(low),
                percent(high)
            ),
        ));
    }
    for (key, label, reason) in &result.unsupported {
        lines.push((*key, format!("({key}) {label}: not run: {reason}")));
    }
    let same = |deterministic: bool| {
        if deterministic {
            "the same"
        } else {
            "different"
        }
    };
    let replay_line = match &result.replay {
        Some(replay) if replay.from_responses => format!(
            "(e) the service's retriever, as its responses show: {} — {} in {} runs of (a)",
            replay_documents(replay, result),
            same(replay.deterministic),
            replay.replays
        ),
        Some(replay) => format!(
            "(e) retriever replayed: query = {}, filter {}: {} — {} on {} replays",
            if replay.query == target.question {
                "the question verbatim".to_owned()
            } else {
                format!(
                    "{:?} (the turn's, as its history setting built it)",
                    replay.query
                )
            },
            replay.filter.as_deref().unwrap_or("none"),
            replay_documents(replay, result),
            same(replay.deterministic),
            replay.replays
        ),
        None => "(e) retriever replay failed: see the runs' errors".to_owned(),
    };
    lines.push(('e', replay_line));
    lines.sort_by_key(|(key, _)| *key);
    for (_, line) in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "\ncause: {}.", result.cause);
    if let Some(fix) = &result.fix {
        let _ = writeln!(out, "suggested fix: {fix}");
    }
    out
}

/// The replayed documents with their metadata, rule-breaking ones marked.
fn replay_documents(replay: &crate::repro::Replay, result: &Triage) -> String {
    replay
        .documents
        .iter()
        .map(|d| {
            let mark = result
                .violators
                .iter()
                .find(|(id, _, _)| id == &d.id)
                .map(|(_, _, rule)| format!(" ✗ {rule}"))
                .unwrap_or_default();
            format!("{} {}{mark}", d.id, Value::Object(d.metadata.clone()))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
