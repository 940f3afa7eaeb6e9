//! The crate's one error type.

use std::path::PathBuf;

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
    /// The S3 settings given to [`Bucket::s3`](crate::Bucket::s3) are not valid.
    #[error("bucket: invalid s3 settings")]
    InvalidS3Settings(#[source] SettingError),
    /// A local bucket's directory could not be created.
    #[error("bucket: cannot create {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The object store could not be set up (a local directory or an S3 bucket).
    #[error("bucket: cannot open {what}")]
    OpenStore {
        /// The directory or bucket, e.g. `S3 bucket files at https://…`.
        what: String,
        /// Why.
        #[source]
        source: object_store::Error,
    },
    /// A file could not be read or written.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// `read` or `write`.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server could not start: the relay log or the listening socket.
    #[error("cannot start")]
    Start(#[source] BoxError),
    /// Serving failed.
    #[error("serving failed")]
    Serve(#[source] std::io::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
