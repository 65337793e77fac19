//! OTLP/HTTP on a loopback socket: `POST /v1/traces` with a protobuf or JSON body
//! (optionally gzip-compressed), answered as the OTLP spec says (200 with an empty
//! `ExportTraceServiceResponse` in the request's encoding; 400 for a body that does not
//! decode, 413 beyond the size bound, 415 for another media type, 404 for another path).
//!
//! HTTP/1.1 is spoken by hand (keep-alive, `Content-Length` and chunked bodies,
//! `Expect: 100-continue`): OTLP exporters need no more, and a server framework would be
//! the largest dependency in the tree for one endpoint.

use std::io::Read;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::receiver::decode;
use crate::receiver::inbox::Inbox;

/// Largest request body taken, compressed or not.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Largest request head (request line and headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;

pub async fn serve(listener: TcpListener, inbox: Arc<Inbox>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let inbox = Arc::clone(&inbox);
        tokio::spawn(async move {
            // An exporter that hangs up mid-request loses only that request.
            let _ = connection(stream, &inbox).await;
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

async fn connection(stream: TcpStream, inbox: &Inbox) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let Some(request) = read_request(&mut reader, &mut write).await? else {
            return Ok(());
        };
        let json = request.content_type.starts_with("application/json");
        let outcome = handle(&request, json).map(|spans| inbox.deliver(spans));
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
        let close = request.close || status == 413;
        let head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: {}\r\n\r\n",
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

fn handle(request: &Request, json: bool) -> Result<Vec<decode::Received>, Refusal> {
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
    let body = match &request.body {
        Ok(body) => body,
        Err(refusal) => {
            return Err(Refusal {
                status: refusal.status,
                message: refusal.message.clone(),
            });
        }
    };
    let body = if request.gzip {
        gunzip(body)?
    } else {
        body.clone()
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

fn gunzip(body: &[u8]) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|err| refuse(400, format!("the gzip body does not decompress: {err}")))?;
    if out.len() > MAX_BODY_BYTES {
        return Err(refuse(
            413,
            format!("the body is over {MAX_BODY_BYTES} bytes"),
        ));
    }
    Ok(out)
}

/// The next request on the connection; `None` when the client closed it.
async fn read_request<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
) -> std::io::Result<Option<Request>> {
    let mut head_bytes = 0usize;
    let mut line = String::new();
    if read_line(reader, &mut line, &mut head_bytes).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut request = Request {
        method,
        path,
        content_type: String::new(),
        gzip: false,
        body: Ok(Vec::new()),
        close: false,
    };
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut continue_expected = false;
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
            "content-length" => length = value.parse().ok(),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "content-type" => request.content_type = value.to_ascii_lowercase(),
            "content-encoding" => request.gzip = value.eq_ignore_ascii_case("gzip"),
            "connection" => request.close = value.eq_ignore_ascii_case("close"),
            "expect" => continue_expected = value.eq_ignore_ascii_case("100-continue"),
            _ => {}
        }
    }
    if continue_expected && length.is_none_or(|n| n <= MAX_BODY_BYTES) {
        write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    request.body = if chunked {
        read_chunked(reader, &mut request.close).await?
    } else {
        match length {
            Some(n) if n > MAX_BODY_BYTES => {
                // The body is not read: the connection closes after the answer.
                request.close = true;
                Err(refuse(
                    413,
                    format!("the body is over {MAX_BODY_BYTES} bytes"),
                ))
            }
            Some(n) => {
                let mut body = vec![0u8; n];
                reader.read_exact(&mut body).await?;
                Ok(body)
            }
            None => Ok(Vec::new()),
        }
    };
    Ok(Some(request))
}

async fn read_line<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut String,
    total: &mut usize,
) -> std::io::Result<usize> {
    let n = (&mut *reader)
        .take((MAX_HEAD_BYTES - *total) as u64 + 1)
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

async fn read_chunked<R: tokio::io::AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    close: &mut bool,
) -> std::io::Result<Result<Vec<u8>, Refusal>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        let mut head = 0;
        read_line(reader, &mut size_line, &mut head).await?;
        let size_text = size_line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut trailer = String::new();
                read_line(reader, &mut trailer, &mut head).await?;
                if trailer.trim().is_empty() {
                    return Ok(Ok(body));
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            *close = true;
            return Ok(Err(refuse(
                413,
                format!("the body is over {MAX_BODY_BYTES} bytes"),
            )));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).await?;
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
}
