//! RAG services ragprobe does not build but calls: over HTTP (`kind: http`) or as a
//! program per question (`kind: command`). Both answer with JSON holding the answer, the
//! documents the service retrieved and, optionally, spans it recorded; ragprobe sends a
//! W3C `traceparent` so those spans join the run's trace.

use std::collections::BTreeMap;
use std::process::Stdio;

use minijinja::Environment;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;

use crate::backend::error::HeaderError;
use crate::backend::{Backend, ErrorKind};
use crate::chain::config::{DocumentsFrom, Preset};
use crate::chain::error::ChainError;
use crate::chain::intake::{self, SpanIntake};
use crate::chain::{ChainFailure, ChainOutput};
use crate::model::record::RetrievedDoc;
use crate::secrets::{quote, redact_url};
use crate::trace::{OpenSpan, Span, SpanKind, SpanStatus, TraceBuilder};

/// The default request body: the question, the case's variables and the run's seed; in a
/// conversation also the messages so far (ending with the question) and the turn's number.
pub const DEFAULT_BODY: &str = concat!(
    r#"{"question": {{ question | tojson }}, "vars": {{ vars | tojson }}, "seed": {{ seed }}"#,
    r#"{% if conversation %}, "messages": {{ messages | tojson }}, "turn": {{ turn }}{% endif %}}"#
);

/// The request body a preset sends when the chain names none. LangServe's conversational
/// chains (`create_history_aware_retriever` and `create_retrieval_chain`) take `input` and
/// `chat_history`; a RetrievalQA chain has no history.
pub fn preset_body(preset: Preset) -> &'static str {
    match preset {
        Preset::Langserve => concat!(
            r#"{% if conversation %}{"input": {"input": {{ question | tojson }}, "#,
            r#""chat_history": {{ chat_history | tojson }}}}"#,
            r#"{% else %}{"input": {{ question | tojson }}}{% endif %}"#
        ),
        Preset::Retrievalqa => r#"{"query": {{ question | tojson }}}"#,
        Preset::Openai => concat!(
            // `{ {%`: a brace right before `{%` would open an expression.
            r#"{ {% if vars.model is defined %}"model": {{ vars.model | tojson }}, {% endif %}"#,
            r#""messages": {{ messages | tojson }}, "seed": {{ seed }}}"#
        ),
    }
}

/// The history as LangChain serialises messages: `{"type": "human"|"ai", "content": …}`.
fn langchain_messages(history: &[crate::model::record::Message]) -> Vec<Value> {
    use crate::model::record::Role;
    history
        .iter()
        .map(|m| {
            let kind = match m.role {
                Role::User => "human",
                Role::Assistant => "ai",
            };
            json!({"type": kind, "content": m.content})
        })
        .collect()
}

/// Where the answer, documents, spans and each document's id are in a reply.
#[derive(Debug, Clone)]
pub struct ReplyShape {
    /// Tried in order: the first that holds a string is the answer.
    pub answer: Vec<String>,
    /// Tried in order: the first that holds a list is the documents.
    pub documents: Vec<String>,
    pub spans: String,
    /// Inside a document; `None`: `/id`, else `/metadata/id`.
    pub document_id: Option<String>,
    /// Documents without an id get their rank.
    pub positional_ids: bool,
    /// A reply must hold the documents (no `documents_from: spans` or `none`): one that
    /// does not is broken, never zero documents.
    pub documents_required: bool,
}

impl ReplyShape {
    /// A preset's pointers, each replaced by the one the chain names.
    pub fn new(
        preset: Option<Preset>,
        answer: Option<&str>,
        documents: Option<&str>,
        spans: Option<&str>,
    ) -> Self {
        let (answers, documented): (&[&str], &[&str]) = match preset {
            None => (&["/answer"], &["/documents"]),
            Some(Preset::Langserve) => (
                &[
                    "/output/result",
                    "/output/answer",
                    "/output/content",
                    "/output",
                ],
                &["/output/source_documents", "/output/context"],
            ),
            Some(Preset::Retrievalqa) => (&["/result"], &["/source_documents"]),
            Some(Preset::Openai) => (
                &["/choices/0/message/content"],
                &["/documents", "/choices/0/message/context/citations"],
            ),
        };
        let list = |given: Option<&str>, default: &[&str]| match given {
            Some(pointer) => vec![pointer.to_owned()],
            None => default.iter().map(|p| (*p).to_owned()).collect(),
        };
        ReplyShape {
            answer: list(answer, answers),
            documents: list(documents, documented),
            spans: spans.unwrap_or("/spans").to_owned(),
            document_id: None,
            positional_ids: false,
            documents_required: true,
        }
    }

