//! A resolved plan: one suite, the cases selected, how many runs, which seed, where the
//! results go. Built from the suite and the command line (or from `meta.json` on resume);
//! every option is decided here, and everything downstream takes a `Plan` and never looks
//! at raw flags.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value};

use crate::config::problem::{ConfigError, Problem};
use crate::model::meta::{META_FILE, Meta};
use crate::model::summary::{SUMMARY_FILE, SummaryError, read_summary};
use crate::seed::run_seed;
use crate::sequential::AdaptiveSettings;
use crate::suite::Suite;
use crate::suite::load::{load_with, merged_vars};
use crate::suite::schema::{CaseSpec, Expect, RunsSetting};

/// Runs in flight at once when neither the suite nor `--concurrency` says.
pub const DEFAULT_CONCURRENCY: usize = 8;

#[derive(Debug)]
pub struct Plan {
    pub suite: Arc<Suite>,
    /// Indices into `suite.spec.cases`, in suite order.
    pub cases: Vec<usize>,
    /// Runs per case of fixed-count cases (the suite's `runs`, or `--runs N`).
    pub runs: u32,
    /// With `runs: auto` (suite, case or `--runs auto`): how adaptive cases stop, and which
    /// selected cases (by position in `cases`) are adaptive. They run at most `max_runs`.
    pub adaptive: Option<AdaptiveSettings>,
    pub adaptive_cases: Vec<bool>,
    pub seed: u64,
    pub concurrency: usize,
    pub timeout: Duration,
    pub out_dir: PathBuf,
    /// What to gate against, with `--baseline`.
    pub baseline: Option<crate::model::summary::Baseline>,
    /// Only this share of the cases × runs (`--shard k/n`).
    pub shard: Option<Shard>,
    /// Worth saying before the runs start (a resumed suite's files changed).
    pub warnings: Vec<String>,
}

/// The k-th of n deterministic slices of a plan's cases × runs: run `r` of the `c`-th
/// selected case belongs to slice (c × runs + r) mod n, so slices differ by at most one run
/// and every run is in exactly one slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// `k/n` with 1 ≤ k ≤ n.
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let bad = || ShardError(text.to_owned());
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let k: u32 = k.trim().parse().map_err(|_| bad())?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard {
            index: k - 1,
            count: n,
        })
    }

    fn holds(self, case_ordinal: usize, runs: u32, run: u32) -> bool {
        (case_ordinal as u64 * u64::from(runs) + u64::from(run)) % u64::from(self.count)
            == u64::from(self.index)
    }

    /// An adaptive case is never split: its stopping rule needs all its runs in order, so
    /// the `c`-th selected case goes whole to slice c mod n.
    fn holds_case(self, case_ordinal: usize) -> bool {
        case_ordinal as u64 % u64::from(self.count) == u64::from(self.index)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

/// A `--shard` that is not k/n.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--shard {0}: write k/n with 1 <= k <= n, e.g. 2/4, or auto")]
pub struct ShardError(pub String);

/// One run to make.
#[derive(Debug, Clone)]
pub struct Job {
    pub case: Arc<CaseJob>,
    pub run: u32,
    pub seed: u64,
}

/// What every run of a case shares.
#[derive(Debug)]
pub struct CaseJob {
    pub id: String,
    pub question: String,
    pub vars: Map<String, Value>,
    pub expect: Option<Expect>,
    /// A conversation's turns (empty for a single question).
    pub turns: Vec<crate::suite::schema::TurnSpec>,
}

/// How to pick cases: exact ids, and/or a pattern on ids and tags.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub ids: Vec<String>,
    /// Substring of the case id, or `tag:NAME`.
    pub filter: Option<String>,
}

