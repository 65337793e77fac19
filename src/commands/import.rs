//! `ragprobe import`: a trace from a tracing backend becomes a regression case, appended
//! to a suite file (created if needed) with an expectation draft for the user to edit.

use serde_json::Value;

use std::collections::HashSet;

use crate::cli::ImportArgs;
use crate::commands::common::runtime;
use crate::error::AppError;
use crate::exit_codes::Outcome;
use crate::import::{Observed, observe, read_trace_documents, read_trace_file, session_traces};
use crate::mlflow::client::{Mlflow, MlflowError};
use crate::mlflow::link;
use crate::mlflow::publish;
use crate::mlflow::target::{ExperimentRef, MlflowTarget};
use crate::out;
use crate::secrets::redact_url;
use crate::suite::append::{AnswerExpectation, NewCase, NewTurn, append};
use crate::suite::schema::{AnswerCheck, OneOrMany, SuiteSpec};
use crate::text::count;

pub fn import(args: ImportArgs) -> Result<Outcome, AppError> {
    if let (Some(qrels), Some(topics)) = (&args.qrels, &args.topics) {
        return crate::commands::import_trec::import_trec(&args, qrels, topics);
    }
    if let Some(filter) = &args.filter {
        return import_matching(&args, filter);
    }
    if let Some(session) = &args.session {
        return import_session(&args, session);
    }
    let (document, source) = read_source(&args)?;
    let observed = observe(&document, args.trace_id.as_deref())
        .map_err(|e| AppError::Usage(format!("{source}: {e}")))?;
    let judged = suite_has_judge(&args.suite);
    let (comments, case) = draft(&observed, &source, args.id.clone(), judged);
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
/// `judged`: the suite has a `judge:`, so a failed assessment can become a judged check.
fn draft(
    observed: &Observed,
    source: &str,
    id: Option<String>,
    judged: bool,
) -> (Vec<String>, NewCase) {
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
    for (name, why) in &observed.failed {
        comments.push(format!(
            "Failed in the trace: {name}{}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {}", crate::report::text::one_line(why, 300))
            }
        ));
    }
    let answer = observed.answer.trim();
    let expect = if !observed.expected_facts.is_empty() {
        // What the trace's expectation says a good answer holds: the check that failed.
        comments.push(
            "DRAFT: the answer must hold the trace's expected facts (as its assessment said); shorten each to the words that matter."
                .into(),
        );
        Some(AnswerExpectation {
            answer: AnswerCheck {
                contains: Some(OneOrMany(observed.expected_facts.clone())),
                ignore_case: true,
                ..AnswerCheck::default()
            },
        })
    } else if let (Some((name, why)), true) = (observed.failed.first(), judged) {
        // The assessment that failed, as a judged check of this suite's judge.
        comments.push(
            "DRAFT: the suite's judge checks what the failed assessment checked; edit the rubric."
                .into(),
        );
        Some(AnswerExpectation {
            answer: AnswerCheck {
                judge: Some(crate::suite::schema::JudgeCheck {
                    criterion: None,
                    rubric: Some(format!(
                        "{name}: {}",
                        if why.is_empty() {
                            "the answer must not fail this"
                        } else {
                            why
                        }
                    )),
                    prompt_file: None,
                }),
                ..AnswerCheck::default()
            },
        })
    } else if answer.is_empty() {
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
        turns: Vec::new(),
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
    let mut warn = |warning: String| out::eprintln(&format!("warning: {warning}"));
    let Some(target) = MlflowTarget::resolve(args.mlflow.as_deref(), None, false, &mut warn)?
    else {
        return Err(AppError::Usage(
            "give one of --otlp-json FILE, --mlflow-json FILE or --mlflow URL (or MLFLOW_TRACKING_URI) with --trace-id tr-… or --filter"
                .into(),
        ));
    };
    let Some(trace_id) = &args.trace_id else {
        return Err(AppError::Usage(
            "--mlflow needs --trace-id tr-… (one trace) or --filter FILTER (every trace it matches)".into(),
        ));
    };
    let mlflow = Mlflow::new(&target.tracking_uri, target.auth.clone())?;
    let document = runtime()?.block_on(fetch_trace(&mlflow, trace_id))?;
    Ok((
        document,
        format!("MLflow trace {trace_id} at {}", redact_url(mlflow.base())),
    ))
}