    /// Where the documents come from: only a reply that should hold them must.
    pub fn with_documents_from(mut self, from: DocumentsFrom) -> Self {
        self.documents_required = from == DocumentsFrom::Response;
        self
    }

    pub fn with_document_ids(mut self, pointer: Option<&str>, positional: bool) -> Self {
        self.document_id = pointer.map(str::to_owned);
        self.positional_ids = positional;
        self
    }
}

/// An http chain that cannot be set up from its configuration; the variant says which
/// key is wrong.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    #[error("`method` is not an HTTP method")]
    Method,
    #[error("body template: {0}")]
    Body(minijinja::Error),
    #[error("header `{name}` template: {error}")]
    HeaderTemplate {
        name: String,
        error: minijinja::Error,
    },
    #[error(transparent)]
    Header(#[from] HeaderError),
}

#[derive(Debug)]
pub struct HttpChain {
    pub backend: Backend,
    pub url: String,
    pub method: reqwest::Method,
    templates: Environment<'static>,
    header_names: Vec<String>,
    /// The environment, read once, for `{{ env.NAME }}` in the body and headers.
    env: minijinja::Value,
    pub shape: ReplyShape,
    pub intake: SpanIntake,
    /// Whether the body template uses `filter` (a retriever filter triage can try) and
    /// `documents` (a context the service answers from instead of retrieving).
    pub takes_filter: bool,
    pub takes_documents: bool,
    /// Whether the body sends a conversation's history (`messages`, `chat_history` or
    /// `history`), or a session id under which the service keeps it (`session_id`).
    pub takes_history: bool,
}

/// What triage asks of a service beyond the question: a retriever filter, or the
/// documents to answer from. Sent only through the body variables of the same names.
#[derive(Debug, Clone, Default)]
pub struct RequestExtras<'a> {
    pub filter: Option<&'a Value>,
    pub documents: Option<&'a [RetrievedDoc]>,
    /// The turn of a conversation this request asks.
    pub conversation: Option<crate::chain::Conversation<'a>>,
}

#[derive(Debug)]
pub struct CommandChain {
    pub cmd: Vec<String>,
    pub shape: ReplyShape,
    /// Longest stdout read (`limits.max_response_bytes`): a program that never stops
    /// printing is killed at the cap, not read into memory.
    pub max_output_bytes: u64,
    pub intake: SpanIntake,
}

impl HttpChain {
    pub fn new(
        url: &str,
        method: Option<&str>,
        headers: &BTreeMap<String, String>,
        body: Option<&str>,
        shape: ReplyShape,
        intake: SpanIntake,
        backend: Backend,
    ) -> Result<Self, HttpSetupError> {
        let method = method
            .unwrap_or("POST")
            .to_ascii_uppercase()
            .parse::<reqwest::Method>()
            .map_err(|_| HttpSetupError::Method)?;
        let mut templates = crate::chain::prompt::template_environment();
        templates
            .add_template_owned("body", body.unwrap_or(DEFAULT_BODY).to_owned())
            .map_err(HttpSetupError::Body)?;
        let variables = templates
            .get_template("body")
            .map_err(HttpSetupError::Body)?
            .undeclared_variables(false);
        crate::secrets::remember_url(url);
        let mut header_names = Vec::new();
        for (name, value) in headers {
            if !value.contains("{{") && !value.contains("{%") {
                crate::secrets::remember_header(name, value);
            }
            crate::backend::client::header_map(&[(name.clone(), "x".into())])?;
            templates
                .add_template_owned(format!("header:{name}"), value.clone())
                .map_err(|error| HttpSetupError::HeaderTemplate {
                    name: name.clone(),
                    error,
                })?;
            header_names.push(name.clone());
        }
        Ok(HttpChain {
            backend,
            url: url.to_owned(),
            method,
            templates,
            header_names,
            env: minijinja::Value::from(minijinja::value::Serde(
                std::env::vars().collect::<BTreeMap<_, _>>(),
            )),
            shape,
            intake,
            takes_filter: variables.contains("filter"),
            takes_documents: variables.contains("documents"),
            takes_history: ["messages", "chat_history", "history", "session_id"]
                .iter()
                .any(|name| variables.contains(*name)),
        })
    }

