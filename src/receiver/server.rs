//! OTLP/HTTP on a loopback socket: `POST /v1/traces` with a protobuf or JSON body
//! (optionally gzip-compressed), answered as the OTLP spec says (200 with an empty
//! `ExportTraceServiceResponse` in the request's encoding; 400 for a body that does not
//! decode, 413 beyond the size bound, 415 for another media type, 404 for another path,
//! 503 with `Retry-After` when the receiver's memory budget is spent).
//!
//! HTTP/1.1 is spoken by hand (keep-alive, `Content-Length` and chunked bodies,
//! `Expect: 100-continue`): OTLP exporters need no more, and a server framework would be
//! the largest dependency in the tree for one endpoint.
//!
//! Bounded as a whole, not per request: at most [`MAX_CONNECTIONS`] connections at once
//! (a new one, when all are taken, closes the connection idle longest; with none idle it
//! waits in the kernel's backlog, so idle sockets cannot lock exporters out), an idle
//! connection closes after
//! [`IDLE_TIMEOUT`], a request must arrive whole within [`REQUEST_DEADLINE`], and every byte
//! a body (or its decompression) takes is charged to one budget shared by all connections
//! ([`BUDGET_BYTES`]) as it arrives, never allocated from a header's say-so. Accept errors
//! (out of file descriptors) back off instead of spinning, so the receiver cannot starve
//! the runs.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::receiver::decode;
use crate::receiver::inbox::Inbox;

/// Largest request body taken, compressed or not.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Largest request head (request line and headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Bytes of bodies (and their decompression) held at once over every connection.
pub const BUDGET_BYTES: usize = 256 * 1024 * 1024;
/// A kept-alive connection with no new request for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A request's head and body must arrive within this, once its first line has.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// The budget is counted in units of this many bytes.
const UNIT: usize = 1024;
/// Bodies are read (and charged) this much at a time.
const READ_STEP: usize = 64 * 1024;

/// The receiver's shared limits: connections, bytes, and how long a connection may idle or
/// a request take.
#[derive(Clone)]
pub struct Budget {
    connections: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    idle: Duration,
    deadline: Duration,
    waiting: Arc<Waiting>,
}

/// Connections waiting for their next request, oldest first, each with the bell that
/// closes it when a new connection needs its slot.
#[derive(Default)]
struct Waiting {
    next: AtomicU64,
    bells: Mutex<BTreeMap<u64, Arc<Notify>>>,
}

impl Waiting {
    fn enter(&self) -> (u64, Arc<Notify>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let bell = Arc::new(Notify::new());
        if let Ok(mut bells) = self.bells.lock() {
            bells.insert(id, Arc::clone(&bell));
        }
        (id, bell)
    }

    fn leave(&self, id: u64) {
        if let Ok(mut bells) = self.bells.lock() {
            bells.remove(&id);
        }
    }

    /// Rings the connection idle longest; false when none is idle.
    fn evict_oldest(&self) -> bool {
        let oldest = self
            .bells
            .lock()
            .ok()
            .and_then(|mut bells| bells.pop_first());
        match oldest {
            Some((_, bell)) => {
                // notify_one keeps the call for a connection not yet listening.
                bell.notify_one();
                true
            }
            None => false,
        }
    }
}

impl Budget {
    pub fn new(connections: usize, bytes: usize) -> Budget {
        Budget {
            connections: Arc::new(Semaphore::new(connections)),
            bytes: Arc::new(Semaphore::new(bytes.div_ceil(UNIT))),
            idle: IDLE_TIMEOUT,
            deadline: REQUEST_DEADLINE,
            waiting: Arc::default(),
        }
    }

    /// The same with other timeouts (tests).
    pub fn with_timeouts(mut self, idle: Duration, deadline: Duration) -> Budget {
        self.idle = idle;
        self.deadline = deadline;
        self
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(MAX_CONNECTIONS, BUDGET_BYTES)
    }
}

/// Bytes charged to the budget for one request, given back when it is dropped.
#[derive(Default)]
struct Charge {
    permits: Vec<OwnedSemaphorePermit>,
}