impl Selection {
    /// Indices of the selected cases; an id that names no case is an error.
    pub fn apply(&self, cases: &[CaseSpec]) -> Result<Vec<usize>, PlanError> {
        for id in &self.ids {
            if !cases.iter().any(|c| &c.id == id) {
                return Err(PlanError::UnknownCase {
                    id: id.clone(),
                    known: cases.iter().map(|c| c.id.clone()).collect(),
                });
            }
        }
        Ok(cases
            .iter()
            .enumerate()
            .filter(|(_, c)| self.ids.is_empty() || self.ids.contains(&c.id))
            .filter(|(_, c)| match self.filter.as_deref() {
                None => true,
                Some(pattern) => match pattern.strip_prefix("tag:") {
                    Some(tag) => c.tags.iter().any(|t| t == tag),
                    None => c.id.contains(pattern),
                },
            })
            .map(|(i, _)| i)
            .collect())
    }
}

impl Plan {
    pub fn case_ids(&self) -> Vec<String> {
        self.cases
            .iter()
            .map(|&i| self.suite.spec.cases[i].id.clone())
            .collect()
    }

    /// What every run of the `ordinal`-th selected case shares.
    pub fn case_job(&self, ordinal: usize) -> Arc<CaseJob> {
        let spec = &self.suite.spec.cases[self.cases[ordinal]];
        Arc::new(CaseJob {
            id: spec.id.clone(),
            question: spec.question.clone(),
            vars: merged_vars(&self.suite.spec.vars, &spec.vars),
            expect: spec.expect.clone(),
            turns: spec.turns.clone().unwrap_or_default(),
        })
    }

    /// Run `run` of a case: its seed depends on the case and the index alone.
    pub fn job(&self, case: &Arc<CaseJob>, run: u32) -> Job {
        Job {
            seed: run_seed(self.seed, &case.id, run),
            case: Arc::clone(case),
            run,
        }
    }

    pub fn is_adaptive(&self, ordinal: usize) -> bool {
        self.adaptive_cases.get(ordinal).copied().unwrap_or(false)
    }

    /// The ids of the selected cases that run with `runs: auto`, in suite order.
    pub fn adaptive_case_ids(&self) -> Vec<String> {
        self.case_ids()
            .into_iter()
            .enumerate()
            .filter(|(ordinal, _)| self.is_adaptive(*ordinal))
            .map(|(_, id)| id)
            .collect()
    }