/// One trace with its spans, as `traces/get` returns it.
async fn fetch_trace(mlflow: &Mlflow, trace_id: &str) -> Result<Value, AppError> {
    let path = format!(
        "/api/3.0/mlflow/traces/get?trace_id={}",
        link::query_value(trace_id)
    );
    mlflow.get(&path, "traces/get").await.map_err(|e| match e {
        e if e.is_not_found() => AppError::Usage(format!(
            "no such trace `{trace_id}` at {}",
            redact_url(mlflow.base())
        )),
        e => failed(e),
    })
}

/// An MLflow error as the exit code says: a request refused as made is a usage error (2),
/// a server that cannot be reached or fails (5xx, 429) is unavailable (3).
fn failed(error: MlflowError) -> AppError {
    if error.is_config() {
        AppError::Usage(error.to_string())
    } else {
        AppError::Unavailable(error.to_string())
    }
}

/// `--filter`: every trace of the experiment the filter matches (newest first, at most
/// `--max-traces`), one case per question not already in the suite.
fn import_matching(args: &ImportArgs, filter: &str) -> Result<Outcome, AppError> {
    // An unset shell variable must not import every trace of the experiment.
    if filter.trim().is_empty() {
        return Err(AppError::Usage(
            "--filter is empty: give an MLflow search filter, e.g. \"feedback.`user_feedback` = 'false'\"".into(),
        ));
    }
    let (mlflow, experiment) = searched_experiment(
        args,
        "--filter",
        "--filter searches an MLflow server: give --mlflow URL (or set MLFLOW_TRACKING_URI)",
    )?;
    let server = redact_url(mlflow.base());
    let mut questions: HashSet<String> = existing_questions(&args.suite);
    let mut imported = Vec::new();
    let mut duplicates = 0;
    let mut unreadable: Vec<String> = Vec::new();
    let runtime = runtime()?;
    let (experiment_name, infos) = runtime.block_on(async {
        let (id, name) = link::experiment(&mlflow, &experiment, false)
            .await
            .map_err(failed)?;
        let infos = publish::search_traces(&mlflow, &id, filter, args.max_traces)
            .await
            .map_err(|e| match e {
                MlflowError::Status { code: 400, .. } => AppError::Usage(format!(
                    "{e}\n  hint: MLflow's filters quote strings with '…' and names with dots in backticks, and join clauses with AND: feedback.`user_feedback` = 'false' AND tags.`env` = 'prod'"
                )),
                e => failed(e),
            })?;
        Ok::<_, AppError>((name, infos))
    })?;
    for info in &infos {
        let Some(trace_id) = info["trace_id"].as_str() else {
            continue;
        };
        // One trace that cannot be read is reported, not a reason to stop the others.
        let document = match runtime.block_on(fetch_trace(&mlflow, trace_id)) {
            Ok(document) => document,
            Err(AppError::Usage(why)) => {
                unreadable.push(format!("{trace_id}: {why}"));
                continue;
            }
            Err(error) => return Err(error),
        };
        let observed = match observe(&document, Some(trace_id)) {
            Ok(observed) => observed,
            Err(e) => {
                unreadable.push(format!("{trace_id}: {e}"));
                continue;
            }
        };
        if !questions.insert(question_key(&observed.question)) {
            duplicates += 1;
            continue;
        }
        let source = format!("MLflow at {server} (filter {filter})");
        let (comments, case) = draft(&observed, &source, None, suite_has_judge(&args.suite));
        imported.push(append(&args.suite, args.chain.as_deref(), &comments, case)?);
    }
    let capped = if infos.len() >= args.max_traces {
        format!(" (the newest {}; --max-traces for more)", args.max_traces)
    } else {
        String::new()
    };
    out::println(&format!(
        "{}{capped} of experiment `{experiment_name}` matched; imported {} into {}{}",
        count(infos.len() as u64, "trace"),
        count(imported.len() as u64, "case"),
        args.suite.display(),
        if duplicates > 0 {
            format!(
                " ({} skipped: a question already in the suite or imported)",
                count(duplicates as u64, "trace")
            )
        } else {
            String::new()
        }
    ));
    for problem in &unreadable {
        out::eprintln(&format!("warning: not imported: {problem}"));
    }
    if !imported.is_empty() {
        out::println(&format!(
            "edit their expectation drafts, then: ragprobe run {} --filter tag:imported",
            args.suite.display()
        ));
    }
    Ok(Outcome::Ok)
}