    pub fn describe(&self) -> String {
        format!("RAG service at {} {}", self.method, redact_url(&self.url))
    }

    /// Triage's context edit on a service: ask once for the documents it retrieves, edit
    /// them, and ask again with the edited ones as `documents`. The record keeps the
    /// documents as retrieved; the root span names the ones sent.
    pub async fn invoke_edited(
        &self,
        question: &str,
        vars: &Map<String, Value>,
        seed: u64,
        extras: &RequestExtras<'_>,
        edit: &(dyn Fn(Vec<RetrievedDoc>) -> Vec<RetrievedDoc> + Sync),
    ) -> Result<ChainOutput, ChainFailure> {
        let first = self.invoke(question, vars, seed, extras).await?;
        let edited = edit(first.retrieved.clone());
        let extras = RequestExtras {
            documents: Some(&edited),
            ..extras.clone()
        };
        let mut output = self.invoke(question, vars, seed, &extras).await?;
        output.retrieved = first.retrieved;
        Ok(output)
    }

    /// Renders the body and headers for one question (also used by `validate`).
    pub fn render(
        &self,
        question: &str,
        vars: &Map<String, Value>,
        seed: u64,
        traceparent: &str,
        extras: &RequestExtras<'_>,
    ) -> Result<(String, Vec<(String, String)>), ChainError> {
        let documents = extras.documents.map(|docs| {
            docs.iter()
                .map(|d| {
                    json!({"id": d.id, "text": d.text, "page_content": d.text, "metadata": d.metadata})
                })
                .collect::<Vec<_>>()
        });
        let conversation = extras.conversation;
        let history = conversation.map_or(&[][..], |c| c.history);
        let messages = match conversation {
            Some(c) => c.messages(question),
            None => vec![crate::model::record::Message {
                role: crate::model::record::Role::User,
                content: question.to_owned(),
            }],
        };
        let context = minijinja::context! {
            question => question,
            conversation => conversation.is_some(),
            turn => conversation.map_or(1, |c| c.turn),
            session_id => conversation.map(|c| c.session),
            messages => minijinja::Value::from(minijinja::value::Serde(&messages)),
            history => minijinja::Value::from(minijinja::value::Serde(history)),
            chat_history => minijinja::Value::from(minijinja::value::Serde(langchain_messages(history))),
            vars => minijinja::Value::from(minijinja::value::Serde(vars)),
            seed => seed & (i64::MAX as u64),
            traceparent => traceparent,
            env => self.env.clone(),
            filter => minijinja::Value::from(minijinja::value::Serde(extras.filter)),
            documents => minijinja::Value::from(minijinja::value::Serde(documents)),
        };
        let render = |name: &str| {
            self.templates
                .get_template(name)
                .and_then(|t| t.render(&context))
                .map_err(|e| ChainError::Request(format!("{name} template: {e}")))
        };
        let body = render("body")?;
        let mut headers = Vec::new();
        for name in &self.header_names {
            headers.push((name.clone(), render(&format!("header:{name}"))?));
        }
        headers.push(("traceparent".into(), traceparent.to_owned()));
        Ok((body, headers))
    }

