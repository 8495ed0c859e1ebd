//! Optional encryption of bundle files at rest with an app-provided key (ChaCha20-Poly1305).
//!
//! An encrypted file holds a random 12-byte nonce followed by the AEAD ciphertext and tag; the
//! associated data binds it to its file name. The manifest lists which files are encrypted and
//! the id of the key, and hashes the encrypted bytes, so the signature and hash checks run
//! before any decryption. Decrypted bytes exist only in memory.
//!
//! What this protects: the weights copied off a device's storage, out of an app package or a
//! download cache are useless without the key. What it does not: the key ships inside the app,
//! and the decrypted model lives in process memory while a predictor is open, so anyone who
//! can run code as the app (a rooted device, a debugger, a repackaged app) can recover both.
//! It raises the cost of casual extraction; it is not DRM.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};

/// The only algorithm of this format.
pub const ALGORITHM: &str = "chacha20poly1305";
const NONCE_BYTES: usize = 12;
/// Prefix of the associated data of every encrypted file.
const AAD_CONTEXT: &[u8] = b"nextword encrypted bundle file v1\n";

/// The manifest's description of the encrypted files of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Encryption {
    pub algorithm: String,
    /// [`WeightsKey::key_id`] of the key the files were encrypted with.
    pub key_id: String,
    /// Names of the encrypted files (among the manifest's files).
    pub files: Vec<String>,
}

/// A 256-bit key that decrypts a bundle's encrypted files; wiped from memory when dropped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct WeightsKey([u8; 32]);

impl WeightsKey {
    pub fn from_bytes(bytes: [u8; 32]) -> WeightsKey {
        WeightsKey(bytes)
    }

    /// Parses the text form: 64 hex digits, surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<WeightsKey> {
        let mut key = WeightsKey([0; 32]);
        hex::decode_to_slice(text.trim(), &mut key.0)
            .map_err(|e| Error::InvalidKey(format!("weights key is not 64 hex digits: {e}")))?;
        Ok(key)
    }

    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<WeightsKey> {
        let mut key = WeightsKey([0; 32]);
        getrandom::fill(&mut key.0)
            .map_err(|e| Error::InvalidKey(format!("no randomness for a new key: {e}")))?;
        Ok(key)
    }

    pub fn to_hex(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(hex::encode(self.0))
    }

    /// Names the key without revealing it: the first 8 bytes of a domain-separated SHA-256.
    pub fn key_id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(b"nextword weights key id\n")
            .chain_update(self.0)
            .finalize();
        hex::encode(&digest[..8])
    }
}

impl fmt::Debug for WeightsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WeightsKey(id {})", self.key_id())
    }
}

impl PartialEq for WeightsKey {
    fn eq(&self, other: &Self) -> bool {
        self.key_id() == other.key_id()
    }
}

impl Eq for WeightsKey {}

fn aad(file: &str) -> Vec<u8> {
    [AAD_CONTEXT, file.as_bytes()].concat()
}

/// Encrypts the content of bundle file `file` with a fresh random nonce.
pub fn encrypt(key: &WeightsKey, file: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce)
        .map_err(|e| Error::InvalidKey(format!("no randomness for a nonce: {e}")))?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad(file),
            },
        )
        .map_err(|_| Error::InvalidInput(format!("{file} is too large to encrypt")))?;
    Ok([&nonce[..], &sealed].concat())
}

/// Decrypts bundle file `file` (already hash-checked) with the app's key.
pub fn decrypt(
    encryption: &Encryption,
    file: &str,
    sealed: &[u8],
    key: Option<&WeightsKey>,
) -> Result<Vec<u8>> {
    let key = key.ok_or_else(|| Error::WeightsKeyRequired {
        file: file.to_string(),
    })?;
    if key.key_id() != encryption.key_id {
        return Err(Error::WrongWeightsKey {
            file: file.to_string(),
            expected: encryption.key_id.clone(),
            given: key.key_id(),
        });
    }
    if sealed.len() < NONCE_BYTES {
        return Err(Error::DecryptionFailed {
            file: file.to_string(),
        });
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
    ChaCha20Poly1305::new(Key::from_slice(&key.0))
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad(file),
            },
        )
        .map_err(|_| Error::DecryptionFailed {
            file: file.to_string(),
        })
}

/// Checks a manifest's encryption entry: known algorithm, only files the manifest lists.
pub(crate) fn validate(encryption: &Encryption, listed: impl Fn(&str) -> bool) -> Result<()> {
    if encryption.algorithm != ALGORITHM {
        return Err(Error::InvalidManifest(format!(
            "encryption algorithm {:?} is not {ALGORITHM}",
            encryption.algorithm
        )));
    }
    match encryption.files.iter().find(|f| !listed(f)) {
        Some(f) => Err(Error::InvalidManifest(format!(
            "encrypted file {f} is not listed in files"
        ))),
        None => Ok(()),
    }
}