impl Charge {
    /// Charges `bytes` more, or says the budget is spent.
    fn take(&mut self, budget: &Budget, bytes: usize) -> Result<(), Refusal> {
        match Arc::clone(&budget.bytes).try_acquire_many_owned(bytes.div_ceil(UNIT) as u32) {
            Ok(permit) => {
                self.permits.push(permit);
                Ok(())
            }
            Err(_) => Err(busy()),
        }
    }
}

fn busy() -> Refusal {
    refuse(
        503,
        "the receiver's memory budget is spent by other requests: retry shortly",
    )
}

pub async fn serve(listener: TcpListener, inbox: Arc<Inbox>) {
    serve_within(listener, inbox, Budget::default()).await;
}

pub async fn serve_within(listener: TcpListener, inbox: Arc<Inbox>, budget: Budget) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(10);
                stream
            }
            Err(_) => {
                // Out of descriptors, or the like: wait instead of spinning on the error.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // All slots taken: the connection idle longest makes room, so sockets that send
        // nothing cannot lock an exporter out. With none idle, this one waits for a slot
        // and further connections wait in the kernel's backlog, holding no descriptor of
        // ours.
        let slot = match Arc::clone(&budget.connections).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                budget.waiting.evict_oldest();
                let Ok(slot) = Arc::clone(&budget.connections).acquire_owned().await else {
                    return;
                };
                slot
            }
        };
        let _ = stream.set_nodelay(true);
        let inbox = Arc::clone(&inbox);
        let budget = budget.clone();
        tokio::spawn(async move {
            // An exporter that hangs up mid-request loses only that request.
            let _ = connection(stream, &inbox, &budget).await;
            drop(slot);
        });
    }
}

struct Request {
    method: String,
    path: String,
    content_type: String,
    gzip: bool,
    body: Result<Vec<u8>, Refusal>,
    close: bool,
    charge: Charge,
}

#[derive(Debug)]
struct Refusal {
    status: u16,
    message: String,
}

fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

async fn connection(stream: TcpStream, inbox: &Inbox, budget: &Budget) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let Some(mut request) = read_request(&mut reader, &mut write, budget).await? else {
            return Ok(());
        };
        let json = request.content_type.starts_with("application/json");
        let outcome = handle(&mut request, json, budget).map(|spans| inbox.deliver(spans));
        // The bytes are given back once the spans are in the inbox (which has its own
        // bounds) or refused.
        drop(std::mem::take(&mut request.charge));
        inbox.count_request(outcome.is_ok());
        let (status, content_type, body) = match outcome {
            Ok(()) if json => (200, "application/json", b"{}".to_vec()),
            // An empty ExportTraceServiceResponse encodes to no bytes.
            Ok(()) => (200, "application/x-protobuf", Vec::new()),
            Err(refusal) => (
                refusal.status,
                "application/json",
                serde_json::json!({"code": 3, "message": refusal.message})
                    .to_string()
                    .into_bytes(),
            ),
        };
        let close = request.close || matches!(status, 400 | 413 | 503);
        let retry_after = if status == 503 {
            "retry-after: 1\r\n"
        } else {
            ""
        };
        let head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n{retry_after}connection: {}\r\n\r\n",
            reason(status),
            body.len(),
            if close { "close" } else { "keep-alive" }
        );
        write.write_all(head.as_bytes()).await?;
        write.write_all(&body).await?;
        if close {
            return Ok(());
        }
    }
}

fn handle(
    request: &mut Request,
    json: bool,
    budget: &Budget,
) -> Result<Vec<decode::Received>, Refusal> {
    if request.path.split('?').next() != Some("/v1/traces") {
        return Err(refuse(
            404,
            format!(
                "no route for {} {}: ragprobe receives traces at /v1/traces",
                request.method, request.path
            ),
        ));
    }
    if request.method != "POST" {
        return Err(refuse(405, "send traces with POST"));
    }
    let body = std::mem::replace(&mut request.body, Ok(Vec::new()))?;
    let body = if request.gzip {
        gunzip(&body, budget, &mut request.charge)?
    } else {
        body
    };
    let protobuf = request.content_type.starts_with("application/x-protobuf");
    if !json && !protobuf {
        return Err(refuse(
            415,
            format!(
                "content-type `{}`: send application/x-protobuf or application/json",
                request.content_type
            ),
        ));
    }
    let decoded = if json {
        decode::json(&body)
    } else {
        decode::protobuf(&body)
    };
    decoded.map_err(|err| refuse(400, err.to_string()))
}