    pub async fn invoke(
        &self,
        question: &str,
        vars: &Map<String, Value>,
        seed: u64,
        extras: &RequestExtras<'_>,
    ) -> Result<ChainOutput, ChainFailure> {
        let (trace, mut root, traceparent) =
            start_trace("rag-service", question, ("url", redact_url(&self.url)));
        if let Some(conversation) = extras.conversation {
            root.set("turn", conversation.turn);
        }
        if let Some(filter) = extras.filter {
            root.set("filter", filter.clone());
        }
        if let Some(documents) = extras.documents {
            root.set(
                "documents_sent",
                documents.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
            );
        }
        self.intake.expect(&trace);
        let outcome = async {
            let (body, headers) = self.render(question, vars, seed, &traceparent, extras)?;
            let headers = crate::backend::client::header_map(&headers)
                .map_err(|e| ChainError::Request(e.to_string()))?;
            let reply = self
                .backend
                .send(self.method.clone(), &self.url, &headers, Some(body), 0.0)
                .await?;
            root.set("attempts", reply.attempts);
            serde_json::from_str::<Value>(&reply.text).map_err(|err| {
                ChainError::from(self.backend.error(
                    ErrorKind::Malformed(format!("not JSON ({err}): {}", quote(&reply.text))),
                    reply.attempts,
                ))
            })
        }
        .await;
        finish(trace, root, outcome, &self.shape, &self.intake).await
    }
}

impl CommandChain {
    pub fn describe(&self) -> String {
        format!("command `{}`", self.cmd.join(" "))
    }

    /// Runs the program with `{question, vars, seed, traceparent}` on stdin (and, in a
    /// conversation, `messages` ending with the question and `turn`) and reads the reply
    /// from stdout. The program is killed if the run is cancelled or times out.
    pub async fn invoke(
        &self,
        question: &str,
        vars: &Map<String, Value>,
        seed: u64,
        conversation: Option<crate::chain::Conversation<'_>>,
    ) -> Result<ChainOutput, ChainFailure> {
        let (trace, mut root, traceparent) =
            start_trace("rag-command", question, ("cmd", self.cmd.join(" ")));
        let mut input = json!({
            "question": question,
            "vars": vars,
            "seed": seed & (i64::MAX as u64),
            "traceparent": traceparent,
        });
        if let Some(conversation) = conversation {
            root.set("turn", conversation.turn);
            input["messages"] = json!(conversation.messages(question));
            input["turn"] = conversation.turn.into();
            input["session_id"] = conversation.session.into();
        }
        self.intake.expect(&trace);
        let outcome = self.run(input.to_string()).await;
        finish(trace, root, outcome, &self.shape, &self.intake).await
    }

    async fn run(&self, input: String) -> Result<Value, ChainError> {
        let (program, args) = self
            .cmd
            .split_first()
            .ok_or_else(|| ChainError::Command("`cmd` is empty".into()))?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| ChainError::Command(format!("cannot start `{program}`: {err}")))?;
        let stdin = child.stdin.take();
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A program that exits without reading its input is its own business; its
                // exit status says what happened.
                let _ = stdin.write_all(input.as_bytes()).await;
            }
        };
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let limit = self.max_output_bytes;
        let ((), stdout, stderr) = tokio::join!(
            feed,
            read_bounded(stdout, limit, false),
            read_bounded(stderr, STDERR_KEPT, true),
        );
        let io = |err: std::io::Error| ChainError::Command(format!("`{program}`: {err}"));
        let (stdout, too_long) = stdout.map_err(io)?;
        if too_long {
            let _ = child.kill().await;
            return Err(ChainError::Command(format!(
                "`{program}` printed more than {limit} bytes (limits.max_response_bytes); it was stopped"
            )));
        }
        let (stderr, _) = stderr.map_err(io)?;
        let status = child.wait().await.map_err(io)?;
        let output = std::process::Output {
            status,
            stdout,
            stderr,
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(ChainError::Command(format!(
                "`{program}` exited with {}: {}",
                output.status,
                quote(&tail.join(" | "))
            )));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(&stdout).map_err(|err| {
            ChainError::Command(format!(
                "`{program}` printed something that is not JSON ({err}): {}",
                quote(&stdout)
            ))
        })
    }
}

/// Stderr kept for an error message; the rest is read and dropped, so a chatty program
/// never blocks on a full pipe.
const STDERR_KEPT: u64 = 64 * 1024;

