//! `CliError`: everything a command can fail with, and the exit code each one means.

use crate::server::{ConfigError, ServeError};

/// Exit code for API and user errors.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for usage errors (clap uses it too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when the service cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The admin token environment variable is not set.
    #[error("TOKENGATE_ADMIN_TOKEN is not set; export the service's admin token first")]
    MissingAdminToken,
    /// `--url` is not a usable URL.
    #[error("invalid --url {url}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// Why it is unusable.
        reason: String,
    },
    /// No connection to the service.
    #[error("cannot reach the tokengate service at {url}: {reason}")]
    Unreachable {
        /// The service URL.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The service answered with an error.
    #[error("{}", api_message(*.status, field.as_deref(), message))]
    Api {
        /// HTTP status.
        status: u16,
        /// The request field at fault, if named.
        field: Option<String>,
        /// The service's message.
        message: String,
    },
    /// The service answered something this CLI does not understand.
    #[error("unexpected answer from the service (HTTP {status}): {detail}")]
    UnexpectedResponse {
        /// HTTP status.
        status: u16,
        /// What was wrong with it.
        detail: String,
    },
    /// A value given on the command line is unusable.
    #[error("{0}")]
    InvalidArgument(String),
    /// The user did not confirm a deletion.
    #[error("aborted: token {id} was not deleted{hint}")]
    Aborted {
        /// The token id.
        id: String,
        /// How to proceed, if there is a way.
        hint: &'static str,
    },
    /// `serve` was misconfigured.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `serve` failed while running.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

fn api_message(status: u16, field: Option<&str>, message: &str) -> String {
    match field {
        Some(field) => format!("{field}: {message} (HTTP {status})"),
        None => format!("{message} (HTTP {status})"),
    }
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Unreachable { .. } => EXIT_UNREACHABLE,
            Self::BadUrl { .. } | Self::Config(_) => EXIT_USAGE,
            Self::MissingAdminToken
            | Self::Api { .. }
            | Self::UnexpectedResponse { .. }
            | Self::InvalidArgument(_)
            | Self::Aborted { .. }
            | Self::Serve(_)
            | Self::Output(_) => EXIT_FAILURE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_name_the_field() {
        let error = CliError::Api {
            status: 400,
            field: Some("expires_at".to_owned()),
            message: "must be in the future".to_owned(),
        };
        assert_eq!(error.to_string(), "expires_at: must be in the future (HTTP 400)");
        assert_eq!(error.exit_code(), EXIT_FAILURE);
        let error = CliError::Unreachable { url: "http://x".to_owned(), reason: "refused".to_owned() };
        assert_eq!(error.exit_code(), EXIT_UNREACHABLE);
        assert_eq!(CliError::Config(ConfigError::MissingAdminToken).exit_code(), EXIT_USAGE);
    }
}
