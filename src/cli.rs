//! Command-line definitions: raw values only. `commands::run` resolves them, with the
//! suite, into a `Plan`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit_codes;

#[derive(Debug, Parser)]
#[command(
    name = "ragprobe",
    version,
    about = "Evaluation and regression-testing harness for RAG chains",
    after_help = exit_codes::HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run suites: every case, repeated, checked against rules and expectations.
    #[command(after_help = exit_codes::HELP)]
    Run(RunArgs),
    /// Check suites, chains and corpora without running anything.
    #[command(after_help = exit_codes::HELP)]
    Validate(ValidateArgs),
    /// Compare two report folders case by case and write diff.html.
    #[command(after_help = exit_codes::HELP)]
    Diff(DiffArgs),
    /// Print one run's trace as a tree (or as OTLP JSON).
    #[command(after_help = exit_codes::HELP)]
    Show(ShowArgs),
    /// Send the traces of a report to an OTLP endpoint, or write them to a file.
    #[command(after_help = exit_codes::HELP)]
    Export(ExportArgs),
    /// Load a chain's corpus into its Chroma collection, with the chain's embedder.
    #[command(after_help = exit_codes::HELP)]
    Index(IndexArgs),
    /// Turn a trace from MLflow or an OTLP file into a regression case in a suite.
    #[command(after_help = exit_codes::HELP)]
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct IndexArgs {
    /// A chain file, or a suite whose chain uses `retriever: {kind: chroma}`
    pub path: PathBuf,
    /// Delete the collection first, so documents no longer in the corpus go too
    #[arg(long)]
    pub recreate: bool,
    /// Documents embedded and sent per request
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub batch: usize,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The suite file to append the case to (created if missing)
    #[arg(long, value_name = "FILE")]
    pub suite: PathBuf,
    /// An OTLP JSON file (one request, or one per line)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["mlflow_json", "mlflow"])]
    pub otlp_json: Option<PathBuf>,
    /// A trace file written by MLflow's Trace.to_json()
    #[arg(long, value_name = "FILE", conflicts_with = "mlflow")]
    pub mlflow_json: Option<PathBuf>,
    /// An MLflow tracking server to fetch the trace from (with --trace-id)
    #[arg(long, value_name = "URL")]
    pub mlflow: Option<String>,
    /// Which trace: tr-… for MLflow, or the hex trace id in an OTLP file [default: the first]
    #[arg(long, value_name = "ID")]
    pub trace_id: Option<String>,
    /// The chain for a new suite file
    #[arg(long, value_name = "PATH")]
    pub chain: Option<PathBuf>,
    /// The new case's id [default: imported-<trace id prefix>]
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A report folder
    pub dir: PathBuf,
    /// The case to show
    #[arg(long, value_name = "ID")]
    pub case: Option<String>,
    /// The run index to show [default: 0]
    #[arg(long, value_name = "N", conflicts_with = "failed")]
    pub run: Option<u32>,
    /// Show the first run that failed or errored (of --case, if given)
    #[arg(long)]
    pub failed: bool,
    /// Print the trace as OTLP JSON (an ExportTraceServiceRequest)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people.
    Text,
    /// One JSON document on stdout.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, plain lines otherwise (and always when CI is set).
    Auto,
    /// A progress bar on stderr.
    Bar,
    /// One line on stderr per finished case.
    Lines,
    /// Nothing while running.
    None,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Suite file, or folder searched for suites [default: suites/]
    pub path: Option<PathBuf>,
    /// Run the suites' cases against this chain file instead of their own
    #[arg(long, value_name = "FILE")]
    pub chain: Option<PathBuf>,
    /// Repetitions per case (overrides the suite's `runs`)
    #[arg(long, value_name = "N")]
    pub runs: Option<u32>,
    /// Runs in flight at once (overrides the suite's `concurrency`)
    #[arg(long, short = 'j', value_name = "C")]
    pub concurrency: Option<usize>,
    /// Seed for every sampled choice; the same seed gives the same runs
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Folder for results [default: reports/<timestamp>-<suite>/]
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run only this case (repeatable)
    #[arg(long = "case", value_name = "ID")]
    pub cases: Vec<String>,
    /// Run only cases whose id contains PATTERN, or with tag NAME for `tag:NAME`
    #[arg(long, value_name = "PATTERN")]
    pub filter: Option<String>,
    /// Finish the runs an interrupted `ragprobe run` left undone in DIR
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["path", "runs", "seed", "out", "cases", "filter"]
    )]
    pub resume: Option<PathBuf>,
    /// Per-run time limit in milliseconds (overrides the suite's `timeout_ms`)
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Print nothing while running and only the result line after
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Format of the summary on stdout
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How to show progress on stderr
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Gate on a previous report: fail only on rule violations or significant regressions
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// Print how long each stage took (runs, parquet, aggregation, reports) on stderr
    #[arg(long)]
    pub timings: bool,
    #[command(flatten)]
    pub otlp: OtlpArgs,
}

/// Where traces go; the OTEL_EXPORTER_OTLP_TRACES_* variables apply when these are unset.
#[derive(Debug, Args, Clone)]
pub struct OtlpArgs {
    /// Stream every run's trace to this OTLP/HTTP endpoint (e.g. http://127.0.0.1:5000/v1/traces)
    #[arg(long, value_name = "URL")]
    pub otlp: Option<String>,
    /// A header for the OTLP endpoint, KEY=VALUE (repeatable; values are never printed)
    #[arg(long = "otlp-header", value_name = "KEY=VALUE")]
    pub otlp_headers: Vec<String>,
    /// OTLP encoding: http/protobuf (default) or http/json
    #[arg(long, value_name = "PROTOCOL")]
    pub otlp_protocol: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A report folder
    pub dir: PathBuf,
    /// Write the traces as OTLP JSON Lines (one ExportTraceServiceRequest per line) instead of sending them
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub otlp: OtlpArgs,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The earlier report folder
    pub a: PathBuf,
    /// The later report folder
    pub b: PathBuf,
    /// Where to write the HTML diff [default: B/diff.html]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Significance level for calling a pass-rate change a regression or improvement
    #[arg(long, value_name = "P", default_value_t = 0.05)]
    pub alpha: f64,
    /// Format of the summary on stdout
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Suite file, or folder searched for suites [default: suites/]
    pub path: Option<PathBuf>,
}
