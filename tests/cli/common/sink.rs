//! A loopback HTTP server that records what it receives and answers as told: stands in
//! for an OTLP collector, or for a hostile MLflow server, in tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// How to answer one request.
pub enum Reply {
    /// A status and a JSON body.
    Json(u16, String),
    /// 200 and a body that never ends.
    Endless,
    /// Never answer (keep the connection open).
    Hang,
}

type Responder = dyn Fn(&Received) -> Reply + Send + Sync;

pub struct Sink {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    /// Listens on 127.0.0.1 and answers every request with `status` and `{}`.
    pub fn start(status: u16) -> Sink {
        Sink::answering(move |_| Reply::Json(status, "{}".into()))
    }

    /// Listens on 127.0.0.1 and answers each request as `responder` says.
    pub fn answering(responder: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&received);
        let responder: Arc<Responder> = Arc::new(responder);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let log = Arc::clone(&log);
                let responder = Arc::clone(&responder);
                std::thread::spawn(move || serve(stream, &*responder, &log));
            }
        });
        Sink {
            url: format!("http://127.0.0.1:{port}/v1/traces"),
            received,
        }
    }

    /// The server's address: `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        self.url.trim_end_matches("/v1/traces").to_owned()
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Every request's body as JSON (a body that is not JSON fails the test).
    pub fn json_bodies(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).expect("a JSON body"))
            .collect()
    }
}

/// A reply that echoes every request header back, as some servers do in their errors.
pub fn echo_headers(request: &Received, status: u16) -> Reply {
    let headers: Vec<String> = request
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    Reply::Json(
        status,
        serde_json::json!({"error_code": "UNAUTHENTICATED", "message": format!("bad request, headers were {}", headers.join("; "))})
            .to_string(),
    )
}

fn serve(stream: std::net::TcpStream, responder: &Responder, log: &Mutex<Vec<Received>>) {
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length.min(64 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Received {
            method,
            path,
            headers,
            body,
        };
        let reply = responder(&request);
        if let Ok(mut log) = log.lock() {
            log.push(request);
        }
        match reply {
            Reply::Json(status, body) => {
                let reply = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if writer.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
            Reply::Endless => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if writer.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 65536, "x".repeat(65536));
                while writer.write_all(chunk.as_bytes()).is_ok() {}
                return;
            }
            Reply::Hang => {
                std::thread::sleep(std::time::Duration::from_secs(120));
                return;
            }
        }
    }
}
