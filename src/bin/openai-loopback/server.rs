//! A loopback server that speaks the OpenAI chat-completions and embeddings protocols,
//! for tests and benchmarks where no model endpoint can be reached. It answers
//! deterministically from the prompt: the `[id] text` context lines are read back and the
//! answer is composed from their sentences by the extractive reference generator, with
//! the request's `seed` and `temperature` (so the same request gets the same answer, and
//! a sampled answer varies across seeds as a model's would). Embeddings are the hashing
//! embedder's.
//!
//! Faults are settable: latency with jitter, a rate of 5xx errors, bursts of 429 with
//! `Retry-After`, and a rate of malformed bodies. Which request gets which fault follows
//! from `--seed` and the request's arrival number. It binds loopback addresses only.
//!
//! HTTP/1.1 is spoken by hand (keep-alive, `Content-Length` bodies): enough for every
//! client ragprobe and promptfoo use, and no server framework in the dependency tree.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use ragprobe::chain::corpus::Document;
use ragprobe::chain::embed::hashing;
use ragprobe::chain::extractive::Extractive;
use ragprobe::seed::stable_hash;

#[derive(Debug, Clone, clap::Args)]
pub struct Faults {
    /// Added wait before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Uniform extra wait of up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    pub jitter_ms: u64,
    /// Fraction of requests answered with a 500 or 503 error.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Fraction of requests answered 200 with a body that breaks the protocol.
    #[arg(long, default_value_t = 0.0)]
    pub malformed_rate: f64,
    /// Answer this many requests in a row with 429 ...
    #[arg(long, default_value_t = 0)]
    pub burst_429: u64,
    /// ... at the start of every this many requests (0: only the first burst).
    #[arg(long, default_value_t = 0)]
    pub burst_every: u64,
    /// `Retry-After` sent with a 429, in seconds (fractions allowed).
    #[arg(long, default_value_t = 1.0)]
    pub retry_after: f64,
    /// Seeds which requests get faults.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Longest answer, in sentences.
    #[arg(long, default_value_t = 2)]
    pub max_sentences: usize,
    /// Judge mode (a prompt asking for a `{"verdict", …}` JSON reply): the share of verdicts
    /// turned around (which, per request seed), so repeated judgements can disagree.
    #[arg(long, default_value_t = 0.0)]
    pub judge_flip_rate: f64,
    /// Judge mode: the share of replies that hold no JSON verdict.
    #[arg(long, default_value_t = 0.0)]
    pub judge_malformed_rate: f64,
    /// Answer 400 to a request with `response_format`, as servers without structured
    /// output do.
    #[arg(long)]
    pub refuse_response_format: bool,
    /// Fraction of chat answers that get one sentence no context line supports appended
    /// (from a fixed list; which answers, and which sentence, follow from the request's
    /// seed), so that groundedness checks have something to catch.
    #[arg(long, default_value_t = 0.0)]
    pub unsupported_rate: f64,
    /// Embedding length.
    #[arg(long, default_value_t = 256)]
    pub dims: usize,
    /// Answer every model request 401 with a body that quotes its Authorization header,
    /// as some gateways do (for tests that secrets never reach a report).
    #[arg(long)]
    pub echo_auth_401: bool,
    /// Answer every model request with a chunked body that never ends (for tests that a
    /// client caps what it reads).
    #[arg(long)]
    pub endless_body: bool,
}

#[derive(Debug, Default)]
struct Stats {
    requests: AtomicU64,
    chat: AtomicU64,
    embeddings: AtomicU64,
    errors: AtomicU64,
    throttled: AtomicU64,
    malformed: AtomicU64,
}

struct Server {
    faults: Faults,
    stats: Stats,
}

/// What one request is answered with.
enum Fault {
    None,
    Error(u16),
    Throttle,
    Malformed(u64),
}

