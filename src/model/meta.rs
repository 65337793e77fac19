//! `meta.json`: what a report folder was made from, written before the first run, so
//! `--resume` can finish the same plan and `merge` can check shards belong together.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const META_FILE: &str = "meta.json";
/// The MLflow runs a report folder went to (with `--mlflow`).
pub const MLFLOW_FILE: &str = "mlflow.json";

/// What a report folder was made from, written before the first run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub ragprobe_version: String,
    pub suite_name: String,
    /// The suite file, as an absolute path where it could be resolved.
    pub suite_path: PathBuf,
    pub suite_fingerprint: u64,
    /// The chain file given with `--chain` in place of the suite's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_path: Option<PathBuf>,
    /// `k/n` when this folder holds one shard of the runs (`run --shard`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub seed: u64,
    pub runs: u32,
    /// With `runs: auto`: how adaptive cases stop, and which they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<crate::sequential::AdaptiveSettings>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adaptive_cases: Vec<String>,
    /// The selected case ids, in suite order.
    pub cases: Vec<String>,
    pub chain: String,
    pub created_at: String,
}

impl Meta {
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::atomic::write(&dir.join(META_FILE), text + "\n")
    }

    /// Whether `other` plans the same runs: same suite, cases, seed, runs, shard and chain
    /// file. The fingerprint and the time may differ (a resumed suite may have been edited).
    pub fn same_plan(&self, other: &Meta) -> bool {
        self.suite_name == other.suite_name
            && self.suite_path == other.suite_path
            && self.chain_path == other.chain_path
            && self.shard == other.shard
            && self.seed == other.seed
            && self.runs == other.runs
            && self.adaptive == other.adaptive
            && self.adaptive_cases == other.adaptive_cases
            && self.cases == other.cases
    }

    pub fn read(dir: &Path) -> std::io::Result<Meta> {
        let text = std::fs::read_to_string(dir.join(META_FILE))?;
        serde_json::from_str(&text).map_err(|err| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {err}", dir.join(META_FILE).display()),
            )
        })
    }
}
