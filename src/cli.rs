//! Command-line definitions: raw values only. `commands::run` resolves them, with the
//! suite, into a `Plan`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit_codes;
use crate::report::progress::ProgressMode;

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
    #[command(after_help = exit_codes::VALIDATE_HELP)]
    Validate(ValidateArgs),
    /// Compare two report folders case by case and write diff.html.
    #[command(after_help = exit_codes::DIFF_HELP)]
    Diff(DiffArgs),
    /// Print one run's trace as a tree (or as OTLP JSON).
    #[command(after_help = exit_codes::SHOW_HELP)]
    Show(ShowArgs),
    /// Publish a report to MLflow as a run, send its traces to an OTLP endpoint, or write them to a file.
    #[command(after_help = exit_codes::EXPORT_HELP)]
    Export(ExportArgs),
    /// Ask a question until a reported bad answer's rate is known, and say what bad runs share.
    #[command(after_help = exit_codes::REPRO_HELP)]
    Repro(ReproArgs),
    /// Rerun a bad answer under controlled edits of the context and name the likely cause.
    #[command(after_help = exit_codes::REPRO_HELP)]
    Triage(TriageArgs),
    /// How far to trust a model judge: human verdicts on recorded runs against the judge's.
    #[command(after_help = exit_codes::CALIBRATE_HELP)]
    Calibrate(CalibrateArgs),
    /// How many runs per case the gate needs to catch a given pass-rate drop.
    #[command(after_help = exit_codes::PLAN_HELP)]
    Plan(PlanArgs),
    /// Combine the report folders of `run --shard` into one report (or, with --mlflow, the
    /// shards of one build published to MLflow).
    #[command(after_help = exit_codes::MERGE_HELP)]
    Merge(MergeArgs),
    /// Load a chain's corpus into its Chroma collection, with the chain's embedder.
    #[command(after_help = exit_codes::INDEX_HELP)]
    Index(IndexArgs),
    /// Turn a trace from MLflow or an OTLP file into a regression case in a suite.
    #[command(after_help = exit_codes::IMPORT_HELP)]
    Import(ImportArgs),
    /// Write a minimal suite, chain and corpus that run as they are (suites/example/).
    #[command(after_help = exit_codes::INIT_HELP)]
    Init(InitArgs),
    /// Print a shell completion script: `ragprobe completions bash > ~/.local/share/bash-completion/completions/ragprobe`.
    #[command(after_help = exit_codes::COMPLETIONS_HELP)]
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project folder to write suites/example/ into
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The question to reproduce, the chain to ask, and what makes an answer bad.
#[derive(Debug, Args)]
pub struct ReproTarget {
    /// A chain file (with --question or --trace), or the chain replacing the suite's
    #[arg(long, value_name = "FILE")]
    pub chain: Option<PathBuf>,
    /// A suite: its chain, rules, corpus, and with --case the case's question and sources
    #[arg(long, value_name = "FILE")]
    pub suite: Option<PathBuf>,
    /// The case of --suite to reproduce
    #[arg(long, value_name = "ID", requires = "suite")]
    pub case: Option<String>,
    /// The question as the user asked it
    #[arg(long, value_name = "TEXT")]
    pub question: Option<String>,
    /// A trace file (OTLP JSON or MLflow's to_json) whose question to ask
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// What makes an answer bad, as an answer check: 'matches: t4g\.micro',
    /// 'contains: [AWS]' … [default with --case: the run fails the case]
    #[arg(long, value_name = "CHECK")]
    pub bad: Option<String>,
    /// A `where` every retrieved document must match (a rule, without a suite): '{docs: databricks}'
    #[arg(long, value_name = "WHERE")]
    pub rule: Option<String>,
    /// A prompt variable, NAME=VALUE (repeatable)
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Seed for every sampled choice (a suite's own seed wins unless this is given)
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Runs in flight at once
    #[arg(long, short = 'j', default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub concurrency: usize,
    /// Per-run time limit in milliseconds [default: the suite's timeout_ms, else 30000]
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Listen on this loopback address for the OTLP spans the service exports
    /// (overrides the chain's `receive_otlp`)
    #[arg(long, value_name = "ADDR")]
    pub receive_otlp: Option<String>,
    /// With a conversation --case: the turn to reproduce (1 is the first) [default: the
    /// last]
    #[arg(long, value_name = "N", requires = "case", value_parser = clap::builder::RangedU64ValueParser::<u32>::new().range(1..=100))]
    pub turn: Option<u32>,
    /// With a conversation --case: the turns before --turn are asked on every run
    /// (`live`: the chain's own answers become history) or asked once and then fixed
    /// (`scripted`: every run starts from the same history, so only the turn varies)
    #[arg(long, value_enum, default_value_t = HistoryArg::Live, requires = "case")]
    pub history: HistoryArg,
}

/// How `repro` and `triage` replay the turns before the one they reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HistoryArg {
    Live,
    Scripted,
}

