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
const MAX_FILE_BYTES: u64 = 256 << 20;

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
    /// SHA-256 (hex) of every file of the bundle but the manifest.
    pub files: BTreeMap<String, String>,
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
}

impl Bundle {
    pub fn open(dir: impl AsRef<Path>) -> Result<Bundle> {
        let dir = dir.as_ref().to_path_buf();
        let manifest_path = dir.join("manifest.json");
        let raw = read_file(&manifest_path, MAX_FILE_BYTES)?;
        let manifest = parse_manifest(&raw)?;
        let mut files = BTreeMap::new();
        for (name, want) in &manifest.files {
            let bytes = read_file(&dir.join(name), MAX_FILE_BYTES)?;
            let got = hex(&Sha256::digest(&bytes));
            if !got.eq_ignore_ascii_case(want) {
                return Err(Error::HashMismatch { file: name.clone() });
            }
            files.insert(name.clone(), bytes);
        }
        let model_bytes = files
            .remove(&manifest.model.file)
            .expect("checked by parse_manifest");
        let tokenizer_bytes = files
            .remove(&manifest.tokenizer)
            .expect("checked by parse_manifest");
        Ok(Bundle {
            dir,
            manifest,
            model_bytes,
            tokenizer_bytes,
        })
    }
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
        let plain = !name.is_empty()
            && name != "manifest.json"
            && !name.contains(['/', '\\'])
            && name != ".."
            && name != ".";
        if !plain {
            return Err(Error::InvalidManifest(format!(
                "file name {name:?} is not a plain file name"
            )));
        }
    }
    for needed in [&m.model.file, &m.tokenizer] {
        if !m.files.contains_key(needed) {
            return Err(Error::InvalidManifest(format!(
                "{needed} is not listed with a hash in files"
            )));
        }
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

fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>> {
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
