//! Who may ship a model to this app: Ed25519 signatures over the bundle manifest, and the
//! loader that checks them before anything else of a bundle is read.
//!
//! A signed bundle carries `manifest.sig` beside `manifest.json`: a small JSON object naming the
//! signer's public key and an Ed25519 signature over [`SIGNING_CONTEXT`] followed by the exact
//! bytes of `manifest.json`. The manifest holds the SHA-256 of every other file, so the one
//! signature covers the whole bundle; `manifest.sig` itself is never listed in the manifest.
//!
//! An app pins the public keys it accepts in a [`TrustPolicy`]. The loader refuses, with a typed
//! [`Error`], a bundle that is unsigned, signed by a key the app does not pin, or whose manifest
//! or signature was changed after signing; only a policy that explicitly allows unsigned
//! development bundles skips the signature check (hashes are checked either way).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::bundle::{parse_manifest, read_file, sha256_hex, Bundle};
use crate::encryption::{self, WeightsKey};
use crate::error::{Error, Result};
use crate::pack;

/// File of a bundle holding its signature.
pub const SIGNATURE_FILE: &str = "manifest.sig";
/// File of a bundle holding its manifest.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Prefix of every signed message, so a nextword bundle signature can never be replayed as a
/// signature over anything else the same key signs (and the reverse).
pub const SIGNING_CONTEXT: &[u8] = b"nextword bundle manifest v1\n";
/// Largest manifest or signature file read.
const MAX_META_BYTES: u64 = 1 << 20;
/// The only signature algorithm of this format.
const ALGORITHM: &str = "ed25519";

/// An Ed25519 public key an app trusts to sign its bundles.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|e| Error::InvalidKey(format!("not an Ed25519 public key: {e}")))
    }

    /// Parses the text form: 64 hex digits, surrounding whitespace ignored.
    pub fn from_hex(text: &str) -> Result<PublicKey> {
        PublicKey::from_bytes(&hex32(text, "public key")?)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// Short name of the key for messages and logs: its first 8 bytes in hex.
    pub fn key_id(&self) -> String {
        hex::encode(&self.0.as_bytes()[..8])
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

/// A vendor's Ed25519 signing key. Keep it off devices and out of app packages.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<SecretKey> {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *seed)
            .map_err(|e| Error::InvalidKey(format!("no randomness for a new key: {e}")))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// Parses the text form: the 32-byte seed as 64 hex digits.
    pub fn from_hex(text: &str) -> Result<SecretKey> {
        let seed = zeroize::Zeroizing::new(hex32(text, "secret key")?);
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    pub fn to_hex(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(hex::encode(self.0.to_bytes()))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The `manifest.sig` content signing these exact manifest bytes.
    pub fn sign_manifest(&self, manifest: &[u8]) -> Vec<u8> {
        let signature = self.0.sign(&signed_message(manifest));
        let file = SignatureFile {
            algorithm: ALGORITHM.into(),
            public_key: self.public_key().to_hex(),
            signature: hex::encode(signature.to_bytes()),
        };
        let mut text = serde_json::to_string_pretty(&file).expect("plain struct serializes");
        text.push('\n');
        text.into_bytes()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key().to_hex())
    }
}

fn hex32(text: &str, what: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out)
        .map_err(|e| Error::InvalidKey(format!("{what} is not 64 hex digits: {e}")))?;
    Ok(out)
}

fn signed_message(manifest: &[u8]) -> Vec<u8> {
    [SIGNING_CONTEXT, manifest].concat()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    algorithm: String,
    /// The signer's public key in hex: tells which pinned key to check against, and names an
    /// unpinned signer in the error.
    public_key: String,
    signature: String,
}

/// Which bundles an app accepts.
///
/// The default is [`TrustPolicy::development`]: no key is pinned and unsigned bundles are
/// accepted (their hashes are still checked, which catches corruption but not a deliberate
/// edit). There is no key every app could trust, so the SDK cannot pick one: a production app
/// pins its vendor's keys with [`TrustPolicy::pinned`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Keys whose signature is accepted; several allow key rotation.
    pub pinned_keys: Vec<PublicKey>,
    /// Accept bundles without `manifest.sig`. A present signature is still checked when keys
    /// are pinned: a bad signature is never ignored.
    pub allow_unsigned: bool,
}