/// `--session ID`: the session's traces, in time order, as one conversation case. The
/// turn to test is the last whose trace says it failed (an MLflow assessment), else the
/// last; the turns before it are scripted with the answers the traces recorded, so the
/// case starts from the history the user saw; turns after it are left out.
fn import_session(args: &ImportArgs, session: &str) -> Result<Outcome, AppError> {
    if session.trim().is_empty() {
        return Err(AppError::Usage(
            "--session is empty: give the session id".into(),
        ));
    }
    let (turns, source) = match &args.otlp_json {
        Some(path) => session_from_file(path, session)?,
        None => session_from_mlflow(args, session)?,
    };
    if turns.is_empty() {
        return Err(AppError::Usage(format!(
            "{source}: no trace of session `{session}`"
        )));
    }
    let tested = turns
        .iter()
        .rposition(|t| !t.failed.is_empty())
        .unwrap_or(turns.len() - 1);
    let judged = suite_has_judge(&args.suite);
    let mut comments = vec![format!(
        "Imported from {source}: session {session}, {} in time order.",
        count(turns.len() as u64, "trace")
    )];
    if tested + 1 < turns.len() {
        comments.push(format!(
            "Turn {} is the one whose trace failed; the {} after it are left out.",
            tested + 1,
            count((turns.len() - tested - 1) as u64, "turn")
        ));
    }
    comments.push(
        "The turns before the tested one replay the answers the user saw (`answer:`); remove an `answer:` to ask that turn live."
            .into(),
    );
    let (last_comments, last) = draft(&turns[tested], &source, None, judged);
    comments.extend(last_comments.into_iter().skip(1));
    let mut new_turns: Vec<NewTurn> = turns[..tested]
        .iter()
        .map(|t| NewTurn {
            question: t.question.clone(),
            answer: Some(t.answer.clone()),
            expect: None,
        })
        .collect();
    new_turns.push(NewTurn {
        question: last.question,
        answer: None,
        expect: last.expect,
    });
    let id = args.id.clone().unwrap_or_else(|| {
        let short: String = session
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        format!("session-{short}")
    });
    let case = NewCase {
        id,
        question: String::new(),
        turns: new_turns,
        tags: vec!["imported".into(), "conversation".into()],
        expect: None,
    };
    let id = append(&args.suite, args.chain.as_deref(), &comments, case)?;
    out::println(&format!(
        "imported case `{id}` into {}: a conversation of {} from session {session}, turn {} tested",
        args.suite.display(),
        count((tested + 1) as u64, "turn"),
        tested + 1
    ));
    out::println(&format!(
        "edit its expectation draft, then: ragprobe run {} --case {id}",
        args.suite.display()
    ));
    Ok(Outcome::Ok)
}

/// A session's turns from an OTLP JSON (Lines) file.
fn session_from_file(
    path: &std::path::Path,
    session: &str,
) -> Result<(Vec<Observed>, String), AppError> {
    let source = format!("OTLP JSON file {}", path.display());
    let documents = read_trace_documents(path).map_err(|e| AppError::Usage(e.to_string()))?;
    let documents = crate::import::merge_otlp(documents);
    let mut turns: Vec<Observed> = Vec::new();
    for document in &documents {
        let traces = session_traces(document, session)
            .map_err(|e| AppError::Usage(format!("{source}: {e}")))?;
        for (trace_id, _) in traces {
            let observed = observe(document, Some(&trace_id))
                .map_err(|e| AppError::Usage(format!("{source}: trace {trace_id}: {e}")))?;
            turns.push(observed);
        }
    }
    turns.sort_by_key(|t| t.started_ns);
    Ok((turns, source))
}