#[derive(Debug, Args)]
pub struct ReproArgs {
    #[command(flatten)]
    pub target: ReproTarget,
    /// Stop when the 95% interval of the bad-answer rate is this narrow (half-width)
    #[arg(long, default_value_t = 0.1, value_name = "RATE")]
    pub precision: f64,
    /// Never fewer runs than this
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub min_runs: u32,
    /// The budget: never more runs than this
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub max_runs: u32,
    /// Append the question to this suite as a regression case that fails on the bad answer
    #[arg(long, value_name = "FILE")]
    pub save_case: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TriageArgs {
    #[command(flatten)]
    pub target: ReproTarget,
    /// Runs per condition (the same seeds in every condition)
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub runs: u32,
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// The suite whose judged rules were labelled
    #[arg(long, value_name = "FILE")]
    pub suite: PathBuf,
    /// Human verdicts, JSON Lines: {"report": DIR, "case": ID, "run": N, "rule": ID,
    /// "label": "pass" | "fail"} (`report` relative to this file)
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// The report folder for lines that name none
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Write the counts per rule to FILE, for the suite's `judge: {calibration: FILE}`
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The suite to size
    pub suite: PathBuf,
    /// A report folder whose per-case pass rates the plan starts from
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// Without a baseline: assume every case passes at this rate
    #[arg(long, value_name = "P")]
    pub pass_rate: Option<f64>,
    /// The pass-rate drop to catch, as a share (0.2 = 20 points) [default: the suite's `detect`]
    #[arg(long, value_name = "SHARE")]
    pub detect: Option<f64>,
    /// The chance of catching it
    #[arg(long, value_name = "P", default_value_t = 0.8)]
    pub power: f64,
    /// Format of the plan on stdout
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shard folders (every k of one n, same suite, seed and runs)
    #[arg(required_unless_present = "mlflow", conflicts_with = "mlflow", num_args = 1..)]
    pub dirs: Vec<PathBuf>,
    /// Fetch the shards of one build (--group) from this MLflow tracking server instead of
    /// folders, and publish the merged report to the group's parent run
    #[arg(long, value_name = "URL")]
    pub mlflow: Option<String>,
    /// With --mlflow: the experiment the shards published to [env: MLFLOW_EXPERIMENT_NAME]
    #[arg(long, value_name = "NAME")]
    pub experiment: Option<String>,
    /// With --mlflow: the build's group, as the shards were run [env: RAGPROBE_GROUP;
    /// default: the commit and the CI's pipeline id]
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    /// The merged report folder
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace the report already in --out (only ragprobe's files there are removed)
    #[arg(long)]
    pub force: bool,
    /// Print only the result line
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Create (or update) one pull-request comment with the summary, from GitHub Actions'
    /// GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_EVENT_PATH; a problem is a warning
    #[arg(long)]
    pub pr_comment: bool,
    /// The report folder the shards were gated against (give the shards' --baseline: with
    /// `runs: auto` it also decided when their cases stopped)
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
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
    /// An MLflow tracking server to fetch traces from, with --trace-id or --filter
    /// [env: MLFLOW_TRACKING_URI]
    #[arg(long, value_name = "URL")]
    pub mlflow: Option<String>,
    /// Which trace: tr-… for MLflow, or the hex trace id in an OTLP file [default: the first]
    #[arg(long, value_name = "ID")]
    pub trace_id: Option<String>,
    /// Import every trace of --experiment that this MLflow search filter matches, one case
    /// per distinct question, e.g. "feedback.`user_feedback` = 'false'" or "tags.flagged = 'yes'"
    #[arg(long, value_name = "FILTER", conflicts_with_all = ["trace_id", "otlp_json", "mlflow_json", "id"])]
    pub filter: Option<String>,
    /// Import a conversation: the traces of this session (MLflow's `mlflow.trace.session`,
    /// or OTLP spans' `session.id` / `gen_ai.conversation.id`), in time order, as one case
    /// with a turn per trace
    #[arg(long, value_name = "ID", conflicts_with_all = ["trace_id", "filter", "mlflow_json"])]
    pub session: Option<String>,
    /// The experiment to search with --filter or --session [env: MLFLOW_EXPERIMENT_ID, else
    /// MLFLOW_EXPERIMENT_NAME]
    #[arg(long, value_name = "NAME")]
    pub experiment: Option<String>,
    /// With --filter (or --session): import at most this many traces (the newest first)
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_traces: usize,
    /// The chain for a new suite file
    #[arg(long, value_name = "PATH")]
    pub chain: Option<PathBuf>,
    /// The new case's id [default: imported-<trace id prefix>]
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// TREC relevance judgements (`qid iter docid grade`): with --topics, writes a new suite
    /// of one case per topic whose expected sources are its graded documents
    #[arg(long, value_name = "FILE", requires = "topics", conflicts_with_all = ["otlp_json", "mlflow_json", "mlflow", "filter"])]
    pub qrels: Option<PathBuf>,
    /// The questions: `qid<TAB>query` lines, or JSON Lines {"qid", "query"}
    #[arg(long, value_name = "FILE", requires = "qrels")]
    pub topics: Option<PathBuf>,
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
    /// Add a waterfall of the spans' durations drawn with block characters (the default
    /// when stdout is a terminal)
    #[arg(long, conflicts_with = "json")]
    pub waterfall: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table for people.
    Text,
    /// One JSON document on stdout.
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Suite file, or folder searched for suites [default: suites/]
    pub path: Option<PathBuf>,
    /// Run the suites' cases against this chain file instead of their own
    #[arg(long, value_name = "FILE")]
    pub chain: Option<PathBuf>,
    /// Run only the k-th of n deterministic slices of the cases × runs (combine with
    /// `merge`); `auto`: the slice from the CI's parallel-job variables (GitLab, CircleCI,
    /// Buildkite, a Kubernetes Indexed Job with --shards)
    #[arg(long, value_name = "K/N|auto", value_parser = crate::ci::shard::ShardArg::parse)]
    pub shard: Option<crate::ci::shard::ShardArg>,
    /// With --shard auto where the CI gives only the job's index (a Kubernetes Indexed
    /// Job's JOB_COMPLETION_INDEX): the number of jobs
    #[arg(long, value_name = "N", requires = "shard")]
    pub shards: Option<u32>,
    /// With --shard and --mlflow: the build the shard belongs to, for `merge --mlflow`
    /// [default: the commit, and the CI's pipeline id]
    #[arg(long, value_name = "G", env = "RAGPROBE_GROUP", requires = "shard")]
    pub group: Option<String>,
    /// Repetitions per case, or `auto`: each case until its verdict is decided (overrides
    /// the suite's and cases' `runs`)
    #[arg(long, value_name = "N|auto")]
    pub runs: Option<crate::suite::schema::RunsSetting>,
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
        conflicts_with_all = ["path", "chain", "shard", "runs", "seed", "out", "cases", "filter", "force"]
    )]
    pub resume: Option<PathBuf>,
    /// Replace the report already in --out (only ragprobe's files there are removed)
    #[arg(long)]
    pub force: bool,
    /// Per-run time limit in milliseconds (overrides the suite's `timeout_ms`)
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Print nothing while running and only the result line after
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Create (or update) one pull-request comment with the summary, from GitHub Actions'
    /// GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_EVENT_PATH; a problem is a warning
    #[arg(long)]
    pub pr_comment: bool,
    /// Format of the summary on stdout
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How to show progress on stderr
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Gate on a previous report: fail only on rule violations or significant regressions.
    /// `mlflow:` takes the experiment's last finished run of the suite (with --mlflow)
    #[arg(long, value_name = "DIR|mlflow:")]
    pub baseline: Option<PathBuf>,
    /// Print how long each stage took (runs, parquet, aggregation, reports) on stderr
    #[arg(long)]
    pub timings: bool,
    /// Listen on this loopback address (127.0.0.1:4318) for the OTLP spans an http or command
    /// chain's service exports; they join each run's trace (overrides `receive_otlp:`)
    #[arg(long, value_name = "ADDR")]
    pub receive_otlp: Option<String>,
    /// Start no new run once the runs have cost this many US dollars (the chain's and the
    /// judge's `price`); `--resume` completes the rest
    #[arg(long, value_name = "USD")]
    pub max_cost: Option<f64>,
    /// Start no new run once this many model calls (chain and judge) were made
    #[arg(long, value_name = "N")]
    pub max_calls: Option<u64>,
    #[command(flatten)]
    pub otlp: OtlpArgs,
    #[command(flatten)]
    pub mlflow: MlflowArgs,
}