impl TrustPolicy {
    /// Production: only bundles signed by one of `keys`.
    pub fn pinned(keys: impl IntoIterator<Item = PublicKey>) -> TrustPolicy {
        TrustPolicy {
            pinned_keys: keys.into_iter().collect(),
            allow_unsigned: false,
        }
    }

    /// Development: any bundle whose hashes match, signed or not.
    pub fn development() -> TrustPolicy {
        TrustPolicy {
            pinned_keys: Vec::new(),
            allow_unsigned: true,
        }
    }

    /// Checks `signature` (the content of `manifest.sig`, if the bundle has one) over the
    /// exact `manifest` bytes against this policy.
    pub fn check(&self, manifest: &[u8], signature: Option<&[u8]>) -> Result<Provenance> {
        let Some(signature) = signature else {
            return if self.allow_unsigned {
                Ok(Provenance::Unsigned)
            } else {
                Err(Error::Unsigned)
            };
        };
        if self.pinned_keys.is_empty() && self.allow_unsigned {
            return Ok(Provenance::Unverified);
        }
        let file: SignatureFile = serde_json::from_slice(signature)
            .map_err(|e| Error::MalformedSignature(e.to_string()))?;
        if file.algorithm != ALGORITHM {
            return Err(Error::MalformedSignature(format!(
                "algorithm {:?}, expected {ALGORITHM}",
                file.algorithm
            )));
        }
        let signer = PublicKey::from_hex(&file.public_key)
            .map_err(|e| Error::MalformedSignature(e.to_string()))?;
        let mut sig_bytes = [0u8; 64];
        hex::decode_to_slice(file.signature.trim(), &mut sig_bytes).map_err(|e| {
            Error::MalformedSignature(format!("signature is not 128 hex digits: {e}"))
        })?;
        if !self.pinned_keys.contains(&signer) {
            return Err(Error::UntrustedSigner {
                key_id: signer.key_id(),
            });
        }
        // verify_strict also refuses the malleable and weak-key forms plain Ed25519 allows.
        signer
            .0
            .verify_strict(
                &signed_message(manifest),
                &Signature::from_bytes(&sig_bytes),
            )
            .map_err(|_| Error::BadSignature)?;
        Ok(Provenance::Signed {
            key_id: signer.key_id(),
        })
    }
}

impl Default for TrustPolicy {
    fn default() -> Self {
        TrustPolicy::development()
    }
}

/// What the loader established about who made a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// Signed by the pinned key with this id.
    Signed { key_id: String },
    /// Carries a signature that was not checked: the policy pins no key.
    Unverified,
    /// No signature; accepted because the policy allows unsigned bundles.
    Unsigned,
}

impl fmt::Display for Provenance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provenance::Signed { key_id } => write!(f, "signed by pinned key {key_id}"),
            Provenance::Unverified => {
                write!(f, "signature present but not checked (no key pinned)")
            }
            Provenance::Unsigned => write!(f, "unsigned (development bundle)"),
        }
    }
}

/// Where a bundle's files come from: a directory, or a single-file pack read into memory.
pub(crate) enum Source {
    Dir(PathBuf),
    Pack(BTreeMap<String, Vec<u8>>),
}

impl Source {
    /// A directory, or a pack file (read whole, so it is checked as one snapshot).
    pub(crate) fn open(path: &Path) -> Result<Source> {
        if path.is_file() {
            let bytes = read_file(path, pack::MAX_PACK_BYTES)?;
            Ok(Source::Pack(pack::read(&bytes)?))
        } else {
            Ok(Source::Dir(path.to_path_buf()))
        }
    }

