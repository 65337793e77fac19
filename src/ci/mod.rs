//! What makes ragprobe native in a CI system: the shard from the CI's parallel jobs
//! (`shard`), and on GitHub Actions the job summary, annotations and the pull-request
//! comment (`github`).

pub mod github;
pub mod group;
pub mod shard;