/// The MLflow server and experiment a search (`--filter`, `--session`) reads; `what`
/// names the flag in the message when no experiment is given, `no_server` is the message
/// when no server is.
fn searched_experiment(
    args: &ImportArgs,
    what: &str,
    no_server: &str,
) -> Result<(Mlflow, ExperimentRef), AppError> {
    let mut warn = |warning: String| out::eprintln(&format!("warning: {warning}"));
    let Some(target) = MlflowTarget::resolve(
        args.mlflow.as_deref(),
        args.experiment.as_deref(),
        false,
        &mut warn,
    )?
    else {
        return Err(AppError::Usage(no_server.into()));
    };
    if target.experiment == ExperimentRef::SuiteName {
        return Err(AppError::Usage(format!(
            "{what} needs the experiment to search: --experiment NAME (or MLFLOW_EXPERIMENT_NAME / MLFLOW_EXPERIMENT_ID)"
        )));
    }
    let mlflow = Mlflow::new(&target.tracking_uri, target.auth.clone())?;
    Ok((mlflow, target.experiment))
}

/// A session's turns from an MLflow server: the experiment's traces whose
/// `mlflow.trace.session` is `session`.
fn session_from_mlflow(
    args: &ImportArgs,
    session: &str,
) -> Result<(Vec<Observed>, String), AppError> {
    let (mlflow, experiment) = searched_experiment(
        args,
        "--session on MLflow",
        "--session reads an OTLP JSON file (--otlp-json FILE) or an MLflow server (--mlflow URL, or MLFLOW_TRACKING_URI)",
    )?;
    let source = format!("MLflow at {}", redact_url(mlflow.base()));
    let Some(quoted) = crate::mlflow::client::filter_string(session) else {
        return Err(AppError::Usage(format!(
            "--session {session:?}: MLflow's search filter cannot quote an id holding both ' and \""
        )));
    };
    let filter = format!("metadata.`mlflow.trace.session` = {quoted}");
    let runtime = runtime()?;
    let infos = runtime.block_on(async {
        let (id, _) = link::experiment(&mlflow, &experiment, false)
            .await
            .map_err(failed)?;
        // One more than the limit: a session cut at --max-traces would lose its start.
        publish::search_traces(&mlflow, &id, &filter, args.max_traces.saturating_add(1))
            .await
            .map_err(failed)
    })?;
    if infos.len() > args.max_traces {
        return Err(AppError::Usage(format!(
            "session `{session}` has more than {} traces: raise --max-traces to import it whole",
            args.max_traces
        )));
    }
    let mut turns = Vec::new();
    for info in &infos {
        let Some(trace_id) = info["trace_id"].as_str() else {
            continue;
        };
        let document = runtime.block_on(fetch_trace(&mlflow, trace_id))?;
        let observed = observe(&document, Some(trace_id))
            .map_err(|e| AppError::Usage(format!("{source}: trace {trace_id}: {e}")))?;
        turns.push(observed);
    }
    turns.sort_by_key(|t| t.started_ns);
    Ok((turns, source))
}

/// Questions compared without case, surrounding space or repeated spaces.
fn question_key(question: &str) -> String {
    question
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether the suite file (if it exists and parses) declares a `judge:`.
fn suite_has_judge(path: &std::path::Path) -> bool {
    crate::config::files::read_capped(path, crate::config::files::MAX_CONFIG_BYTES)
        .ok()
        .and_then(|text| serde_yaml::from_str::<SuiteSpec>(&text).ok())
        .is_some_and(|spec| spec.judge.is_some())
}

/// The questions of the suite file's cases, if it exists and parses.
fn existing_questions(path: &std::path::Path) -> HashSet<String> {
    crate::config::files::read_capped(path, crate::config::files::MAX_CONFIG_BYTES)
        .ok()
        .and_then(|text| serde_yaml::from_str::<SuiteSpec>(&text).ok())
        .map(|spec| {
            spec.cases
                .iter()
                .map(|c| question_key(&c.question))
                .collect()
        })
        .unwrap_or_default()
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