    /// Every run of the plan not already in `done`, case by case, run by run. Made lazily:
    /// a million runs must not mean a million jobs in memory. (Adaptive cases are
    /// scheduled by `schedule::Schedule` instead.)
    pub fn jobs<'a>(
        &'a self,
        done: &'a HashSet<(String, u32)>,
    ) -> impl Iterator<Item = Job> + Send + 'a {
        (0..self.cases.len()).flat_map(move |ordinal| {
            let case = self.case_job(ordinal);
            let id = case.id.clone();
            self.runs_of(ordinal)
                .filter(move |run| !done.contains(&(id.clone(), *run)))
                .map(move |run| self.job(&case, run))
        })
    }

    /// How many runs of each selected case are still to make, in suite order: its run
    /// count less the recorded runs that are its (counted over `done`, not over every run
    /// the case may make).
    pub fn remaining(&self, done: &HashSet<(String, u32)>) -> Vec<(String, u32)> {
        let ordinals: std::collections::HashMap<&str, usize> = self
            .cases
            .iter()
            .enumerate()
            .map(|(ordinal, &index)| (self.suite.spec.cases[index].id.as_str(), ordinal))
            .collect();
        let mut recorded = vec![0u32; self.cases.len()];
        for (id, run) in done {
            if let Some(&ordinal) = ordinals.get(id.as_str())
                && self.holds_run(ordinal, *run)
            {
                recorded[ordinal] += 1;
            }
        }
        self.cases
            .iter()
            .enumerate()
            .map(|(ordinal, &index)| {
                let id = &self.suite.spec.cases[index].id;
                (
                    id.clone(),
                    self.run_count(ordinal).saturating_sub(recorded[ordinal]),
                )
            })
            .collect()
    }

    /// How many runs the plan (or shard) holds in all, done or not.
    pub fn planned_runs(&self) -> u32 {
        (0..self.cases.len())
            .map(|ordinal| self.run_count(ordinal))
            .fold(0u32, u32::saturating_add)
    }

    /// How many runs of the `ordinal`-th selected case this plan (or shard) makes at most:
    /// an adaptive case's `max_runs` counted, not listed.
    pub fn run_count(&self, ordinal: usize) -> u32 {
        match (self.is_adaptive(ordinal), self.adaptive) {
            (true, Some(settings)) => {
                if self.shard.is_none_or(|s| s.holds_case(ordinal)) {
                    settings.max_runs
                } else {
                    0
                }
            }
            _ => self.runs_of(ordinal).count() as u32,
        }
    }

    /// Whether run `run` of the `ordinal`-th selected case is this plan's to make.
    fn holds_run(&self, ordinal: usize, run: u32) -> bool {
        let adaptive = self.is_adaptive(ordinal);
        let count = match (adaptive, self.adaptive) {
            (true, Some(settings)) => settings.max_runs,
            _ => self.runs,
        };
        run < count
            && self.shard.is_none_or(|s| {
                if adaptive {
                    s.holds_case(ordinal)
                } else {
                    s.holds(ordinal, self.runs, run)
                }
            })
    }

    /// The run indices of the `ordinal`-th selected case that this plan (or shard) makes
    /// (at most: an adaptive case may stop before its `max_runs`).
    pub fn runs_of(&self, ordinal: usize) -> impl Iterator<Item = u32> + '_ {
        let count = match (self.is_adaptive(ordinal), self.adaptive) {
            (true, Some(settings)) => settings.max_runs,
            _ => self.runs,
        };
        (0..count).filter(move |run| self.holds_run(ordinal, *run))
    }

    /// The selected cases with at least one run in this plan (all of them, unsharded).
    pub fn case_ids_with_runs(&self) -> Vec<String> {
        self.cases
            .iter()
            .enumerate()
            .filter(|(ordinal, _)| self.run_count(*ordinal) > 0)
            .map(|(_, &i)| self.suite.spec.cases[i].id.clone())
            .collect()
    }
}

/// Where report folders go when `--out` is not given.
pub const DEFAULT_REPORTS: &str = "reports";

/// `parent/name`, or `name-2`, `-3`… when a folder of that name is there already: two
/// runs of one suite in the same second each get their own report.
fn fresh_folder(parent: &Path, name: &str) -> PathBuf {
    let first = parent.join(name);
    if !first.exists() {
        return first;
    }
    (2u32..)
        .map(|n| parent.join(format!("{name}-{n}")))
        .find(|path| !path.exists())
        .unwrap_or(first)
}

/// A plan that cannot be made from this command line.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("no case `{id}` in the suite (cases: {})", known.join(", "))]
    UnknownCase { id: String, known: Vec<String> },
    #[error("no suite has a case `{0}`")]
    NoSuiteHasCase(String),
    #[error("no case matches the selection")]
    NothingSelected,
    #[error("{} is not a report folder: it has no {META_FILE}", .0.display())]
    NotAReport(PathBuf),
    #[error("cannot read {}", path.display())]
    Meta {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--baseline {}: no {SUMMARY_FILE} there or in {}/{slug}", dir.display(), dir.display())]
    NoBaseline { dir: PathBuf, slug: String },
    #[error("--baseline")]
    Baseline(#[source] SummaryError),
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// A folder started by one suite, asked to continue with another.
    #[error("{} was started by suite `{started_by}`, but its suite file now holds `{suite}`: a folder is only resumed by the suite that started it", dir.display())]
    ForeignFolder {
        dir: PathBuf,
        started_by: String,
        suite: String,
    },
    /// Shard folders that do not make one run.
    #[error("{0}")]
    Shards(String),
}

/// What the command line may override in a suite; `None` keeps the suite's own value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub runs: Option<RunsSetting>,
    pub seed: Option<u64>,
    pub concurrency: Option<usize>,
    pub timeout_ms: Option<u64>,
    pub shard: Option<Shard>,
    /// A report folder (or a folder of them, one per suite) to gate against.
    pub baseline: Option<PathBuf>,
}