/// Decompresses in steps, charging each to the budget, up to the body bound.
fn gunzip(body: &[u8], budget: &Budget, charge: &mut Charge) -> Result<Vec<u8>, Refusal> {
    let mut decoder = flate2::read::GzDecoder::new(body);
    let mut out = Vec::new();
    let mut step = vec![0u8; READ_STEP];
    loop {
        let n = decoder
            .read(&mut step)
            .map_err(|err| refuse(400, format!("the gzip body does not decompress: {err}")))?;
        if n == 0 {
            return Ok(out);
        }
        if out.len() + n > MAX_BODY_BYTES {
            return Err(refuse(
                413,
                format!("the body is over {MAX_BODY_BYTES} bytes once decompressed"),
            ));
        }
        charge.take(budget, n)?;
        out.extend_from_slice(&step[..n]);
    }
}

/// The next request on the connection; `None` when the client closed it or stayed idle.
async fn read_request<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut BufReader<R>,
    write: &mut W,
    budget: &Budget,
) -> std::io::Result<Option<Request>> {
    let mut head_bytes = 0usize;
    let mut line = String::new();
    let (id, bell) = budget.waiting.enter();
    let first = tokio::select! {
        read = tokio::time::timeout(budget.idle, read_line(reader, &mut line, &mut head_bytes)) => Some(read),
        () = bell.notified() => None,
    };
    budget.waiting.leave(id);
    match first {
        // Idle too long, closed by the client, or its slot given to a new connection.
        None | Some(Err(_)) | Some(Ok(Ok(0))) => return Ok(None),
        Some(Ok(result)) => result?,
    };
    match tokio::time::timeout(
        budget.deadline,
        read_rest(reader, write, budget, &line, head_bytes),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the request did not arrive in time",
        )),
    }
}

/// Headers and body after the request line.
async fn read_rest<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut BufReader<R>,
    write: &mut W,
    budget: &Budget,
    request_line: &str,
    mut head_bytes: usize,
) -> std::io::Result<Option<Request>> {
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut request = Request {
        method,
        path,
        content_type: String::new(),
        gzip: false,
        body: Ok(Vec::new()),
        close: false,
        charge: Charge::default(),
    };
    let mut length: Option<Result<usize, ()>> = None;
    let mut chunked = false;
    let mut continue_expected = false;
    let mut line = String::new();
    loop {
        line.clear();
        if read_line(reader, &mut line, &mut head_bytes).await? == 0 {
            return Ok(None);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = Some(value.parse().map_err(|_| ())),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "content-type" => request.content_type = value.to_ascii_lowercase(),
            "content-encoding" => request.gzip = value.eq_ignore_ascii_case("gzip"),
            "connection" => request.close = value.eq_ignore_ascii_case("close"),
            "expect" => continue_expected = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    let fits = matches!(length, None | Some(Ok(0..=MAX_BODY_BYTES)));
    if continue_expected && fits {
        write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    request.body = if chunked {
        read_chunked(reader, budget, &mut request.charge).await?
    } else {
        match length {
            // A length that is no number leaves the body's end unknown: answer and close.
            Some(Err(())) => Err(refuse(400, "content-length is not a number")),
            Some(Ok(n)) if n > MAX_BODY_BYTES => Err(refuse(
                413,
                format!("the body is over {MAX_BODY_BYTES} bytes"),
            )),
            Some(Ok(n)) => read_exactly(reader, n, budget, &mut request.charge).await?,
            None => Ok(Vec::new()),
        }
    };
    if request.body.is_err() {
        // The rest of the body is not read: the connection closes after the answer.
        request.close = true;
    }
    Ok(Some(request))
}

/// `n` bytes of body, read and charged a step at a time: memory follows what arrives, not
/// what a header promised.
async fn read_exactly<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    n: usize,
    budget: &Budget,
    charge: &mut Charge,
) -> std::io::Result<Result<Vec<u8>, Refusal>> {
    let mut body = Vec::new();
    while body.len() < n {
        let step = (n - body.len()).min(READ_STEP);
        if let Err(refusal) = charge.take(budget, step) {
            return Ok(Err(refusal));
        }
        let start = body.len();
        body.resize(start + step, 0);
        reader.read_exact(&mut body[start..]).await?;
    }
    Ok(Ok(body))
}

async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut String,
    total: &mut usize,
) -> std::io::Result<usize> {
    let n = (&mut *reader)
        .take((MAX_HEAD_BYTES.saturating_sub(*total)) as u64 + 1)
        .read_line(line)
        .await?;
    *total += n;
    if *total > MAX_HEAD_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "request head too large",
        ));
    }
    Ok(n)
}

