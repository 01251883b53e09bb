//! The one error type of the library.
//!
//! Every variant names the file or stage it is about, so that a message printed by the
//! binary is enough to act on. User mistakes (a bad path, a missing model, a foreign
//! index folder) are told apart from internal failures by [`Error::is_user_error`],
//! which the binary maps to exit code 1 (user) or 2 (internal).
//!
//! Not for: turning errors into exit codes and messages (the binary's `cli`).

use std::path::PathBuf;

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in pinpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation on `path` failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A model folder lacks a file or holds a malformed one.
    #[error("model folder {dir}: {what}")]
    Model {
        /// The model folder.
        dir: PathBuf,
        /// What is missing or wrong, naming the file.
        what: String,
    },
    /// The tensor library failed (forward pass, weights loading).
    #[error("model inference failed: {0}")]
    Candle(#[from] candle_core::Error),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A file of the index folder is damaged.
    #[error("index file {path} is corrupt: {what}. Recover with `pinpoint index <FOLDER> --index <INDEX> --rebuild` (FOLDER: the folder it indexes)")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The folder is not a pinpoint index, or one written by another version.
    #[error("{path} is not a usable pinpoint index: {what}")]
    IncompatibleIndex {
        /// The index folder.
        path: PathBuf,
        /// Why it cannot be used.
        what: String,
    },
    /// The index was built with another embedding model than the one configured.
    #[error("index was built with model {found} (dimension {found_dim}) but {expected} (dimension {expected_dim}) is configured; use the same model (`--model DIR`) or rebuild with `pinpoint index <FOLDER> --index <INDEX> --rebuild --model DIR`")]
    ModelMismatch {
        /// Model recorded in the manifest.
        found: String,
        /// Its dimension.
        found_dim: usize,
        /// Model configured now.
        expected: String,
        /// Its dimension.
        expected_dim: usize,
    },
    /// A vector of the wrong length was given to the dense index.
    #[error("vector dimension mismatch: expected {expected}, got {got}")]
    DimensionMismatch {
        /// Dimension of the index.
        expected: usize,
        /// Dimension received.
        got: usize,
    },
    /// Another process holds the writer lock.
    #[error(
        "the index is locked by another writer (pid {pid}, lock file {path}); wait for it to finish, or remove the lock file if no such process runs"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The holder's process id.
        pid: u32,
    },
    /// The tantivy (BM25) index failed. Its message is in this one's (tantivy nests the
    /// same cause two or three times in its own), so it is not also given as a source.
    #[error("lexical index: {}", describe_tantivy(.0))]
    Lexical(tantivy::TantivyError),
    /// The HNSW index failed.
    #[error("dense index {path}: {what}")]
    Dense {
        /// File or folder of the dense index.
        path: PathBuf,
        /// What failed.
        what: String,
    },
    /// An input file (dataset, queries) has a malformed line.
    #[error("{path}:{line}: {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// A request or configuration value is invalid.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// The setting or argument.
        what: String,
        /// Why it is rejected.
        why: String,
    },
    /// An encoding/decoding error of an index record.
    #[error("{path}: cannot decode record: {what}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// Decoder message.
        what: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(what: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }

    /// Shorthand for [`Error::Corrupt`].
    pub fn corrupt(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        // The message is followed by ". Recover with ...": no double full stop.
        let what: String = what.into();
        Error::Corrupt {
            path: path.into(),
            what: what.trim_end_matches('.').to_string(),
        }
    }

    /// True when the user can fix the cause (bad argument, missing file, wrong model,
    /// foreign or damaged index); false for failures inside the engine.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::Io { .. }
                | Error::Model { .. }
                | Error::Corrupt { .. }
                | Error::IncompatibleIndex { .. }
                | Error::ModelMismatch { .. }
                | Error::Locked { .. }
                | Error::Parse { .. }
                | Error::Invalid { .. }
        )
    }
}

impl From<tantivy::TantivyError> for Error {
    fn from(e: tantivy::TantivyError) -> Self {
        Error::Lexical(e)
    }
}

/// A tantivy error in one line: a file that cannot be opened is told as "file: cause"
/// instead of tantivy's Debug dump, which repeats the cause.
pub(crate) fn describe_tantivy(e: &tantivy::TantivyError) -> String {
    use tantivy::directory::error::OpenReadError;
    match e {
        tantivy::TantivyError::OpenReadError(OpenReadError::IoError { io_error, filepath }) => {
            format!("cannot read {}: {io_error}", filepath.display())
        }
        tantivy::TantivyError::OpenReadError(OpenReadError::FileDoesNotExist(p)) => {
            format!("missing file {}", p.display())
        }
        other => other.to_string(),
    }
}

/// Extension to attach a path to `std::io::Result`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
