//! Errors of the core: one enum, each variant saying what is wrong in words a developer can act
//! on. The bindings map these onto a smaller FFI enum.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bundle file missing: {0}")]
    MissingFile(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid bundle manifest: {0}")]
    InvalidManifest(String),
    #[error("unsupported bundle format version {found} (this build reads version {supported})")]
    UnsupportedFormat { found: u64, supported: u64 },
    #[error("SHA-256 of bundle file {file} does not match the manifest: the file is corrupted, truncated or was modified")]
    HashMismatch { file: String },
    #[error("vocabulary mismatch: the tokenizer has {tokenizer} tokens but the model {model}")]
    VocabMismatch { tokenizer: usize, model: usize },
    #[error("invalid tokenizer: {0}")]
    InvalidTokenizer(String),
    #[error("invalid model: {0}")]
    InvalidModel(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("invalid input: {0}")]
    InvalidInput(String),
}

impl Error {
    pub(crate) fn model(e: impl std::fmt::Display) -> Self {
        Error::InvalidModel(format!("{e:#}"))
    }

    pub(crate) fn inference(e: impl std::fmt::Display) -> Self {
        Error::Inference(format!("{e:#}"))
    }
}