async fn read_chunked<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    budget: &Budget,
    charge: &mut Charge,
) -> std::io::Result<Result<Vec<u8>, Refusal>> {
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut body = Vec::new();
    let mut head = 0;
    loop {
        let mut size_line = String::new();
        if read_line(reader, &mut size_line, &mut head).await? == 0 {
            return Err(invalid("the chunked body ended early"));
        }
        let size_text = size_line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut trailer = String::new();
                if read_line(reader, &mut trailer, &mut head).await? == 0
                    || trailer.trim().is_empty()
                {
                    return Ok(Ok(body));
                }
            }
        }
        // Checked: a size near usize::MAX must not wrap the sum.
        if size > MAX_BODY_BYTES.saturating_sub(body.len()) {
            return Ok(Err(refuse(
                413,
                format!("the body is over {MAX_BODY_BYTES} bytes"),
            )));
        }
        let mut left = size;
        while left > 0 {
            let step = left.min(READ_STEP);
            if let Err(refusal) = charge.take(budget, step) {
                return Ok(Err(refusal));
            }
            let start = body.len();
            body.resize(start + step, 0);
            reader.read_exact(&mut body[start..]).await?;
            left -= step;
        }
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).await?;
        if &crlf != b"\r\n" {
            return Err(invalid("a chunk does not end with CRLF"));
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::receiver::inbox::InboxLimits;

    const JSON_SPAN: &str = r#"{"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331",
        "parentSpanId": "00f067aa0ba902b7", "name": "retrieve",
        "startTimeUnixNano": "1", "endTimeUnixNano": "2"}]}]}]}"#;

    async fn post(
        url: &str,
        content_type: &str,
        extra: Option<(&str, &str)>,
        body: Vec<u8>,
    ) -> (u16, String) {
        let client = crate::backend::client::http_client(None).expect("client");
        let mut request = client
            .post(url)
            .header("content-type", content_type)
            .body(body);
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }

    #[tokio::test]
    async fn answers_as_otlp_says_and_delivers_json_gzip_and_chunked_bodies() {
        let inbox = Arc::new(Inbox::new(InboxLimits::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let url = format!("http://{}/v1/traces", listener.local_addr().expect("addr"));
        tokio::spawn(serve(listener, Arc::clone(&inbox)));
        inbox.expect("0af7651916cd43dd8448eb211c80319c");

        let (status, body) = post(&url, "application/json", None, JSON_SPAN.into()).await;
        assert_eq!((status, body.as_str()), (200, "{}"));

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(JSON_SPAN.as_bytes()).expect("gzip");
        let gzipped = gz.finish().expect("gzip");
        let (status, _) = post(
            &url,
            "application/json; charset=utf-8",
            Some(("content-encoding", "gzip")),
            gzipped,
        )
        .await;
        assert_eq!(status, 200);

        // A chunked body, as a streaming exporter sends it.
        let mut raw = tokio::net::TcpStream::connect(
            url.trim_start_matches("http://")
                .trim_end_matches("/v1/traces"),
        )
        .await
        .expect("connects");
        let mut request = b"POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
        for chunk in JSON_SPAN.as_bytes().chunks(50) {
            request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            request.extend_from_slice(chunk);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        raw.write_all(&request).await.expect("sends");
        let mut answer = String::new();
        raw.read_to_string(&mut answer).await.expect("reads");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");

        let (status, body) = post(&url, "application/x-protobuf", None, b"\xff\xff".to_vec()).await;
        assert_eq!(status, 400, "{body}");
        let (status, body) = post(&url, "text/plain", None, b"hi".to_vec()).await;
        assert_eq!(status, 415);
        assert!(body.contains("application/x-protobuf"), "{body}");
        let (status, _) = post(
            &url.replace("/v1/traces", "/v1/metrics"),
            "application/json",
            None,
            b"{}".to_vec(),
        )
        .await;
        assert_eq!(status, 404);

        let counts = inbox.counts();
        assert_eq!((counts.requests, counts.rejected), (3, 3));
        assert_eq!(counts.joined, 3);
    }

    async fn read_one(raw: &[u8], budget: &Budget) -> std::io::Result<Option<Request>> {
        let mut reader = BufReader::new(raw);
        let mut sink = Vec::new();
        read_request(&mut reader, &mut sink, budget).await
    }

    /// Found by a hostile tester: chunk size `ffffffffffffffff` after a 1-byte chunk made
    /// `body.len() + size` wrap and panic.
    #[tokio::test]
    async fn receiver_chunk_size_overflow_is_refused_not_a_panic() {
        let raw = b"POST /v1/traces HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\nffffffffffffffff\r\n";
        let request = read_one(raw, &Budget::default())
            .await
            .expect("reads")
            .expect("a request");
        let refusal = request.body.expect_err("refused");
        assert_eq!(refusal.status, 413);
        assert!(request.close);
        // A size that does not even fit in 64 bits, and a chunk without its CRLF.
        let raw =
            b"POST /v1/traces HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1ffffffffffffffff\r\n";
        assert!(read_one(raw, &Budget::default()).await.is_err());
        let raw =
            b"POST /v1/traces HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1\r\naXY0\r\n\r\n";
        assert!(read_one(raw, &Budget::default()).await.is_err());
        // A length that is no number is refused, not read as an empty body.
        let raw = b"POST /v1/traces HTTP/1.1\r\ncontent-length: twelve\r\n\r\n{}";
        let request = read_one(raw, &Budget::default())
            .await
            .expect("reads")
            .expect("request");
        assert_eq!(request.body.expect_err("refused").status, 400);
    }

    /// Found by a hostile tester: a body buffer was allocated from Content-Length before any
    /// byte arrived (128 connections × 31 MiB took 4 GB). Now bytes are charged to one
    /// budget as they arrive: over it, 503 with Retry-After, and the budget comes back.
    #[tokio::test]
    async fn receiver_memory_is_bounded_in_total_not_per_request() {
        let budget = Budget::new(8, 256 * 1024);
        // A header promising 31 MiB with 10 bytes behind it holds 64 KiB at most.
        let raw = b"POST /v1/traces HTTP/1.1\r\ncontent-length: 32505856\r\n\r\n0123456789";
        assert!(read_one(raw, &budget).await.is_err(), "the body ends early");
        assert_eq!(budget.bytes.available_permits(), 256, "charge given back");
        // Two requests of 200 KiB at once: the second finds the budget spent.
        let body = vec![b'{'; 200 * 1024];
        let mut first = format!(
            "POST /v1/traces HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        first.extend_from_slice(&body);
        let held = read_one(&first, &budget)
            .await
            .expect("reads")
            .expect("request");
        assert!(held.body.is_ok());
        let second = read_one(&first, &budget)
            .await
            .expect("reads")
            .expect("request");
        assert_eq!(second.body.expect_err("busy").status, 503);
        drop(held);
        let third = read_one(&first, &budget)
            .await
            .expect("reads")
            .expect("request");
        assert!(third.body.is_ok(), "the first request's bytes came back");
    }

    /// Found by a hostile tester: 1,100 idle connections spun the accept loop and starved
    /// the runs of file descriptors. Connections are limited, and idle ones close.
    #[tokio::test]
    async fn receiver_connections_are_limited_and_idle_ones_close() {
        let inbox = Arc::new(Inbox::new(InboxLimits::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("addr");
        let budget = Budget::new(2, BUDGET_BYTES)
            .with_timeouts(Duration::from_millis(300), Duration::from_secs(5));
        tokio::spawn(serve_within(listener, Arc::clone(&inbox), budget.clone()));
        let idle_a = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let idle_b = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            budget.connections.available_permits(),
            0,
            "both slots taken"
        );
        // The idle ones are closed by the server after the idle timeout.
        let mut a = idle_a;
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(3), a.read(&mut buf))
            .await
            .expect("closed in time")
            .expect("reads");
        assert_eq!(n, 0, "closed by the server");
        drop(idle_b);
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Both slots came back.
        assert_eq!(budget.connections.available_permits(), 2, "slots come back");
    }

    /// 5,000 idle connections locked exporters out until the idle timeout (the slots all
    /// taken, new connections queued in the backlog). A new connection now closes the one
    /// idle longest, so an exporter gets its answer at once.
    #[tokio::test]
    async fn receiver_idle_connections_make_room_for_an_exporter() {
        let inbox = Arc::new(Inbox::new(InboxLimits::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("addr");
        let budget = Budget::new(2, BUDGET_BYTES)
            .with_timeouts(Duration::from_secs(60), Duration::from_secs(5));
        tokio::spawn(serve_within(listener, Arc::clone(&inbox), budget.clone()));
        let mut idle = Vec::new();
        for _ in 0..4 {
            idle.push(
                tokio::net::TcpStream::connect(addr)
                    .await
                    .expect("connects"),
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut exporter = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let request = format!(
            "POST /v1/traces HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{JSON_SPAN}",
            JSON_SPAN.len()
        );
        exporter.write_all(request.as_bytes()).await.expect("sends");
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(3), exporter.read_to_string(&mut answer))
            .await
            .expect("answered long before the idle timeout")
            .expect("reads");
        assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
        // The oldest idle connections were the ones closed.
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(3), idle[0].read(&mut buf))
            .await
            .expect("closed")
            .expect("reads");
        assert_eq!(n, 0, "the oldest idle connection was closed by the server");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any bytes on the wire: an answer or an error, never a panic.
        #[test]
        fn any_request_bytes_are_read_without_panicking(
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..600)
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let budget = Budget::new(4, 1024 * 1024).with_timeouts(Duration::from_millis(50), Duration::from_millis(200));
                if let Ok(Some(mut request)) = read_one(&raw, &budget).await {
                    let json = request.content_type.starts_with("application/json");
                    let _ = handle(&mut request, json, &budget);
                }
            });
        }

        /// Requests built from pieces that look like HTTP (chunk sizes, lengths, gzip):
        /// the parser's edges, where a mutation fuzzer would spend its time.
        #[test]
        fn http_like_requests_are_read_without_panicking(
            length in proptest::option::of("[0-9a-f]{0,20}"),
            chunks in proptest::collection::vec(("[0-9a-fA-F]{1,18}", proptest::collection::vec(proptest::num::u8::ANY, 0..40)), 0..4),
            gzip in proptest::bool::ANY,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        ) {
            let mut raw = b"POST /v1/traces HTTP/1.1\r\ncontent-type: application/x-protobuf\r\n".to_vec();
            if gzip {
                raw.extend_from_slice(b"content-encoding: gzip\r\n");
            }
            match &length {
                Some(length) => raw.extend_from_slice(format!("content-length: {length}\r\n\r\n").as_bytes()),
                None => {
                    raw.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
                    for (size, data) in &chunks {
                        raw.extend_from_slice(format!("{size}\r\n").as_bytes());
                        raw.extend_from_slice(data);
                        raw.extend_from_slice(b"\r\n");
                    }
                    raw.extend_from_slice(b"0\r\n\r\n");
                }
            }
            raw.extend_from_slice(&body);
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let budget = Budget::new(4, 1024 * 1024).with_timeouts(Duration::from_millis(50), Duration::from_millis(200));
                if let Ok(Some(mut request)) = read_one(&raw, &budget).await {
                    let _ = handle(&mut request, false, &budget);
                }
            });
        }

        /// OTLP bodies, protobuf and JSON, from arbitrary bytes: decoded or refused.
        #[test]
        fn any_otlp_body_decodes_or_is_refused(
            raw in proptest::collection::vec(proptest::num::u8::ANY, 0..400)
        ) {
            let _ = decode::protobuf(&raw);
            let _ = decode::json(&raw);
        }
    }
}
