//! The embedded BM25 retriever at scale: `cargo bench --bench retriever [-- SIZES…]`.
//!
//! For each corpus size (default 6011, 100000 and 1000000 passages of 60–140 words drawn
//! from a Zipf-distributed vocabulary, as English text is: `ZIPF` exponent, default 1.0, over
//! `VOCABULARY` words, default 2,000,000, the most frequent 60 of them English function
//! words, so "the" is ~6.6% of the words, as in English) it writes a JSON Lines corpus,
//! then, in a fresh process so peak memory is that size's own: loads it as `ragprobe run`
//! does, builds the memory retriever (k = 10), and times 1,000 queries of 2–6 words taken
//! from random passages. Prints one table row per size.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use ragprobe::chain::corpus::Corpus;
use ragprobe::chain::memory::MemoryRetriever;

const QUERIES: usize = 1_000;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if let [flag, size, path] = args.as_slice()
        && flag == "--one"
    {
        let size: usize = size.parse().expect("a size");
        measure(size, Path::new(path));
        return;
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![6_011, 100_000, 1_000_000]
    } else {
        args.iter()
            .map(|a| a.parse().expect("sizes are numbers"))
            .collect()
    };
    let dir = std::env::temp_dir().join(format!("ragprobe-bench-retriever-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    println!(
        "{:>10}  {:>9}  {:>8}  {:>9}  {:>8}  {:>8}  {:>9}  {:>9}  {:>9}  {:>11}",
        "passages",
        "file MB",
        "load s",
        "index s",
        "index MB",
        "terms",
        "query p50",
        "query p99",
        "mean ms",
        "peak RSS MB"
    );
    for size in sizes {
        let path = dir.join(format!("corpus-{size}.jsonl"));
        write_corpus(size, &path);
        let me = std::env::current_exe().expect("own path");
        let out = Command::new(me)
            .args(["--one", &size.to_string(), &path.display().to_string()])
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("runs itself");
        print!("{}", String::from_utf8_lossy(&out.stdout));
        let _ = std::fs::remove_file(&path);
    }
    let _ = std::fs::remove_dir(&dir);
}

/// A vocabulary word: letters from a seeded generator, 3 to 10 of them.
fn word(rng: &mut fastrand::Rng) -> String {
    let len = rng.usize(3..=10);
    (0..len)
        .map(|_| rng.alphabetic().to_ascii_lowercase())
        .collect()
}

fn zipf_table(n: usize, s: f64) -> Vec<f64> {
    let mut cumulative = Vec::with_capacity(n);
    let mut total = 0.0;
    for rank in 1..=n {
        total += 1.0 / (rank as f64).powf(s);
        cumulative.push(total);
    }
    cumulative.iter().map(|c| c / total).collect()
}

/// The most frequent English words, most frequent first (not ragprobe's stopword list: a
/// few of them, like `not` and `all`, are kept as content words, as in real text).
const FUNCTION_WORDS: &[&str] = &[
    "the", "of", "and", "to", "a", "in", "is", "that", "for", "it", "as", "was", "with", "be",
    "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have",
    "an", "had", "they", "you", "were", "their", "one", "all", "we", "can", "her", "has", "there",
    "been", "if", "more", "when", "will", "would", "who", "so", "no", "she", "other", "its", "may",
    "these", "what", "them", "than", "some", "him", "time",
];

fn write_corpus(size: usize, path: &PathBuf) {
    let mut rng = fastrand::Rng::with_seed(11);
    let setting = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(default)
    };
    let vocabulary = setting("VOCABULARY", 2_000_000.0) as usize;
    let words: Vec<String> = FUNCTION_WORDS
        .iter()
        .map(|w| (*w).to_owned())
        .chain((FUNCTION_WORDS.len()..vocabulary).map(|_| word(&mut rng)))
        .collect();
    let table = zipf_table(vocabulary, setting("ZIPF", 1.0));
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("corpus file"));
    let mut text = String::new();
    for id in 0..size {
        text.clear();
        for i in 0..rng.usize(60..=140) {
            if i > 0 {
                text.push(' ');
            }
            let at = table
                .partition_point(|&c| c < rng.f64())
                .min(vocabulary - 1);
            text.push_str(&words[at]);
        }
        let source = ["databricks", "aws", "azure"][id % 3];
        writeln!(
            out,
            "{}",
            serde_json::json!({"id": format!("p{id}"), "text": text, "metadata": {"docs": source}})
        )
        .expect("writes");
    }
    out.flush().expect("writes");
}

fn measure(size: usize, path: &Path) {
    let file_mb = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;
    let started = Instant::now();
    let corpus = Arc::new(Corpus::load(path).expect("the generated corpus loads"));
    let load_s = started.elapsed().as_secs_f64();
    let loaded_mb = status_mb("VmRSS:");
    let started = Instant::now();
    let retriever = MemoryRetriever::new(Arc::clone(&corpus), 10, None);
    let index_s = started.elapsed().as_secs_f64();
    let index_mb = status_mb("VmRSS:") - loaded_mb;
    let mut rng = fastrand::Rng::with_seed(5);
    let queries: Vec<String> = (0..QUERIES)
        .map(|_| {
            let doc = &corpus.documents[rng.usize(..corpus.documents.len())];
            let words: Vec<&str> = doc.text.split(' ').collect();
            let len = rng.usize(2..=6).min(words.len());
            let start = rng.usize(..=words.len() - len);
            words[start..start + len].join(" ")
        })
        .collect();
    let mut times: Vec<f64> = Vec::with_capacity(QUERIES);
    let mut found = 0;
    for query in &queries {
        let started = Instant::now();
        found += retriever.retrieve(query).len();
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    assert!(found > 0, "queries found nothing");
    if std::env::var_os("EXPLAIN").is_some() {
        let mut slow: Vec<(f64, &String)> = times.iter().copied().zip(&queries).collect();
        slow.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (ms, q) in slow.iter().step_by(50) {
            eprintln!("{ms:.3} ms  {q:?}  {:?}", retriever.document_frequencies(q));
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{:>10}  {:>9.1}  {:>8.2}  {:>9.2}  {:>8.0}  {:>8}  {:>7.3}ms  {:>7.3}ms  {:>9.3}  {:>11.0}",
        size,
        file_mb,
        load_s,
        index_s,
        index_mb,
        retriever.vocabulary(),
        at(0.5),
        at(0.99),
        mean,
        status_mb("VmHWM:")
    );
}

/// A memory figure of this process from /proc/self/status (`VmRSS:` now, `VmHWM:` peak),
/// in MB.
fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