/// Binds `addr` (loopback only) and serves until the process ends. Calls `ready` with
/// the bound address once accepting.
pub async fn serve(
    addr: SocketAddr,
    faults: Faults,
    ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    if !is_loopback(addr.ip()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is not a loopback address; this server binds loopback only",
                addr.ip()
            ),
        ));
    }
    let listener = TcpListener::bind(addr).await?;
    ready(listener.local_addr()?);
    let server = Arc::new(Server {
        faults,
        stats: Stats::default(),
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            // A client that goes away mid-request is not the server's problem.
            let _ = server.connection(stream).await;
        });
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.is_loopback()
}

impl Server {
    async fn connection(&self, stream: TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).await? == 0 {
                return Ok(());
            }
            let mut parts = request_line.split_whitespace();
            let method = parts.next().unwrap_or_default().to_owned();
            let path = parts.next().unwrap_or_default().to_owned();
            let mut length = 0usize;
            let mut close = false;
            let mut authorization = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    let value = value.trim();
                    match name.trim().to_ascii_lowercase().as_str() {
                        "content-length" => length = value.parse().unwrap_or(0),
                        "connection" => close = value.eq_ignore_ascii_case("close"),
                        "authorization" => authorization = value.to_owned(),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).await?;
            if self.faults.endless_body && method == "POST" {
                return endless(&mut write).await;
            }
            let (status, headers, text) = if self.faults.echo_auth_401 && method == "POST" {
                let message = format!("invalid credentials: Authorization: {authorization}");
                (401, Vec::new(), error_body("invalid_api_key", &message))
            } else {
                self.respond(&method, &path, &body).await
            };
            let mut head = format!(
                "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                reason(status),
                text.len()
            );
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str(if close {
                "connection: close\r\n\r\n"
            } else {
                "connection: keep-alive\r\n\r\n"
            });
            write.write_all(head.as_bytes()).await?;
            write.write_all(text.as_bytes()).await?;
            if close {
                return Ok(());
            }
        }
    }

    async fn respond(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> (u16, Vec<(String, String)>, String) {
        let path = path.split('?').next().unwrap_or_default();
        match (method, path) {
            ("GET", "/health") => return (200, Vec::new(), r#"{"status":"ok"}"#.into()),
            ("GET", "/stats") => {
                let s = &self.stats;
                let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
                let stats = json!({
                    "requests": get(&s.requests), "chat": get(&s.chat),
                    "embeddings": get(&s.embeddings), "errors": get(&s.errors),
                    "throttled": get(&s.throttled), "malformed": get(&s.malformed),
                });
                return (200, Vec::new(), stats.to_string());
            }
            _ => {}
        }
        let endpoint = match (method, path.trim_start_matches("/v1")) {
            ("POST", "/chat/completions") => Endpoint::Chat,
            ("POST", "/embeddings") => Endpoint::Embeddings,
            _ => {
                return (
                    404,
                    Vec::new(),
                    error_body("not_found", &format!("no route for {method} {path}")),
                );
            }
        };
        let number = self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let fault = self.fault(number);
        let wait = self.faults.latency_ms
            + if self.faults.jitter_ms > 0 {
                stable_hash(&[
                    b"jitter",
                    &self.faults.seed.to_le_bytes(),
                    &number.to_le_bytes(),
                ]) % (self.faults.jitter_ms + 1)
            } else {
                0
            };
        if wait > 0 {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        match fault {
            Fault::Throttle => {
                self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                return (
                    429,
                    vec![("retry-after".into(), format!("{}", self.faults.retry_after))],
                    error_body(
                        "rate_limit_exceeded",
                        "Rate limit reached; retry after the given time.",
                    ),
                );
            }
            Fault::Error(status) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                return (
                    status,
                    Vec::new(),
                    error_body(
                        "server_error",
                        "The server had an error while processing your request.",
                    ),
                );
            }
            Fault::Malformed(kind) => {
                self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                let text = match kind % 3 {
                    0 => r#"{"id": "chatcmpl-x", "choices": [{"message": {"content": "trunc"#
                        .to_owned(),
                    1 => "<html><body>502 Bad Gateway</body></html>".to_owned(),
                    _ => r#"{"id": "chatcmpl-x", "object": "chat.completion"}"#.to_owned(),
                };
                return (200, Vec::new(), text);
            }
            Fault::None => {}
        }
        let request: Value = match serde_json::from_slice(body) {
            Ok(value) => value,
            Err(err) => {
                return (
                    400,
                    Vec::new(),
                    error_body("invalid_request_error", &format!("body is not JSON: {err}")),
                );
            }
        };
        match endpoint {
            Endpoint::Chat => {
                self.stats.chat.fetch_add(1, Ordering::Relaxed);
                match self.chat(&request) {
                    Ok(reply) => (200, Vec::new(), reply.to_string()),
                    Err(message) => (
                        400,
                        Vec::new(),
                        error_body("invalid_request_error", &message),
                    ),
                }
            }
            Endpoint::Embeddings => {
                self.stats.embeddings.fetch_add(1, Ordering::Relaxed);
                match self.embeddings(&request) {
                    Ok(reply) => (200, Vec::new(), reply.to_string()),
                    Err(message) => (
                        400,
                        Vec::new(),
                        error_body("invalid_request_error", &message),
                    ),
                }
            }
        }
    }

    /// A judge's reply, by a documented rule: with context lines in the prompt, the answer
    /// (its `Answer:` line) fails when one of its sentences is found in no context line, and
    /// passes otherwise; without context lines it passes. `--judge-flip-rate` turns verdicts
    /// around and `--judge-malformed-rate` drops the JSON, per request seed. Without
    /// `response_format` the JSON comes inside prose, as models without structured output
    /// write it.
    fn judge_reply(&self, prompt: &str, seed: u64, structured: bool) -> String {
        let draw = |what: &[u8]| {
            (stable_hash(&[what, &seed.to_le_bytes(), prompt.as_bytes()]) % 1_000_000) as f64
                / 1_000_000.0
        };
        if draw(b"malformed") < self.faults.judge_malformed_rate {
            return "I think this answer is mostly fine.".into();
        }
        let (_, documents) = read_prompt(prompt);
        let answer = prompt
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("Answer:"))
            .unwrap_or_default()
            .trim();
        let sentences = ragprobe::chain::text::sentences(answer);
        let unsupported = sentences
            .iter()
            .find(|s| !documents.is_empty() && !documents.iter().any(|d| d.text.contains(**s)));
        let supported = sentences.len() - usize::from(unsupported.is_some());
        let mut passed = unsupported.is_none();
        let mut reason = match unsupported {
            Some(sentence) => format!("the sentence {sentence:?} is in no context line"),
            None if documents.is_empty() => "no context to check the answer against".to_owned(),
            None => "every sentence is in a context line".to_owned(),
        };
        if draw(b"flip") < self.faults.judge_flip_rate {
            passed = !passed;
            reason = format!("(flipped) {reason}");
        }
        let verdict = json!({
            "verdict": if passed { "pass" } else { "fail" },
            "reason": reason,
            "score": supported as f64 / sentences.len().max(1) as f64,
        });
        if structured {
            verdict.to_string()
        } else {
            format!("Here is my verdict:\n```json\n{verdict}\n```")
        }
    }

    /// The sentence appended to this answer, if it gets one.
    fn unsupported_sentence(&self, seed: u64, prompt: &str) -> Option<&'static str> {
        let draw = stable_hash(&[b"unsupported", &seed.to_le_bytes(), prompt.as_bytes()]);
        let chance = (draw % 1_000_000) as f64 / 1_000_000.0;
        (chance < self.faults.unsupported_rate)
            .then(|| UNSUPPORTED[(draw / 1_000_000) as usize % UNSUPPORTED.len()])
    }

    fn fault(&self, number: u64) -> Fault {
        let f = &self.faults;
        if f.burst_429 > 0 {
            let position = if f.burst_every > 0 {
                number % f.burst_every
            } else {
                number
            };
            if position < f.burst_429 {
                return Fault::Throttle;
            }
        }
        let draw = |salt: &[u8]| {
            (stable_hash(&[salt, &f.seed.to_le_bytes(), &number.to_le_bytes()]) >> 11) as f64
                / (1u64 << 53) as f64
        };
        if draw(b"error") < f.error_rate {
            return Fault::Error(if number.is_multiple_of(2) { 500 } else { 503 });
        }
        if draw(b"malformed") < f.malformed_rate {
            return Fault::Malformed(number);
        }
        Fault::None
    }

    fn chat(&self, request: &Value) -> Result<Value, String> {
        let messages = request
            .get("messages")
            .and_then(Value::as_array)
            .ok_or("`messages` must be a list")?;
        let prompt = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .ok_or("no user message with text content")?;
        let model = request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("loopback");
        let temperature = request
            .get("temperature")
            .and_then(Value::as_f64)
            .unwrap_or(1.0);
        let seed = request
            .get("seed")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| stable_hash(&[prompt.as_bytes()]));
        if self.faults.refuse_response_format && request.get("response_format").is_some() {
            return Err("response_format is not supported by this server".into());
        }
        if prompt.contains("{\"verdict\"") {
            let structured = request.get("response_format").is_some();
            let content = self.judge_reply(prompt, seed, structured);
            return Ok(json!({
                "id": format!("chatcmpl-{seed:016x}"),
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt.split_whitespace().count(), "completion_tokens": content.split_whitespace().count(), "total_tokens": 0},
            }));
        }
        let (question, documents) = read_prompt(prompt);
        let refs: Vec<&Document> = documents.iter().collect();
        let generator = Extractive {
            temperature,
            max_sentences: self.faults.max_sentences,
        };
        let mut rng = fastrand::Rng::with_seed(seed);
        let generation = generator.generate(&question, &refs, &mut rng);
        let mut answer = generation.answer;
        if let Some(extra) = self.unsupported_sentence(seed, prompt) {
            answer = format!("{answer} {extra}").trim().to_owned();
        }
        let mut finish_reason = "stop";
        if let Some(max_tokens) = request.get("max_tokens").and_then(Value::as_u64) {
            let words: Vec<&str> = answer.split_whitespace().collect();
            if words.len() as u64 > max_tokens {
                answer = words[..max_tokens as usize].join(" ");
                finish_reason = "length";
            }
        }
        let prompt_tokens: usize = messages
            .iter()
            .filter_map(|m| m.get("content").and_then(Value::as_str))
            .map(|t| t.split_whitespace().count())
            .sum();
        let completion_tokens = answer.split_whitespace().count();
        Ok(json!({
            "id": format!("chatcmpl-{seed:016x}"),
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": finish_reason,
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }))
    }

    fn embeddings(&self, request: &Value) -> Result<Value, String> {
        let inputs: Vec<String> = match request.get("input") {
            Some(Value::String(text)) => vec![text.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or("`input` must be a string or a list of strings")?,
            _ => return Err("`input` must be a string or a list of strings".into()),
        };
        let dims = request
            .get("dimensions")
            .and_then(Value::as_u64)
            .map_or(self.faults.dims, |d| d as usize);
        let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
        let data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(index, text)| json!({"object": "embedding", "index": index, "embedding": hashing(text, dims)}))
            .collect();
        Ok(json!({
            "object": "list",
            "data": data,
            "model": request.get("model").and_then(Value::as_str).unwrap_or("loopback-embedding"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }))
    }
}

