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
    #[error(transparent)]
    UserStore(#[from] crate::personal::StoreError),
    #[error("bundle is not signed (no manifest.sig) and this app accepts only bundles signed by a pinned key")]
    Unsigned,
    #[error("bundle signature file is malformed: {0}")]
    MalformedSignature(String),
    #[error("bundle is signed by key {key_id}, which this app does not pin")]
    UntrustedSigner { key_id: String },
    #[error("bundle signature does not verify: manifest.json was modified after signing or the signature is corrupt")]
    BadSignature,
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("bundle file {file} is encrypted and no weights key was given")]
    WeightsKeyRequired { file: String },
    #[error("bundle file {file} is encrypted with key {expected}, not with the given key {given}")]
    WrongWeightsKey {
        file: String,
        expected: String,
        given: String,
    },
    #[error("cannot decrypt bundle file {file}: the encrypted content was modified")]
    DecryptionFailed { file: String },
    #[error("invalid bundle pack: {0}")]
    InvalidPack(String),
    #[error("invalid delta update: {0}")]
    InvalidDelta(String),
    #[error("delta update was made for another bundle version (base manifest {expected}, installed {installed})")]
    DeltaBaseMismatch { expected: String, installed: String },
    #[error("bundle store at {path}: {reason}")]
    Store { path: PathBuf, reason: String },
}

impl Error {
    pub(crate) fn model(e: impl std::fmt::Display) -> Self {
        Error::InvalidModel(format!("{e:#}"))
    }

    pub(crate) fn inference(e: impl std::fmt::Display) -> Self {
        Error::Inference(format!("{e:#}"))
    }
}
