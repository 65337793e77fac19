//! `--shard auto`: the slice this job runs, from the CI's own parallel-job variables, so a
//! suite spreads over the parallelism the CI already provides.

use crate::plan::Shard;

/// `--shard`: `k/n`, or `auto` (from the CI's variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    Fixed(Shard),
    Auto,
}

impl ShardArg {
    pub fn parse(text: &str) -> Result<ShardArg, crate::plan::ShardError> {
        if text.trim() == "auto" {
            return Ok(ShardArg::Auto);
        }
        Shard::parse(text).map(ShardArg::Fixed)
    }

    /// The shard to run: a fixed one as given, `auto` from the environment, saying where
    /// it came from.
    pub fn resolve(
        self,
        get: impl Fn(&str) -> Option<String>,
        shards: Option<u32>,
    ) -> Result<(Shard, Option<String>), AutoShardError> {
        match self {
            ShardArg::Fixed(shard) => Ok((shard, None)),
            ShardArg::Auto => from_env(get, shards).map(|auto| (auto.shard, Some(auto.from))),
        }
    }
}

/// Where a CI system puts a parallel job's index and the number of jobs.
struct Source {
    ci: &'static str,
    index: &'static str,
    /// `None`: the count comes from `--shards N` (a Kubernetes Indexed Job's pods know
    /// only their index).
    total: Option<&'static str>,
    /// Whether the first job is 1 (GitLab) rather than 0.
    one_based: bool,
}

const SOURCES: [Source; 4] = [
    Source {
        ci: "GitLab CI",
        index: "CI_NODE_INDEX",
        total: Some("CI_NODE_TOTAL"),
        one_based: true,
    },
    Source {
        ci: "CircleCI",
        index: "CIRCLE_NODE_INDEX",
        total: Some("CIRCLE_NODE_TOTAL"),
        one_based: false,
    },
    Source {
        ci: "Buildkite",
        index: "BUILDKITE_PARALLEL_JOB",
        total: Some("BUILDKITE_PARALLEL_JOB_COUNT"),
        one_based: false,
    },
    Source {
        ci: "a Kubernetes Indexed Job",
        index: "JOB_COMPLETION_INDEX",
        total: None,
        one_based: false,
    },
];

/// The shard and a line saying where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoShard {
    pub shard: Shard,
    pub from: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AutoShardError {
    #[error(
        "--shard auto: no parallel-job variables in the environment (looked for GitLab's CI_NODE_INDEX/CI_NODE_TOTAL, CircleCI's CIRCLE_NODE_INDEX/CIRCLE_NODE_TOTAL, Buildkite's BUILDKITE_PARALLEL_JOB/BUILDKITE_PARALLEL_JOB_COUNT, a Kubernetes Indexed Job's JOB_COMPLETION_INDEX with --shards N); on GitHub Actions use a matrix and --shard ${{{{ matrix.shard }}}}/N"
    )]
    NotFound,
    #[error("--shard auto: {0}")]
    Bad(String),
}