/// Up to `limit` bytes of `reader`, and whether there were more. With `drain`, what is
/// beyond the limit is read and dropped; without, reading stops there.
async fn read_bounded<R: tokio::io::AsyncRead + Unpin>(
    reader: Option<R>,
    limit: u64,
    drain: bool,
) -> std::io::Result<(Vec<u8>, bool)> {
    use tokio::io::AsyncReadExt;
    let Some(mut reader) = reader else {
        return Ok((Vec::new(), false));
    };
    let mut kept = Vec::new();
    (&mut reader).take(limit).read_to_end(&mut kept).await?;
    let mut probe = [0u8; 1];
    let more = reader.read(&mut probe).await? > 0;
    if more && drain {
        tokio::io::copy(&mut reader, &mut tokio::io::sink()).await?;
    }
    Ok((kept, more))
}

/// The run's trace with its root span open, and the W3C `traceparent` (sampled) that
/// makes the service's spans children of that root.
fn start_trace(
    name: &str,
    question: &str,
    (key, value): (&str, String),
) -> (TraceBuilder, OpenSpan, String) {
    let mut trace = TraceBuilder::new();
    let mut root = trace.start(name, SpanKind::Chain, None);
    root.set("question", question);
    root.set(key, value);
    let traceparent = format!("00-{}-{}-01", trace.trace_id(), root.id());
    (trace, root, traceparent)
}

/// Turns a reply into the run's output, or the failure into a failed root span. With a
/// receiver, the service's exported spans are collected first and join the trace either way.
async fn finish(
    mut trace: TraceBuilder,
    mut root: OpenSpan,
    outcome: Result<Value, ChainError>,
    shape: &ReplyShape,
    intake: &SpanIntake,
) -> Result<ChainOutput, ChainFailure> {
    let received = intake.collect(&trace, &mut root, outcome.is_ok()).await;
    let parsed = outcome
        .and_then(|reply| parse_reply(&reply, shape))
        .and_then(|(answer, mut retrieved, spans, prompt)| {
            match intake.documents_from {
                DocumentsFrom::Spans => retrieved = spans_documents(&received, &root, shape)?,
                DocumentsFrom::None => retrieved.clear(),
                DocumentsFrom::Response => {}
            }
            Ok((answer, retrieved, spans, prompt))
        });
    let received_any = !received.is_empty();
    intake::join(&mut trace, &root, received);
    let (answer, retrieved, spans, prompt) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            trace.end(
                root,
                SpanStatus::Error {
                    message: error.to_string(),
                },
            );
            return Err(ChainFailure {
                error,
                trace: Some(trace.finish()),
            });
        }
    };
    root.set(
        "document_ids",
        retrieved.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
    );
    let adopted = spans.len();
    for span in spans {
        trace.adopt(span, root.id());
    }
    if adopted > 0 {
        root.set("service_spans", adopted);
    } else if !received_any {
        derived_spans(&mut trace, &root, &retrieved, &answer);
    }
    trace.end(root, SpanStatus::Ok);
    Ok(ChainOutput {
        retrieved,
        prompt,
        answer,
        trace: trace.finish(),
    })
}