impl Overrides {
    /// Zero runs, slots or milliseconds cannot be meant: refused, as the suite file does.
    pub fn check(&self) -> Result<(), PlanError> {
        if self.runs == Some(RunsSetting::Fixed(0)) {
            return Err(PlanError::Zero("--runs"));
        }
        if self.concurrency == Some(0) {
            return Err(PlanError::Zero("--concurrency"));
        }
        if self.timeout_ms == Some(0) {
            return Err(PlanError::Zero("--timeout-ms"));
        }
        Ok(())
    }
}

impl Plan {
    /// A plan for `cases` of `suite`, the suite's settings under `overrides`.
    pub fn new(suite: Suite, cases: Vec<usize>, overrides: &Overrides, out_dir: PathBuf) -> Plan {
        let spec = &suite.spec;
        // `--runs` wins over the suite and its cases; a case's own `runs` over the suite's.
        let setting_of = |index: usize| {
            overrides
                .runs
                .or(spec.cases[index].runs)
                .unwrap_or(spec.runs)
        };
        let adaptive_cases: Vec<bool> = cases
            .iter()
            .map(|&i| setting_of(i) == RunsSetting::Auto)
            .collect();
        let adaptive = adaptive_cases.contains(&true).then(|| AdaptiveSettings {
            min_runs: spec.min_runs,
            max_runs: spec.max_runs.max(1),
            tolerance: spec.tolerance.0,
            alpha: spec.significance.0,
            undecided: spec.undecided,
        });
        let fixed = match overrides.runs {
            Some(RunsSetting::Fixed(n)) => n,
            _ => match spec.runs {
                RunsSetting::Fixed(n) => n,
                RunsSetting::Auto => crate::suite::schema::DEFAULT_RUNS,
            },
        };
        Plan {
            runs: fixed.max(1),
            adaptive,
            adaptive_cases,
            seed: overrides.seed.or(suite.spec.seed).unwrap_or(0),
            concurrency: overrides
                .concurrency
                .or(suite.spec.concurrency)
                .unwrap_or(DEFAULT_CONCURRENCY)
                .max(1),
            timeout: Duration::from_millis(
                overrides.timeout_ms.unwrap_or(suite.spec.timeout_ms).max(1),
            ),
            cases,
            suite: Arc::new(suite),
            out_dir,
            baseline: None,
            shard: overrides.shard,
            warnings: Vec::new(),
        }
    }

    /// The adaptive settings a report folder was started with (resume, merge): the suite
    /// file may have changed since, the plan may not.
    fn adopt_adaptive(&mut self, meta: &Meta) {
        self.adaptive = meta.adaptive;
        self.adaptive_cases = self
            .case_ids()
            .iter()
            .map(|id| meta.adaptive.is_some() && meta.adaptive_cases.contains(id))
            .collect();
    }