/// The shard from the environment `get` reads; `shards` is `--shards N`.
pub fn from_env(
    get: impl Fn(&str) -> Option<String>,
    shards: Option<u32>,
) -> Result<AutoShard, AutoShardError> {
    for source in &SOURCES {
        let Some(index_text) = get(source.index).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let number = |name: &str, text: &str| {
            text.trim()
                .parse::<u32>()
                .map_err(|_| AutoShardError::Bad(format!("{name}={text:?} is not a whole number")))
        };
        let index = number(source.index, &index_text)?;
        let (count, count_from) = match source.total {
            Some(total) => {
                let text = get(total).ok_or_else(|| {
                    AutoShardError::Bad(format!("{} is set but {total} is not", source.index))
                })?;
                let count = number(total, &text)?;
                if let Some(n) = shards
                    && n != count
                {
                    return Err(AutoShardError::Bad(format!(
                        "--shards {n} disagrees with {total}={count}"
                    )));
                }
                (count, format!("{total}={count}"))
            }
            None => {
                let n = shards.ok_or_else(|| {
                    AutoShardError::Bad(format!(
                        "{} is set (by {}): give the number of jobs with --shards N (the Job's completions)",
                        source.index, source.ci
                    ))
                })?;
                (n, format!("--shards {n}"))
            }
        };
        let zero_based = if source.one_based {
            index.checked_sub(1).ok_or_else(|| {
                AutoShardError::Bad(format!(
                    "{}=0, but {} counts jobs from 1",
                    source.index, source.ci
                ))
            })?
        } else {
            index
        };
        if count == 0 || zero_based >= count {
            return Err(AutoShardError::Bad(format!(
                "{}={index} is not a job of {count} ({} counts from {})",
                source.index,
                source.ci,
                if source.one_based { 1 } else { 0 }
            )));
        }
        let shard = Shard {
            index: zero_based,
            count,
        };
        return Ok(AutoShard {
            shard,
            from: format!(
                "shard {shard} from {}'s {}={index_text}, {count_from}",
                source.ci,
                source.index,
                index_text = index_text.trim()
            ),
        });
    }
    Err(AutoShardError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Variables set, `--shards`, and what is expected.
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<u32>, &'a str);

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn each_ci_gives_its_shard_minding_where_it_counts_from() {
        let cases: [Case; 5] = [
            (
                &[("CI_NODE_INDEX", "1"), ("CI_NODE_TOTAL", "4")],
                None,
                "1/4",
            ),
            (
                &[("CI_NODE_INDEX", "4"), ("CI_NODE_TOTAL", "4")],
                None,
                "4/4",
            ),
            (
                &[("CIRCLE_NODE_INDEX", "0"), ("CIRCLE_NODE_TOTAL", "3")],
                None,
                "1/3",
            ),
            (
                &[
                    ("BUILDKITE_PARALLEL_JOB", "2"),
                    ("BUILDKITE_PARALLEL_JOB_COUNT", "3"),
                ],
                None,
                "3/3",
            ),
            (&[("JOB_COMPLETION_INDEX", "5")], Some(8), "6/8"),
        ];
        for (vars, shards, want) in cases {
            let auto = from_env(env(vars), shards).expect("a shard");
            assert_eq!(auto.shard.to_string(), want, "{vars:?}");
            assert!(auto.from.contains(vars[0].0), "{}", auto.from);
        }
    }

    #[test]
    fn missing_or_inconsistent_variables_are_refused_with_the_reason() {
        assert_eq!(from_env(env(&[]), None), Err(AutoShardError::NotFound));
        let refused: [Case; 6] = [
            (
                &[("CI_NODE_INDEX", "0"), ("CI_NODE_TOTAL", "4")],
                None,
                "counts jobs from 1",
            ),
            (
                &[("CI_NODE_INDEX", "5"), ("CI_NODE_TOTAL", "4")],
                None,
                "not a job of 4",
            ),
            (
                &[("CIRCLE_NODE_INDEX", "3"), ("CIRCLE_NODE_TOTAL", "3")],
                None,
                "not a job of 3",
            ),
            (&[("CI_NODE_INDEX", "1")], None, "CI_NODE_TOTAL is not"),
            (&[("JOB_COMPLETION_INDEX", "2")], None, "--shards N"),
            (
                &[("CI_NODE_INDEX", "1"), ("CI_NODE_TOTAL", "4")],
                Some(3),
                "disagrees",
            ),
        ];
        for (vars, shards, want) in refused {
            let error = from_env(env(vars), shards)
                .expect_err("refused")
                .to_string();
            assert!(error.contains(want), "{vars:?}: {error}");
        }
        let error = from_env(env(&[("CI_NODE_INDEX", "x"), ("CI_NODE_TOTAL", "2")]), None)
            .expect_err("refused");
        assert!(error.to_string().contains("not a whole number"));
    }
}
