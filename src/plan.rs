//! A resolved plan: one suite, the cases selected, how many runs, which seed, where the
//! results go. Built from the suite and the command line (or from `meta.json` on resume);
//! everything downstream takes a `Plan` and never looks at raw flags.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::seed::run_seed;
use crate::suite::Suite;
use crate::suite::load::merged_vars;
use crate::suite::schema::CaseSpec;

/// Runs in flight at once when neither the suite nor `--concurrency` says.
pub const DEFAULT_CONCURRENCY: usize = 8;

#[derive(Debug)]
pub struct Plan {
    pub suite: Arc<Suite>,
    /// Indices into `suite.spec.cases`, in suite order.
    pub cases: Vec<usize>,
    pub runs: u32,
    pub seed: u64,
    pub concurrency: usize,
    pub timeout: Duration,
    pub out_dir: PathBuf,
    /// The report folder to gate against, with `--baseline`.
    pub baseline: Option<PathBuf>,
    /// Only this share of the cases × runs (`--shard k/n`).
    pub shard: Option<Shard>,
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
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {text}: write k/n with 1 <= k <= n, e.g. 2/4");
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
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

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
    pub spec: CaseSpec,
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
    pub fn apply(&self, cases: &[CaseSpec]) -> Result<Vec<usize>, String> {
        for id in &self.ids {
            if !cases.iter().any(|c| &c.id == id) {
                let known: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
                return Err(format!(
                    "no case `{id}` in the suite (cases: {})",
                    known.join(", ")
                ));
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

    /// Every run of the plan not already in `done`, case by case, run by run. Made lazily:
    /// a million runs must not mean a million jobs in memory.
    pub fn jobs<'a>(
        &'a self,
        done: &'a HashSet<(String, u32)>,
    ) -> impl Iterator<Item = Job> + Send + 'a {
        self.cases
            .iter()
            .enumerate()
            .flat_map(move |(ordinal, &index)| {
                let spec = &self.suite.spec.cases[index];
                let case = Arc::new(CaseJob {
                    id: spec.id.clone(),
                    question: spec.question.clone(),
                    vars: merged_vars(&self.suite.spec.vars, &spec.vars),
                    spec: spec.clone(),
                });
                let seed = self.seed;
                let (runs, shard) = (self.runs, self.shard);
                (0..self.runs)
                    .filter(move |run| shard.is_none_or(|s| s.holds(ordinal, runs, *run)))
                    .filter(move |run| !done.contains(&(spec.id.clone(), *run)))
                    .map(move |run| Job {
                        seed: run_seed(seed, &case.id, run),
                        case: Arc::clone(&case),
                        run,
                    })
            })
    }

    /// How many runs of each selected case are still to make, in suite order.
    pub fn remaining(&self, done: &HashSet<(String, u32)>) -> Vec<(String, u32)> {
        self.cases
            .iter()
            .enumerate()
            .map(|(ordinal, &index)| {
                let id = &self.suite.spec.cases[index].id;
                let left = self
                    .runs_of(ordinal)
                    .filter(|run| !done.contains(&(id.clone(), *run)))
                    .count();
                (id.clone(), left as u32)
            })
            .collect()
    }

    /// The run indices of the `ordinal`-th selected case that this plan (or shard) makes.
    fn runs_of(&self, ordinal: usize) -> impl Iterator<Item = u32> + '_ {
        (0..self.runs)
            .filter(move |run| self.shard.is_none_or(|s| s.holds(ordinal, self.runs, *run)))
    }

    /// The selected cases with at least one run in this plan (all of them, unsharded).
    pub fn case_ids_with_runs(&self) -> Vec<String> {
        self.cases
            .iter()
            .enumerate()
            .filter(|(ordinal, _)| self.runs_of(*ordinal).next().is_some())
            .map(|(_, &i)| self.suite.spec.cases[i].id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(pick(&[], None), Ok(vec![0, 1, 2]));
        assert_eq!(pick(&["cost"], None), Ok(vec![1]));
        assert_eq!(pick(&[], Some("cost")), Ok(vec![1, 2]));
        assert_eq!(pick(&[], Some("tag:pricing")), Ok(vec![1]));
        assert!(
            pick(&["nope"], None)
                .unwrap_err()
                .contains("cases: storage, cost, cost-eu")
        );
    }
}
