//! The crate's one error type.

use crate::types::{ContentHash, ParseError};

/// A boxed error cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `filesync-core`. Whether retrying can help is decided where
/// the error is made: see [`Error::is_retryable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value failed validation (a hash, id, key, path, timestamp or sequence number).
    #[error(transparent)]
    Invalid(#[from] ParseError),

    /// Input that is well-formed piece by piece but not acceptable as a whole, or data that
    /// does not encode or decode.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was rejected.
        what: &'static str,
        /// Why.
        reason: String,
        /// The underlying error (e.g. the JSON parser's), when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// Something that should exist does not.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `file livestore-filesync-files/s/abc`.
        what: String,
    },

    /// Bytes did not hash to the expected content hash; nothing was stored (WEAK-5).
    #[error("hash mismatch: expected {expected}, got {actual}")]
    HashMismatch {
        /// The hash the bytes should have had.
        expected: ContentHash,
        /// The hash they had.
        actual: ContentHash,
    },

    /// An I/O operation failed.
    #[error("{op} {path}")]
    Io {
        /// The operation, e.g. `"write"`.
        op: &'static str,
        /// The path it was working on.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A byte stream handed to a write failed part-way; nothing became visible.
    #[error("input stream failed")]
    Stream {
        /// Why the stream failed.
        #[source]
        source: BoxError,
    },

    /// A [`Store`](crate::store::Store) operation failed.
    #[error("store {op} failed")]
    Store {
        /// What the store was doing.
        op: &'static str,
        /// Whether trying again may succeed (e.g. a busy database).
        retryable: bool,
        /// The underlying error.
        #[source]
        source: BoxError,
    },

    /// The store file is held by another process or connection.
    #[error("store {path} is in use by another process")]
    StoreLocked {
        /// The store file.
        path: String,
    },

    /// The file is not a filesync store: corrupt, or another program's database. It was not modified.
    #[error("{path} is not a filesync store: {reason}")]
    NotAStore {
        /// The file.
        path: String,
        /// What was found instead.
        reason: String,
        /// The error that showed it, when there was one (a database or parser error).
        #[source]
        source: Option<BoxError>,
    },

    /// A commit was refused because it would break an invariant of the event log.
    #[error("event log conflict: {reason}")]
    Conflict {
        /// What conflicted.
        reason: String,
    },

    /// Remote storage (or the relay) refused or failed a request.
    #[error("remote storage: {what}")]
    Remote {
        /// What failed and how, e.g. `/v1/sign/upload failed with status: 500` or
        /// `relay pull: timed out`.
        what: String,
        /// The HTTP status, when there was a response.
        status: Option<u16>,
        /// Whether trying again may succeed (network errors, 5xx, 429).
        retryable: bool,
        /// The underlying error (the HTTP client's, an answer that did not parse), when there
        /// is one.
        #[source]
        source: Option<BoxError>,
    },

    /// A preprocessor failed (PRE-4); nothing was written.
    #[error("preprocessor failed for {name}")]
    Preprocessor {
        /// The file's name or MIME type.
        name: String,
        /// The preprocessor's error.
        #[source]
        source: BoxError,
    },

    /// The operation is not available on this implementation or target.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What is not supported.
        what: &'static str,
    },

    /// The operation did not finish in time.
    #[error("{what} timed out")]
    Timeout {
        /// What timed out.
        what: &'static str,
    },

    /// The component was shut down.
    #[error("shut down")]
    Shutdown,
}

impl Error {
    /// Whether trying the same operation again may succeed: I/O failures (other than
    /// not-found and permission problems), failed input streams, busy stores and timeouts.
    /// A hash mismatch is retryable because it comes from a transfer that may go right next
    /// time. Bad input, missing things and foreign files are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::InvalidInput
                    | std::io::ErrorKind::InvalidData
                    | std::io::ErrorKind::Unsupported
            ),
            Error::Stream { .. } | Error::Timeout { .. } | Error::StoreLocked { .. } => true,
            Error::Store { retryable, .. } | Error::Remote { retryable, .. } => *retryable,
            // A download whose bytes did not match may succeed from a healthy source next time.
            Error::HashMismatch { .. } => true,
            Error::Invalid(_)
            | Error::InvalidInput { .. }
            | Error::NotFound { .. }
            | Error::NotAStore { .. }
            | Error::Conflict { .. }
            | Error::Unsupported { .. }
            | Error::Preprocessor { .. }
            | Error::Shutdown => false,
        }
    }

    /// The message followed by each cause, `: `-separated: the text the engine puts in
    /// [`SyncEvent`](crate::events::SyncEvent)s and in a file's `lastSyncError`, where only a
    /// string travels.
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            let more = e.to_string();
            // A transparent wrapper repeats its source's text; say it once.
            if !text.ends_with(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            cause = e.source();
        }
        text
    }

    /// Whether this is [`Error::NotFound`] (or an I/O not-found).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound { .. } => true,
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }

    pub(crate) fn io(
        op: &'static str,
        path: impl std::fmt::Display,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            op,
            path: path.to_string(),
            source,
        }
    }

    pub(crate) fn not_found(what: impl std::fmt::Display) -> Self {
        Error::NotFound {
            what: what.to_string(),
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what,
            reason: reason.into(),
            source: None,
        }
    }

    /// [`Error::InvalidInput`] with the error that caused it.
    pub(crate) fn invalid_because(
        what: &'static str,
        reason: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::InvalidInput {
            what,
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    /// `what` is not valid JSON (or does not have the expected shape); `source` says where.
    pub(crate) fn bad_json(what: &'static str, source: serde_json::Error) -> Self {
        Self::invalid_because(what, "not valid JSON", source)
    }

    /// `what` could not be encoded as JSON.
    pub(crate) fn unencodable(what: &'static str, source: serde_json::Error) -> Self {
        Self::invalid_because(what, "cannot be encoded as JSON", source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_names_every_cause_once() {
        let io = std::io::Error::other("disk on fire");
        let err = Error::Remote {
            what: "sign upload".into(),
            status: None,
            retryable: true,
            source: Some(Box::new(Error::io("write", "a/b", io))),
        };
        assert_eq!(
            err.report(),
            "remote storage: sign upload: write a/b: disk on fire"
        );
        // A transparent variant is not repeated.
        let parse = Error::from(
            crate::types::ContentHash::parse("not a hash").expect_err("a bad hash is refused"),
        );
        assert_eq!(parse.report(), parse.to_string());
    }
}
