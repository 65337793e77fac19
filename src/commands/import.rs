//! `ragprobe import`: a trace from a tracing backend becomes a regression case, appended
//! to a suite file (created if needed) with an expectation draft for the user to edit.

use serde_json::Value;

use crate::backend::redact::redact_url;
use crate::cli::ImportArgs;
use crate::commands::common::runtime;
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::export::send;
use crate::import::{Observed, observe, read_trace_file};
use crate::report::out;
use crate::suite::append::{AnswerExpectation, NewCase, append};
use crate::suite::schema::{AnswerCheck, OneOrMany};

pub fn import(args: ImportArgs) -> Result<Outcome, AppError> {
    let (document, source) = read_source(&args)?;
    let observed = observe(&document, args.trace_id.as_deref())
        .map_err(|e| AppError::Usage(format!("{source}: {e}")))?;
    let (comments, case) = draft(&observed, &source, args.id.clone());
    let id = append(&args.suite, args.chain.as_deref(), &comments, case)?;
    out::println(&format!(
        "imported case `{id}` into {}: question {:?}, {} retrieved documents, answer of {} chars",
        args.suite.display(),
        observed.question,
        observed.documents.len(),
        observed.answer.chars().count()
    ));
    out::println(&format!(
        "edit its expectation draft, then: ragprobe run {} --case {id}",
        args.suite.display()
    ));
    Ok(Outcome::Ok)
}

/// The case and the comments above it: what the trace showed, and what to edit.
fn draft(observed: &Observed, source: &str, id: Option<String>) -> (Vec<String>, NewCase) {
    let mut comments = vec![format!(
        "Imported from {source}, trace {}.",
        observed.trace_id
    )];
    let ids: Vec<String> = observed
        .documents
        .iter()
        .map(|(id, _)| id.clone())
        .collect();
    if observed.documents.is_empty() {
        comments.push("Observed retrieved documents: none recorded in the trace.".into());
    } else {
        let docs: Vec<String> = observed
            .documents
            .iter()
            .map(|(id, meta)| format!("{id} {meta}"))
            .collect();
        comments.push(format!("Observed retrieved documents: {}", docs.join(", ")));
        comments.push(format!(
            "The documents a good answer comes from go in expect.sources; the trace retrieved {}.",
            serde_json::to_string(&ids).unwrap_or_default()
        ));
    }
    let answer = observed.answer.trim();
    let expect = if answer.is_empty() {
        comments.push(
            "Observed answer: none found in the trace; add an expectation (expect.answer) by hand."
                .into(),
        );
        None
    } else {
        comments.push(format!("Observed answer: {answer}"));
        comments.push(
            "DRAFT: the observed answer must not come back. Keep only the part that was wrong \
             (e.g. \"t4g.micro\"), or replace it with what a good answer contains."
                .into(),
        );
        Some(AnswerExpectation {
            answer: AnswerCheck {
                not_contains: Some(OneOrMany(vec![answer.to_owned()])),
                ..AnswerCheck::default()
            },
        })
    };
    let case = NewCase {
        id: id.unwrap_or_else(|| case_id(observed)),
        question: observed.question.clone(),
        tags: vec!["imported".into()],
        expect,
    };
    (comments, case)
}

fn read_source(args: &ImportArgs) -> Result<(Value, String), AppError> {
    if let Some(path) = &args.otlp_json {
        return Ok((
            read_trace_file(path).map_err(|e| AppError::Usage(e.to_string()))?,
            format!("OTLP JSON file {}", path.display()),
        ));
    }
    if let Some(path) = &args.mlflow_json {
        return Ok((
            read_trace_file(path).map_err(|e| AppError::Usage(e.to_string()))?,
            format!("MLflow trace file {}", path.display()),
        ));
    }
    let Some(server) = &args.mlflow else {
        return Err(AppError::Usage(
            "give one of --otlp-json FILE, --mlflow-json FILE or --mlflow URL --trace-id tr-…"
                .into(),
        ));
    };
    let Some(trace_id) = &args.trace_id else {
        return Err(AppError::Usage("--mlflow needs --trace-id tr-…".into()));
    };
    let url = format!(
        "{}/api/3.0/mlflow/traces/get?trace_id={trace_id}",
        server.trim_end_matches('/')
    );
    let client = send::client()?;
    let document = runtime()?.block_on(async {
        let response = client.get(&url).send().await.map_err(|e| {
            AppError::Unavailable(format!(
                "cannot reach the MLflow server at {}: {}",
                redact_url(server),
                crate::backend::client::root_cause(&e)
            ))
        })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(AppError::Usage(format!(
                "no such trace `{trace_id}` at {}",
                redact_url(server)
            )));
        }
        if !status.is_success() {
            let excerpt: String = body.chars().take(300).collect();
            return Err(AppError::Usage(format!(
                "MLflow answered HTTP {status}: {excerpt}"
            )));
        }
        serde_json::from_str::<Value>(&body)
            .map_err(|e| AppError::Usage(format!("MLflow's answer is not JSON: {e}")))
    })?;
    Ok((
        document,
        format!("MLflow trace {trace_id} at {}", redact_url(server)),
    ))
}

/// `imported-` and the first hex digits of the trace id.
fn case_id(observed: &Observed) -> String {
    let hex: String = observed
        .trace_id
        .trim_start_matches("tr-")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("imported-{}", if hex.is_empty() { "trace" } else { &hex })
}