enum Endpoint {
    Chat,
    Embeddings,
}

/// The question and the `[id] text` context lines of a prompt. Without a `Question:`
/// line the whole prompt is the question.
fn read_prompt(prompt: &str) -> (String, Vec<Document>) {
    let mut question = None;
    let mut documents = Vec::new();
    for line in prompt.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("Question:") {
            question = Some(rest.trim().to_owned());
        } else if let Some(rest) = line.strip_prefix('[')
            && let Some((id, text)) = rest.split_once(']')
        {
            documents.push(Document {
                id: id.trim().to_owned(),
                text: text.trim().to_owned(),
                metadata: Default::default(),
            });
        }
    }
    (question.unwrap_or_else(|| prompt.to_owned()), documents)
}

/// A 200 with a chunked body of `{"x": "xxxx…` that goes on until the client hangs up.
async fn endless(write: &mut tokio::net::tcp::OwnedWriteHalf) -> std::io::Result<()> {
    write
        .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
        .await?;
    let chunk = vec![b'x'; 1 << 16];
    let mut framed = format!("{:x}\r\n{{\"x\": \"", chunk.len() + 7).into_bytes();
    framed.extend_from_slice(&chunk);
    framed.extend_from_slice(b"\r\n");
    write.write_all(&framed).await?;
    let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
    framed.extend_from_slice(&chunk);
    framed.extend_from_slice(b"\r\n");
    loop {
        // Ends with an error when the client closes the connection.
        write.write_all(&framed).await?;
    }
}

