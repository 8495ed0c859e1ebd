//! Model bundles: a directory holding `manifest.json`, the tokenizer and the ONNX model.
//!
//! Nothing in a bundle is trusted before its manifest has been parsed, its format version
//! accepted and the SHA-256 of every file it lists checked: a truncated download, a flipped bit
//! or a swapped file is refused with a typed error before tract or the tokenizer see a byte.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The manifest format this build reads.
pub const FORMAT_VERSION: u64 = 1;
/// Largest file a bundle may list; a manifest claiming more is refused before reading.
pub(crate) const MAX_FILE_BYTES: u64 = 256 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format_version: u64,
    pub model_id: String,
    pub language: String,
    pub vocab_size: usize,
    /// How many tokens of committed text the model sees.
    pub context_tokens: usize,
    pub bos_token: String,
    pub model: ModelInfo,
    /// File name of the tokenizer (HF `tokenizers` JSON).
    pub tokenizer: String,
    /// File name of the word-end table (`training/word_ends.py`: one byte per token); absent
    /// in bundles made before it, whose searches ask the model instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub word_ends: Option<String>,
    /// SHA-256 (hex) of every file of the bundle but the manifest and its signature.
    pub files: BTreeMap<String, String>,
    /// Which files are encrypted, and with which key (absent: none is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<crate::encryption::Encryption>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub file: String,
    pub bits: u32,
    pub parameters: u64,
    pub d_model: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub head_dim: usize,
    pub max_positions: usize,
}

/// A bundle whose manifest and hashes have been verified, with its files in memory.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub model_bytes: Vec<u8>,
    pub tokenizer_bytes: Vec<u8>,
    pub word_ends_bytes: Option<Vec<u8>>,
    /// Who signed it, as far as the trust policy it was opened under established.
    pub provenance: crate::trust::Provenance,
}

impl Bundle {
    /// Opens a bundle directory or pack under the development trust policy (hashes checked,
    /// signature not required) with no weights key; see [`crate::trust::open_bundle`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Bundle> {
        crate::trust::open_bundle(dir, &crate::trust::TrustPolicy::development(), None)
    }
}

/// A name a bundle file may have: no directory part, no NUL, not `.` or `..`.
pub(crate) fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['/', '\\', '\0']) && name != ".." && name != "."
}

/// Parses and validates a manifest; every file it names must be hashed, with a plain name.
pub fn parse_manifest(raw: &[u8]) -> Result<Manifest> {
    let value: serde_json::Value = serde_json::from_slice(raw)
        .map_err(|e| Error::InvalidManifest(format!("not JSON: {e}")))?;
    // The version is checked before the rest so a future format gets the right error.
    match value.get("format_version").and_then(|v| v.as_u64()) {
        Some(FORMAT_VERSION) => {}
        Some(found) => {
            return Err(Error::UnsupportedFormat {
                found,
                supported: FORMAT_VERSION,
            })
        }
        None => return Err(Error::InvalidManifest("no integer format_version".into())),
    }
    let m: Manifest =
        serde_json::from_value(value).map_err(|e| Error::InvalidManifest(e.to_string()))?;
    for name in m.files.keys() {
        let plain = is_plain_file_name(name)
            && name != crate::trust::MANIFEST_FILE
            && name != crate::trust::SIGNATURE_FILE;
        if !plain {
            return Err(Error::InvalidManifest(format!(
                "file name {name:?} is not a plain file name"
            )));
        }
    }
    for needed in [&m.model.file, &m.tokenizer]
        .into_iter()
        .chain(&m.word_ends)
    {
        if !m.files.contains_key(needed) {
            return Err(Error::InvalidManifest(format!(
                "{needed} is not listed with a hash in files"
            )));
        }
    }
    if let Some(enc) = &m.encryption {
        crate::encryption::validate(enc, |f| m.files.contains_key(f))?;
    }
    let shape_ok = m.vocab_size > 0
        && m.context_tokens > 0
        && m.model.n_layers > 0
        && m.model.n_heads > 0
        && m.model.head_dim > 0
        && m.model.n_heads * m.model.head_dim == m.model.d_model
        && m.context_tokens < m.model.max_positions;
    if !shape_ok {
        return Err(Error::InvalidManifest(
            "inconsistent model dimensions".into(),
        ));
    }
    Ok(m)
}

pub(crate) fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingFile(path.to_path_buf()),
        _ => Error::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    if meta.len() > limit {
        return Err(Error::InvalidManifest(format!(
            "{} is larger than {limit} bytes",
            path.display()
        )));
    }
    std::fs::read(path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a byte string, in lowercase hex (the manifest's form).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
