//! Errors that end a command, and the exit code each one maps to.

use crate::exit_codes;
use crate::suite::error::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Problems in suite, chain or corpus files.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A command line that cannot be carried out (unknown case, missing folder).
    #[error("{0}")]
    Usage(String),
    /// A server the command needs did not answer or refused (one line: what and why).
    #[error("{0}")]
    Unreachable(String),
    /// Reading or writing the report folder failed.
    #[error("{context}: {source}")]
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
            AppError::Config(_) | AppError::Usage(_) | AppError::Io { .. } => {
                exit_codes::CONFIG_ERROR
            }
            AppError::Unreachable(_) => exit_codes::INFRASTRUCTURE,
        }
    }
}