    /// A file of the bundle, `None` when it does not exist.
    pub(crate) fn read_optional(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        match self {
            Source::Dir(dir) => match read_file(&dir.join(name), limit) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(Error::MissingFile(_)) => Ok(None),
                Err(e) => Err(e),
            },
            Source::Pack(files) => match files.get(name) {
                Some(bytes) if bytes.len() as u64 > limit => Err(Error::InvalidManifest(format!(
                    "{name} is larger than {limit} bytes"
                ))),
                found => Ok(found.cloned()),
            },
        }
    }

    pub(crate) fn read(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        self.read_optional(name, limit)?
            .ok_or_else(|| Error::MissingFile(self.path_of(name)))
    }

    fn path_of(&self, name: &str) -> PathBuf {
        match self {
            Source::Dir(dir) => dir.join(name),
            Source::Pack(_) => PathBuf::from(name),
        }
    }

    fn location(&self) -> PathBuf {
        match self {
            Source::Dir(dir) => dir.clone(),
            Source::Pack(_) => PathBuf::new(),
        }
    }
}

/// Opens a bundle directory or pack file under `policy`: the signature first, then the
/// manifest, then the SHA-256 of every listed file, then decryption of encrypted files with
/// `weights_key`. Nothing unverified reaches the tokenizer or the model.
pub fn open_bundle(
    path: impl AsRef<Path>,
    policy: &TrustPolicy,
    weights_key: Option<&WeightsKey>,
) -> Result<Bundle> {
    let path = path.as_ref();
    let source = Source::open(path)?;
    let mut bundle = open_source(&source, policy, weights_key)?;
    bundle.dir = if path.is_file() {
        path.to_path_buf()
    } else {
        source.location()
    };
    Ok(bundle)
}

/// Opens an in-memory pack (see [`crate::pack`]) under `policy`.
pub fn open_pack_bytes(
    pack_bytes: &[u8],
    policy: &TrustPolicy,
    weights_key: Option<&WeightsKey>,
) -> Result<Bundle> {
    open_source(&Source::Pack(pack::read(pack_bytes)?), policy, weights_key)
}

pub(crate) fn open_source(
    source: &Source,
    policy: &TrustPolicy,
    weights_key: Option<&WeightsKey>,
) -> Result<Bundle> {
    let raw = source.read(MANIFEST_FILE, MAX_META_BYTES)?;
    let signature = source.read_optional(SIGNATURE_FILE, MAX_META_BYTES)?;
    let provenance = policy.check(&raw, signature.as_deref())?;
    log::debug!("bundle trust: {provenance}");
    let manifest = parse_manifest(&raw)?;
    let mut files = BTreeMap::new();
    for (name, want) in &manifest.files {
        let bytes = source.read(name, crate::bundle::MAX_FILE_BYTES)?;
        if !sha256_hex(&bytes).eq_ignore_ascii_case(want) {
            return Err(Error::HashMismatch { file: name.clone() });
        }
        files.insert(name.clone(), bytes);
    }
    let mut take = |name: &str| -> Result<Vec<u8>> {
        let bytes = files.remove(name).expect("checked by parse_manifest");
        match &manifest.encryption {
            Some(enc) if enc.files.iter().any(|f| f == name) => {
                encryption::decrypt(enc, name, &bytes, weights_key)
            }
            _ => Ok(bytes),
        }
    };
    let model_bytes = take(&manifest.model.file)?;
    let tokenizer_bytes = take(&manifest.tokenizer)?;
    let word_ends_bytes = manifest.word_ends.as_deref().map(&mut take).transpose()?;
    Ok(Bundle {
        dir: source.location(),
        manifest,
        model_bytes,
        tokenizer_bytes,
        word_ends_bytes,
        provenance,
    })
}
