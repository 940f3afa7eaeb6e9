//! The crate's one error type.

use filesync_core::BoxError;
use filesync_core::server::s3::SettingError;

/// Errors of this crate and its binary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing or malformed; the message names the flag and the environment
    /// variable.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// The HTTP client for deletes and health checks could not be built.
    #[error("cannot build the http client")]
    HttpClient(#[source] reqwest::Error),
    /// A URL to sign is not a URL.
    #[error("cannot sign {url:?}: not a url")]
    Url {
        /// The URL (unsigned: no credentials in it).
        url: String,
        /// Why it does not parse.
        #[source]
        source: url::ParseError,
    },
    /// SigV4 signing failed.
    #[error("signing failed")]
    Signing(#[source] BoxError),
    /// The server could not start: the relay log or the listening socket.
    #[error("cannot start")]
    Start(#[source] BoxError),
    /// Serving failed.
    #[error("serving failed")]
    Serve(#[source] std::io::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