    /// What `meta.json` records before the first run.
    pub fn meta(&self) -> Meta {
        let suite_path =
            std::fs::canonicalize(&self.suite.path).unwrap_or_else(|_| self.suite.path.clone());
        Meta {
            ragprobe_version: env!("CARGO_PKG_VERSION").to_owned(),
            suite_name: self.suite.spec.name.clone(),
            suite_path,
            suite_fingerprint: self.suite.fingerprint,
            chain_path: self.suite.chain_override.clone(),
            shard: self.shard.map(|s| s.to_string()),
            seed: self.seed,
            runs: self.runs,
            adaptive: self.adaptive,
            adaptive_cases: self.adaptive_case_ids(),
            cases: self.case_ids(),
            chain: self.suite.chain.describe(),
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }
}

/// Plans for fresh runs of `suites`: the selected cases of each, into `out` (the folder
/// itself for one suite, a folder per suite inside it for several) or a new timestamped
/// folder under `reports/`.
pub fn fresh(
    suites: Vec<Suite>,
    selection: &Selection,
    out: Option<&Path>,
    overrides: &Overrides,
) -> Result<Vec<Plan>, PlanError> {
    overrides.check()?;
    let stamp = timestamp();
    let several = suites.len() > 1;
    let mut plans = Vec::new();
    let mut unmatched: Vec<String> = selection.ids.clone();
    let mut slugs = UniqueSlugs::default();
    for suite in suites {
        // With several suites, a `--case` id needs to exist in one of them only.
        let own = Selection {
            ids: selection
                .ids
                .iter()
                .filter(|id| suite.spec.cases.iter().any(|c| &c.id == *id))
                .cloned()
                .collect(),
            filter: selection.filter.clone(),
        };
        unmatched.retain(|id| !own.ids.contains(id));
        if !selection.ids.is_empty() && own.ids.is_empty() {
            continue;
        }
        let cases = own.apply(&suite.spec.cases)?;
        if cases.is_empty() {
            continue;
        }
        let slug = slugs.claim(&suite.spec.name);
        let out_dir = match (out, several) {
            (Some(out), false) => out.to_owned(),
            (Some(out), true) => out.join(&slug),
            (None, _) => fresh_folder(Path::new(DEFAULT_REPORTS), &format!("{stamp}-{slug}")),
        };
        let mut plan = Plan::new(suite, cases, overrides, out_dir);
        plan.baseline = baseline_for(overrides.baseline.as_deref(), &slug)?;
        plans.push(plan);
    }
    if let Some(id) = unmatched.first() {
        return Err(PlanError::NoSuiteHasCase(id.clone()));
    }
    if plans.is_empty() {
        return Err(PlanError::NothingSelected);
    }
    Ok(plans)
}

/// Plans that finish the report folders in `dir` (the folder itself, or the suite folders
/// inside it): the same suite, cases, runs and seed as `meta.json` records.
pub fn resume(top: &Path, overrides: &Overrides) -> Result<Vec<Plan>, PlanError> {
    overrides.check()?;
    let mut dirs = Vec::new();
    if top.join(META_FILE).exists() {
        dirs.push(top.to_owned());
    } else if let Ok(entries) = std::fs::read_dir(top) {
        let mut inner: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join(META_FILE).exists())
            .collect();
        inner.sort();
        dirs.extend(inner);
    }
    if dirs.is_empty() {
        return Err(PlanError::NotAReport(top.to_owned()));
    }
    let mut plans = Vec::new();
    for dir in dirs {
        let meta = Meta::read(&dir).map_err(|source| PlanError::Meta {
            path: dir.clone(),
            source,
        })?;
        let suite = load_with(&meta.suite_path, meta.chain_path.as_deref())?;
        let cases = case_indices(&suite, &meta.cases).map_err(|id| {
            ConfigError::from(
                Problem::new(
                    &meta.suite_path,
                    format!("case `{id}` was planned but is no longer in the suite"),
                )
                .hint("restore the case, or start a fresh run"),
            )
        })?;
        if suite.spec.name != meta.suite_name {
            return Err(PlanError::ForeignFolder {
                dir: dir.clone(),
                started_by: meta.suite_name.clone(),
                suite: suite.spec.name.clone(),
            });
        }
        // A suite folder inside a multi-suite report is named by its (unique) slug.
        let slug = match dir.file_name() {
            Some(name) if dir.parent() == Some(top) => name.to_string_lossy().into_owned(),
            _ => slug(&suite.spec.name),
        };
        let resumed = Overrides {
            runs: Some(RunsSetting::Fixed(meta.runs)),
            seed: Some(meta.seed),
            shard: meta.shard.as_deref().map(Shard::parse).transpose()?,
            ..overrides.clone()
        };
        let changed = suite.fingerprint != meta.suite_fingerprint;
        let mut plan = Plan::new(suite, cases, &resumed, dir.clone());
        plan.adopt_adaptive(&meta);
        plan.baseline = baseline_for(overrides.baseline.as_deref(), &slug)?;
        if changed {
            plan.warnings.push(format!(
                "{} (or its chain or corpus) changed since {} was started; \
                 the remaining runs use the current files",
                meta.suite_path.display(),
                dir.display()
            ));
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// The plan of the whole run that `metas` (the shard folders of one `run --shard k/n`)
/// split, written into `out`; shards that do not belong together are an error.
pub fn merged(
    metas: &[(PathBuf, Meta)],
    out: &Path,
    baseline: Option<&Path>,
) -> Result<Plan, PlanError> {
    let Some((first_dir, first)) = metas.first() else {
        return Err(PlanError::Shards("no shard folders given".into()));
    };
    let mut seen: Vec<u32> = Vec::new();
    let mut count = None;
    for (dir, meta) in metas {
        let same = meta.suite_fingerprint == first.suite_fingerprint
            && meta.seed == first.seed
            && meta.runs == first.runs
            && meta.adaptive == first.adaptive
            && meta.adaptive_cases == first.adaptive_cases
            && meta.cases == first.cases
            && meta.chain_path == first.chain_path;
        if !same {
            return Err(PlanError::Shards(format!(
                "{} is not a shard of the same run as {}: suite, chain, seed, runs and cases must match",
                dir.display(),
                first_dir.display()
            )));
        }
        let Some(text) = meta.shard.as_deref() else {
            return Err(PlanError::Shards(format!(
                "{} holds a whole run, not a shard",
                dir.display()
            )));
        };
        let shard = Shard::parse(text)?;
        if *count.get_or_insert(shard.count) != shard.count {
            return Err(PlanError::Shards(
                "the shards split the run in different numbers of slices".into(),
            ));
        }
        if seen.contains(&shard.index) {
            return Err(PlanError::Shards(format!("shard {shard} is given twice")));
        }
        seen.push(shard.index);
    }
    let count = count.unwrap_or(1);
    let missing: Vec<String> = (0..count)
        .filter(|k| !seen.contains(k))
        .map(|k| format!("{}/{count}", k + 1))
        .collect();
    if !missing.is_empty() {
        return Err(PlanError::Shards(format!(
            "shards missing: {}; merge needs every slice",
            missing.join(", ")
        )));
    }
    let suite = load_with(&first.suite_path, first.chain_path.as_deref())?;
    let changed = suite.fingerprint != first.suite_fingerprint;
    let cases = case_indices(&suite, &first.cases).map_err(|id| {
        PlanError::Shards(format!(
            "case `{id}` is no longer in {}",
            first.suite_path.display()
        ))
    })?;
    let overrides = Overrides {
        runs: Some(RunsSetting::Fixed(first.runs)),
        seed: Some(first.seed),
        ..Overrides::default()
    };
    let slug = slug(&suite.spec.name);
    let mut plan = Plan::new(suite, cases, &overrides, out.to_owned());
    plan.adopt_adaptive(first);
    plan.baseline = baseline_for(baseline, &slug)?;
    if changed {
        plan.warnings.push(format!(
            "{} (or its chain or corpus) changed since the shards ran; the reports use the current files",
            first.suite_path.display()
        ));
    }
    Ok(plan)
}

/// The positions in `suite` of the case ids a report folder planned; the first id the
/// suite no longer has is the error.
fn case_indices(suite: &Suite, ids: &[String]) -> Result<Vec<usize>, String> {
    ids.iter()
        .map(|id| {
            suite
                .spec
                .cases
                .iter()
                .position(|c| &c.id == id)
                .ok_or_else(|| id.clone())
        })
        .collect()
}

/// The folder holding this suite's baseline summary: `dir` itself, or `dir/<slug>` when
/// the baseline is a multi-suite report. Read once here, so a broken baseline stops the
/// command before any run.
fn baseline_for(
    dir: Option<&Path>,
    slug: &str,
) -> Result<Option<crate::model::summary::Baseline>, PlanError> {
    let Some(dir) = dir else {
        return Ok(None);
    };
    let found = [dir.to_owned(), dir.join(slug)]
        .into_iter()
        .find(|candidate| candidate.join(SUMMARY_FILE).exists())
        .ok_or_else(|| PlanError::NoBaseline {
            dir: dir.to_owned(),
            slug: slug.to_owned(),
        })?;
    let summary = read_summary(&found).map_err(PlanError::Baseline)?;
    Ok(Some(crate::model::summary::Baseline {
        label: found.display().to_string(),
        summary,
    }))
}

/// `20261127-171620`, in UTC, for report folder names.
fn timestamp() -> String {
    let digits: String = humantime::format_rfc3339_seconds(SystemTime::now())
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("{}-{}", &digits[..8], &digits[8..])
}

/// Folder names for the suites of one run: the slug of each name, with `-2`, `-3` … for
/// names that map to a slug already taken (`Support Bot` and `support-bot`), so no two
/// suites ever share a report folder.
#[derive(Debug, Default)]
pub struct UniqueSlugs {
    taken: HashSet<String>,
}

impl UniqueSlugs {
    pub fn claim(&mut self, name: &str) -> String {
        let base = slug(name);
        let mut candidate = base.clone();
        let mut n = 1;
        while !self.taken.insert(candidate.clone()) {
            n += 1;
            candidate = format!("{base}-{n}");
        }
        candidate
    }
}

/// Lower-case letters, digits and dashes.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let trimmed = out.trim_end_matches('-').to_owned();
    if trimmed.is_empty() {
        "suite".to_owned()
    } else {
        trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_timestamps() {
        assert_eq!(
            slug("Databricks support (before fix)"),
            "databricks-support-before-fix"
        );
        assert_eq!(slug("!!!"), "suite");
        let mut unique = UniqueSlugs::default();
        assert_eq!(unique.claim("Support Bot"), "support-bot");
        assert_eq!(unique.claim("support-bot"), "support-bot-2");
        assert_eq!(unique.claim("support bot!"), "support-bot-3");
        let t = timestamp();
        assert_eq!(t.len(), 15, "{t}");
        assert_eq!(t.as_bytes()[8], b'-');
        assert!(
            t.chars().filter(|c| *c != '-').all(|c| c.is_ascii_digit()),
            "{t}"
        );
    }

    fn cases() -> Vec<CaseSpec> {
        serde_yaml::from_str(
            "[{id: storage, question: q}, {id: cost, question: q, tags: [pricing]}, {id: cost-eu, question: q}]",
        )
        .expect("cases")
    }

    #[test]
    fn selection_by_id_pattern_and_tag() {
        let all = cases();
        let pick = |ids: &[&str], filter: Option<&str>| {
            Selection {
                ids: ids.iter().map(|s| (*s).to_owned()).collect(),
                filter: filter.map(str::to_owned),
            }
            .apply(&all)
        };
        assert_eq!(pick(&[], None).ok(), Some(vec![0, 1, 2]));
        assert_eq!(pick(&["cost"], None).ok(), Some(vec![1]));
        assert_eq!(pick(&[], Some("cost")).ok(), Some(vec![1, 2]));
        assert_eq!(pick(&[], Some("tag:pricing")).ok(), Some(vec![1]));
        assert!(
            pick(&["nope"], None)
                .unwrap_err()
                .to_string()
                .contains("cases: storage, cost, cost-eu")
        );
    }
}
