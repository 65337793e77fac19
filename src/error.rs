//! Errors that end a command before it could come to an [`Outcome`], each with the exit
//! code it maps to. `main` prints the error and its causes, one per line.
//!
//! [`Outcome`]: crate::exit_codes::Outcome

use std::path::PathBuf;

use crate::backend::BackendError;
use crate::backend::error::ClientError;
use crate::config::problem::ConfigError;
use crate::exit_codes;
use crate::export::send::OtlpConfigError;
use crate::plan::PlanError;
use crate::session::SessionError;
use crate::store::folder::FolderError;
use crate::suite::discover::DiscoverError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Problems in suite, chain or corpus files.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A command line that cannot be carried out (unknown case, conflicting flags).
    #[error("{0}")]
    Usage(String),
    /// A folder given as a report folder is not one.
    #[error("{path} is not a report folder")]
    NotAReport {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The OTLP flags or `OTEL_EXPORTER_OTLP_*` variables cannot be used.
    #[error(transparent)]
    Otlp(#[from] OtlpConfigError),
    /// A server the command needs did not answer or refused.
    #[error(transparent)]
    Unreachable(#[from] BackendError),
    /// A server the command needs did not answer (said in one line).
    #[error("{0}")]
    Unavailable(String),
    /// The command line and the suites do not make a plan.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// No suites where the command looked.
    #[error(transparent)]
    Discover(#[from] DiscoverError),
    /// The report folder cannot take the run.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// A case could not be appended to a suite file.
    #[error(transparent)]
    Append(#[from] crate::suite::append::AppendError),
    /// Shard folders could not be combined.
    #[error(transparent)]
    Merge(#[from] crate::store::merge::MergeError),
    /// A suite run stopped short of its reports.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The MLflow flags or `MLFLOW_*` variables cannot be used.
    #[error(transparent)]
    MlflowConfig(#[from] crate::mlflow::target::MlflowConfigError),
    /// MLflow did not take what was sent.
    #[error(transparent)]
    Mlflow(#[from] crate::mlflow::link::PublishError),
    /// The OTLP receiver cannot listen where asked.
    #[error(transparent)]
    Receiver(#[from] crate::receiver::ReceiverError),
    /// The HTTP client could not be set up.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Ctrl-C or SIGTERM: what was being done, and how to finish it.
    #[error("interrupted {0}")]
    Interrupted(String),
    /// Reading or writing files failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl AppError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> AppError {
        let context = context.into();
        move |source| AppError::Io { context, source }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            // Refused as asked (credentials, an unknown experiment, not MLflow): a
            // configuration error; unreachable or failing: infrastructure.
            AppError::Mlflow(e) if e.is_config() => exit_codes::CONFIG_ERROR,
            AppError::Mlflow(_) => exit_codes::INFRASTRUCTURE,
            AppError::Config(_)
            | AppError::Usage(_)
            | AppError::NotAReport { .. }
            | AppError::Otlp(_)
            | AppError::MlflowConfig(_)
            | AppError::Client(_)
            | AppError::Receiver(_)
            | AppError::Plan(_)
            | AppError::Discover(_)
            | AppError::Folder(_)
            | AppError::Merge(_)
            | AppError::Append(_)
            | AppError::Io { .. } => exit_codes::CONFIG_ERROR,
            AppError::Session(SessionError::Preflight { .. })
            | AppError::Unreachable(_)
            | AppError::Unavailable(_) => exit_codes::INFRASTRUCTURE,
            // Runs may have been made and recorded: not "nothing was run".
            AppError::Session(
                SessionError::Record { .. }
                | SessionError::Write { .. }
                | SessionError::Aggregate { .. }
                | SessionError::Report(_),
            ) => exit_codes::INFRASTRUCTURE,
            AppError::Session(SessionError::ForeignFolder { .. } | SessionError::Read { .. }) => {
                exit_codes::CONFIG_ERROR
            }
            AppError::Interrupted(_) => exit_codes::INTERRUPTED,
        }
    }

    /// The message and every cause under it, one line each.
    pub fn report(&self) -> String {
        let mut text = format!("error: {self}");
        let mut cause = std::error::Error::source(self);
        while let Some(inner) = cause {
            text.push_str(&format!("\n  caused by: {inner}"));
            cause = inner.source();
        }
        text
    }
}