/// `documents_from: spans`: the documents of the service's own retriever span.
fn spans_documents(
    received: &[Span],
    root: &OpenSpan,
    shape: &ReplyShape,
) -> Result<Vec<RetrievedDoc>, ChainError> {
    let Some(items) = crate::receiver::retrieved_documents(received) else {
        let waited = root
            .get("received_wait_ms")
            .and_then(Value::as_f64)
            .unwrap_or_default();
        return Err(ChainError::NoSpans(format!(
            "documents_from: spans, but no RETRIEVER span with documents arrived ({} spans from the service within {waited:.0} ms); is the service exporting to ragprobe's receiver?",
            received.len()
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| document(i, item, shape))
        .collect()
}

/// For a service that reported no spans: a RETRIEVER span with the documents it returned
/// and a span for its answer, marked as read from the response, so every backend shows the
/// same tree shape as for a pipeline chain. Their times are the reply's arrival, not the
/// service's own steps.
fn derived_spans(
    trace: &mut TraceBuilder,
    root: &OpenSpan,
    retrieved: &[RetrievedDoc],
    answer: &str,
) {
    let question = root_question(root);
    let mut retrieve = trace.start("retrieve", SpanKind::Retriever, Some(root));
    retrieve.set("query", question);
    retrieve.set(
        "document_ids",
        retrieved.iter().map(|d| d.id.clone()).collect::<Vec<_>>(),
    );
    retrieve.set(
        "scores",
        retrieved.iter().map(|d| d.score).collect::<Vec<_>>(),
    );
    retrieve.set("ragprobe.derived_from", "response");
    trace.end(retrieve, SpanStatus::Ok);
    let mut answered = trace.start("answer", SpanKind::Llm, Some(root));
    answered.set("generator", "the service (read from its response)");
    answered.set("answer_chars", answer.chars().count());
    answered.set("ragprobe.derived_from", "response");
    trace.end(answered, SpanStatus::Ok);
}

fn root_question(root: &OpenSpan) -> String {
    root.get("question")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

type Parsed = (String, Vec<RetrievedDoc>, Vec<Span>, String);

/// Answer, documents, spans and prompt from a reply, by the configured pointers.
fn parse_reply(reply: &Value, shape: &ReplyShape) -> Result<Parsed, ChainError> {
    let answer = shape
        .answer
        .iter()
        .find_map(|p| reply.pointer(p).and_then(Value::as_str))
        .map(str::to_owned)
        .ok_or_else(|| {
            let found = shape
                .answer
                .iter()
                .find_map(|p| reply.pointer(p).map(|v| (p, v)));
            ChainError::Reply(match found {
                Some((pointer, value)) => format!(
                    "the answer at {pointer} is not a string: {}",
                    quote(&value.to_string())
                ),
                None => format!(
                    "no answer at {} ({})",
                    shape.answer.join(", "),
                    top_level_keys(reply)
                ),
            })
        })?;
    let documents = match shape
        .documents
        .iter()
        .find_map(|p| reply.pointer(p).filter(|v| !v.is_null()).map(|v| (p, v)))
    {
        None if !shape.documents_required => Vec::new(),
        // A reply without the documents the chain was told to read is broken: zero
        // documents would make every `retrieved` rule pass without a look.
        None => {
            return Err(ChainError::Reply(format!(
                "no documents at {} ({}); point `documents_pointer` at them, or say `documents_from: spans` or `none`",
                shape.documents.join(", "),
                top_level_keys(reply)
            )));
        }
        Some((_, Value::Array(items))) => items
            .iter()
            .enumerate()
            .map(|(i, item)| document(i, item, shape))
            .collect::<Result<_, _>>()?,
        Some((pointer, other)) => {
            return Err(ChainError::Reply(format!(
                "the documents at {pointer} are not a list: {}",
                quote(&other.to_string())
            )));
        }
    };
    let spans = match reply.pointer(&shape.spans) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|item| serde_json::from_value::<ServiceSpan>(item.clone()).ok())
            .map(ServiceSpan::into_span)
            .collect(),
        _ => Vec::new(),
    };
    let prompt = reply
        .get("prompt")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    Ok((answer, documents, spans, prompt))
}

/// "the response's top-level keys: a, b" (or what the response is instead).
fn top_level_keys(value: &Value) -> String {
    match value {
        Value::Object(map) if map.is_empty() => "the response is an empty object".into(),
        Value::Object(map) => format!(
            "the response's top-level keys: {}",
            map.keys().take(20).cloned().collect::<Vec<_>>().join(", ")
        ),
        other => format!("the response is {}", quote(&other.to_string())),
    }
}

/// One document as services return it: a LangChain `Document` (`page_content`,
/// `metadata`, optional `id`), `{id, text | content, metadata, score}`, or a bare string.
/// Its id comes from `document_id`, else `id`, else `metadata.id`; without one the run
/// fails, naming the setting, unless the chain takes positional ids.
fn document(position: usize, item: &Value, shape: &ReplyShape) -> Result<RetrievedDoc, ChainError> {
    let no_id = |keys: String| {
        ChainError::Reply(format!(
            "document {position} has no id{} ({keys}): set `document_id:` to the pointer of its id inside the document (e.g. /metadata/source), or `positional_ids: true`",
            shape
                .document_id
                .as_deref()
                .map(|p| format!(" at {p}"))
                .unwrap_or_default()
        ))
    };
    if let Value::String(text) = item {
        if !shape.positional_ids {
            return Err(no_id("it is a bare string".into()));
        }
        return Ok(RetrievedDoc {
            id: position.to_string(),
            text: text.clone(),
            metadata: Map::new(),
            score: None,
        });
    }
    let object = item.as_object().ok_or_else(|| {
        ChainError::Reply(format!(
            "document {position} is neither an object nor a string: {}",
            quote(&item.to_string())
        ))
    })?;
    let as_id = |v: &Value| match v {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let found = match &shape.document_id {
        Some(pointer) => item.pointer(pointer).and_then(as_id),
        None => object
            .get("id")
            .and_then(as_id)
            .or_else(|| item.pointer("/metadata/id").and_then(as_id)),
    };
    let id = match found {
        Some(id) => id,
        None if shape.positional_ids => position.to_string(),
        None => {
            let mut keys: Vec<String> = object.keys().cloned().collect();
            if let Some(metadata) = object.get("metadata").and_then(Value::as_object) {
                keys.extend(metadata.keys().map(|k| format!("metadata.{k}")));
            }
            keys.truncate(20);
            return Err(no_id(format!("its keys: {}", keys.join(", "))));
        }
    };
    let text = ["text", "page_content", "content"]
        .iter()
        .find_map(|key| object.get(*key).and_then(Value::as_str))
        .unwrap_or_default()
        .to_owned();
    Ok(RetrievedDoc {
        id,
        text,
        metadata: object
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        score: object.get("score").and_then(Value::as_f64),
    })
}

/// A span as a service reports it: ragprobe's own field names or OTLP's.
#[derive(Debug, Deserialize)]
struct ServiceSpan {
    #[serde(alias = "spanId")]
    span_id: Option<String>,
    #[serde(alias = "parentSpanId", default)]
    parent_span_id: Option<String>,
    name: String,
    #[serde(default)]
    kind: Option<String>,
    #[serde(alias = "start_time_unix_nano", alias = "startTimeUnixNano")]
    start_ns: u64,
    #[serde(alias = "end_time_unix_nano", alias = "endTimeUnixNano")]
    end_ns: u64,
    #[serde(default)]
    attributes: Map<String, Value>,
    #[serde(default)]
    error: Option<String>,
}

impl ServiceSpan {
    fn into_span(self) -> Span {
        let kind = match self.kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
            Some("RETRIEVER") => SpanKind::Retriever,
            Some("LLM" | "CHAT_MODEL") => SpanKind::Llm,
            Some("EMBEDDING") => SpanKind::Embedding,
            Some("PROMPT" | "PARSER") => SpanKind::Prompt,
            _ => SpanKind::Chain,
        };
        Span {
            span_id: self.span_id.unwrap_or_default(),
            parent_span_id: self.parent_span_id.filter(|p| !p.is_empty()),
            name: self.name,
            kind,
            start_ns: self.start_ns,
            end_ns: self.end_ns.max(self.start_ns),
            status: match self.error {
                Some(message) => SpanStatus::Error { message },
                None => SpanStatus::Ok,
            },
            attributes: self.attributes,
            service: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_by_pointer_with_lenient_documents() {
        let shape = ReplyShape::new(None, Some("/data/answer"), Some("/data/docs"), None)
            .with_document_ids(None, true);
        let reply = json!({"data": {"answer": "yes", "docs": [
            {"id": 4, "page_content": "aws", "metadata": {"docs": "aws"}, "score": 0.5},
            "bare text",
        ]}});
        let (answer, docs, spans, _) = parse_reply(&reply, &shape).expect("parse");
        assert_eq!(answer, "yes");
        assert_eq!(docs[0].id, "4");
        assert_eq!(docs[0].text, "aws");
        assert_eq!(docs[0].score, Some(0.5));
        assert_eq!(docs[0].metadata.get("docs"), Some(&json!("aws")));
        assert_eq!(docs[1].id, "1", "positional ids when the chain takes them");
        assert_eq!(docs[1].score, None, "no score is no score, not 0");
        assert!(spans.is_empty());
    }

    #[test]
    fn a_document_without_an_id_names_the_setting() {
        let shape = ReplyShape::new(None, None, None, None);
        let reply = json!({"answer": "a", "documents": [
            {"page_content": "t", "metadata": {"source": "db-1.md"}, "type": "Document"},
        ]});
        let err = parse_reply(&reply, &shape).expect_err("no id");
        let text = err.to_string();
        assert!(text.contains("document 0 has no id"), "{text}");
        assert!(
            text.contains("metadata.source") && text.contains("document_id"),
            "{text}"
        );
        let shape = shape.with_document_ids(Some("/metadata/source"), false);
        let (_, docs, _, _) = parse_reply(&reply, &shape).expect("id by pointer");
        assert_eq!(docs[0].id, "db-1.md");
        let bare = json!({"answer": "a", "documents": ["text"]});
        assert!(parse_reply(&bare, &ReplyShape::new(None, None, None, None)).is_err());
    }

    #[test]
    fn presets_read_langserve_and_retrievalqa_replies() {
        let langserve = ReplyShape::new(Some(Preset::Langserve), None, None, None);
        let reply = json!({"output": {"answer": "Use SQL warehouses.", "context": [
            {"page_content": "x", "metadata": {"docs": "aws"}, "id": "4", "type": "Document"}
        ]}, "metadata": {"run_id": "r"}});
        let (answer, docs, _, _) = parse_reply(&reply, &langserve).expect("langserve");
        assert_eq!(answer, "Use SQL warehouses.");
        assert_eq!(docs[0].id, "4");
        // A plain string output carries no documents: a broken reply for a chain told to
        // read them there, fine for one whose documents come from elsewhere.
        let err = parse_reply(&json!({"output": "plain"}), &langserve).expect_err("no documents");
        assert!(
            err.to_string()
                .contains("no documents at /output/source_documents"),
            "{err}"
        );
        let elsewhere = langserve.clone().with_documents_from(DocumentsFrom::Spans);
        let (answer, _, _, _) =
            parse_reply(&json!({"output": "plain"}), &elsewhere).expect("string output");
        assert_eq!(answer, "plain");
        let qa = ReplyShape::new(Some(Preset::Retrievalqa), None, None, None);
        let reply = json!({"query": "q", "result": "r", "source_documents": [
            {"page_content": "x", "metadata": {"id": 7}}
        ]});
        let (answer, docs, _, _) = parse_reply(&reply, &qa).expect("retrievalqa");
        assert_eq!((answer.as_str(), docs[0].id.as_str()), ("r", "7"));
        // A preset that does not match: one line, the pointers tried, the keys found.
        let err = parse_reply(&json!({"answer": "a"}), &qa).expect_err("mismatch");
        assert_eq!(
            err.to_string(),
            "malformed response: no answer at /result (the response's top-level keys: answer)"
        );
    }

    #[test]
    fn a_reply_without_an_answer_is_malformed() {
        let shape = ReplyShape::new(None, None, None, None);
        let err = parse_reply(&json!({"text": "x"}), &shape).expect_err("no answer");
        assert!(err.to_string().contains("no answer at /answer"), "{err}");
        let err = parse_reply(&json!({"answer": 3}), &shape).expect_err("not a string");
        assert!(err.to_string().contains("not a string"), "{err}");
    }

    #[test]
    fn service_spans_keep_their_kind_and_times() {
        let shape = ReplyShape::new(None, None, None, None);
        let reply = json!({"answer": "a", "documents": [], "spans": [
            {"span_id": "00000000000000aa", "parent_span_id": "00000000000000bb", "name": "search",
             "kind": "RETRIEVER", "start_ns": 5, "end_ns": 9, "attributes": {"k": 2}},
            {"name": "no times"},
        ]});
        let (_, _, spans, _) = parse_reply(&reply, &shape).expect("parse");
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].kind, SpanKind::Retriever);
        assert_eq!(spans[0].duration_ns(), 4);
    }
}
