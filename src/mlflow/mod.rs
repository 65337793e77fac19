//! MLflow as the results home: every suite run an MLflow run with params, metrics, the
//! report files and its traces, every verdict an assessment on its trace (`publish`);
//! baselines taken from the experiment's last run; traces searched for `import`.
//! Only the tracking server's REST API is used.

pub mod assessments;
pub mod client;
pub mod group;
pub mod link;
pub mod publish;
pub mod target;
pub mod values;