/// Where results go in MLflow; the MLFLOW_* variables apply when these are unset.
#[derive(Debug, Args, Clone)]
pub struct MlflowArgs {
    /// Log every suite run to this MLflow tracking server: a run with params, metrics and the
    /// report files, each trace linked to it with its verdicts as assessments
    /// [env: MLFLOW_TRACKING_URI]
    #[arg(long, value_name = "URL")]
    pub mlflow: Option<String>,
    /// The MLflow experiment, created if missing [env: MLFLOW_EXPERIMENT_ID, else
    /// MLFLOW_EXPERIMENT_NAME; default: the one the report folder went to, else the suite's name]
    #[arg(long, value_name = "NAME")]
    pub experiment: Option<String>,
    /// Log nothing to MLflow, even with MLFLOW_TRACKING_URI set
    #[arg(long, conflicts_with_all = ["mlflow", "experiment"])]
    pub no_mlflow: bool,
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
    /// With --out: `otlp` (the traces) or `trec` (a TREC run file of the retrieved
    /// rankings, `qid Q0 docid rank score tag`, for trec_eval)
    #[arg(long, value_enum, default_value_t = ExportFormat::Otlp)]
    pub format: ExportFormat,
    /// With --format trec: which run of each case is the ranking (each case is one query)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub run: u32,
    #[command(flatten)]
    pub otlp: OtlpArgs,
    #[command(flatten)]
    pub mlflow: MlflowArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Otlp,
    Trec,
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
    /// Family-wise significance: the chance that two reports of an unchanged chain are
    /// called different, shared by all cases
    #[arg(long, value_name = "P", default_value_t = 0.05)]
    pub alpha: f64,
    /// How the cases share --alpha (none: each case on its own, the old behaviour)
    #[arg(
        long,
        value_enum,
        value_name = "METHOD",
        default_value = "discrete-holm"
    )]
    pub correction: crate::model::summary::Correction,
    /// The smallest pass-rate change that counts, as a share (0.05 = 5 points)
    #[arg(long, value_name = "SHARE", default_value_t = 0.0)]
    pub min_effect: f64,
    /// The retrieval measure whose significant drop (paired randomization test over cases,
    /// sharing --alpha with the cases) counts as a regression
    #[arg(long, value_enum, value_name = "MEASURE", default_value = "ndcg")]
    pub retrieval_gate: crate::model::summary::RetrievalGate,
    /// Format of the summary on stdout
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Create (or update) one pull-request comment with the summary, from GitHub Actions'
    /// GITHUB_TOKEN, GITHUB_REPOSITORY and GITHUB_EVENT_PATH; a problem is a warning
    #[arg(long)]
    pub pr_comment: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Suite file, or folder searched for suites [default: suites/]
    pub path: Option<PathBuf>,
}
