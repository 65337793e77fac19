//! The built-in judge prompts, one per criterion plus one for a rubric. Each lays out the
//! question, the context as `[id] text` lines and the answer, and asks for the JSON verdict.

use minijinja::Environment;

use crate::judge::spec::{Criterion, JudgeCheck};

const REPLY: &str = r#"Reply with a JSON object only: {"verdict": "pass" or "fail", "reason": "one sentence", "score": a number from 0 to 1}."#;

const CONTEXT: &str =
    "Context:\n{% for doc in documents %}[{{ doc.id }}] {{ doc.text }}\n{% endfor %}";

fn builtin(criterion: Option<Criterion>) -> String {
    let (task, context, reference) = match criterion {
        Some(Criterion::Groundedness) => (
            "You check whether an answer is supported by the context it was given. It passes when every claim in it is stated in the context; it fails when any claim is not.",
            true,
            false,
        ),
        Some(Criterion::Relevance) => (
            "You check whether an answer addresses the question. It passes when it answers what was asked (saying that the answer is unknown counts); it fails when it answers something else.",
            false,
            false,
        ),
        Some(Criterion::Correctness) => (
            "You check whether an answer agrees with the reference answer. It passes when it states the same facts (other words are fine); it fails when it contradicts or misses them.",
            false,
            true,
        ),
        Some(Criterion::ContextSufficiency) => (
            "You check whether the context holds what is needed to answer the question. It passes when it does; it fails when something needed is missing.",
            true,
            false,
        ),
        None => (
            "You judge an answer against this rubric:\n{{ rubric }}\nIt passes when it meets the rubric; it fails when it does not.",
            true,
            false,
        ),
    };
    let mut prompt = format!("{task}\n\n{HISTORY}Question: {{{{ question }}}}\n");
    if context {
        prompt.push_str(CONTEXT);
    }
    if reference {
        prompt.push_str("Reference answer: {{ reference }}\n");
    }
    prompt.push_str("Answer: {{ answer }}\n\n");
    prompt.push_str(REPLY);
    prompt
}

/// A conversation's messages before the question (nothing for a single question).
const HISTORY: &str = "{% if history %}Conversation so far:\n{% for m in history %}{{ m.role }}: {{ m.content }}\n{% endfor %}\n{% endif %}";

pub fn add_builtins(env: &mut Environment<'static>) -> Result<(), minijinja::Error> {
    for criterion in [
        Some(Criterion::Groundedness),
        Some(Criterion::Relevance),
        Some(Criterion::Correctness),
        Some(Criterion::ContextSufficiency),
        None,
    ] {
        let name = match criterion {
            Some(c) => format!("criterion:{}", c.name()),
            None => "rubric".to_owned(),
        };
        env.add_template_owned(name, builtin(criterion))?;
    }
    Ok(())
}

/// The template a check renders: its prompt file, else its criterion's, else the rubric's.
pub fn template_name(check: &JudgeCheck) -> String {
    match (&check.prompt_file, check.criterion) {
        (Some(file), _) => format!("file:{}", file.display()),
        (None, Some(criterion)) => format!("criterion:{}", criterion.name()),
        (None, None) => "rubric".to_owned(),
    }
}

/// The check in a few words, for spans and reports.
pub fn describe(check: &JudgeCheck) -> String {
    match (&check.prompt_file, check.criterion, &check.rubric) {
        (Some(file), _, _) => format!("prompt {}", file.display()),
        (None, Some(criterion), _) => criterion.name().to_owned(),
        (None, None, Some(rubric)) => format!("rubric: {rubric}"),
        (None, None, None) => "rubric".to_owned(),
    }
}