/// Claims no document of the reference corpus makes. They share words with it in varying
/// measure; the last one negates a document with its own words, which a lexical
/// groundedness check cannot tell from support (the README says so).
const UNSUPPORTED: &[&str] = &[
    "Databricks stores every database in a proprietary format that only its own clusters can read.",
    "Serverless SQL warehouses are free for the first hour of every day.",
    "Delta files are compressed twice to halve your storage bill.",
    "Queries never cost more than one dollar, whatever the load.",
    "Databases are not built on Delta Lake.",
];

fn error_body(kind: &str, message: &str) -> String {
    json!({"error": {"message": message, "type": kind, "code": kind}}).to_string()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_read_back_into_question_and_documents() {
        let (question, docs) = read_prompt(
            "Answer.\nContext:\n[2] Databricks stores data.\n[4] AWS t4g.micro is cheap.\n\nQuestion: How much?\nAnswer:",
        );
        assert_eq!(question, "How much?");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].id, "4");
        assert_eq!(docs[1].text, "AWS t4g.micro is cheap.");
    }

    fn default_faults() -> Faults {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            faults: Faults,
        }
        <Defaults as clap::Parser>::parse_from(["openai-loopback"]).faults
    }

    #[test]
    fn unsupported_sentences_follow_their_rate_and_the_seed() {
        let server = |rate: f64| Server {
            faults: Faults {
                unsupported_rate: rate,
                ..default_faults()
            },
            stats: Stats::default(),
        };
        let (never, sometimes, always) = (server(0.0), server(0.3), server(1.0));
        let added = (0..1000u64)
            .filter(|seed| sometimes.unsupported_sentence(*seed, "p").is_some())
            .count();
        assert!((250..350).contains(&added), "{added} of 1000 at 0.3");
        assert!((0..100u64).all(|s| never.unsupported_sentence(s, "p").is_none()));
        assert!((0..100u64).all(|s| always.unsupported_sentence(s, "p").is_some()));
        assert_eq!(
            sometimes.unsupported_sentence(42, "p"),
            sometimes.unsupported_sentence(42, "p"),
            "the same request gets the same answer"
        );
    }

    #[test]
    fn bursts_of_429_repeat_and_other_faults_follow_their_rates() {
        let faults = Faults {
            latency_ms: 0,
            jitter_ms: 0,
            error_rate: 0.1,
            malformed_rate: 0.0,
            burst_429: 3,
            burst_every: 10,
            retry_after: 1.0,
            seed: 7,
            max_sentences: 2,
            unsupported_rate: 0.0,
            judge_flip_rate: 0.0,
            judge_malformed_rate: 0.0,
            refuse_response_format: false,
            dims: 8,
            echo_auth_401: false,
            endless_body: false,
        };
        let server = Server {
            faults,
            stats: Stats::default(),
        };
        let throttled: Vec<u64> = (0..30)
            .filter(|n| matches!(server.fault(*n), Fault::Throttle))
            .collect();
        assert_eq!(throttled, vec![0, 1, 2, 10, 11, 12, 20, 21, 22]);
        let errors = (0..10_000)
            .filter(|n| matches!(server.fault(*n), Fault::Error(_)))
            .count();
        // 70% of requests are outside bursts; 10% of those fail.
        assert!((600..800).contains(&errors), "{errors}");
    }

    #[test]
    fn only_loopback_addresses() {
        assert!(is_loopback("127.0.0.1".parse().expect("ip")));
        assert!(is_loopback("::1".parse().expect("ip")));
        assert!(!is_loopback("0.0.0.0".parse().expect("ip")));
    }
}
