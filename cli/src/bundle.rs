//! `nextword bundle …`: the vendor's side of bundle trust — keys, signing, encryption, packs,
//! deltas — and the checks an app would run before shipping or installing a bundle.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use nextword_core::bundle::parse_manifest;
use nextword_core::encryption::{self, Encryption};
use nextword_core::trust::{self, MANIFEST_FILE, SIGNATURE_FILE};
use nextword_core::update::{self, BundleStore};
use nextword_core::{PublicKey, SecretKey, TrustPolicy, WeightsKey};
use serde_json::json;

/// Public key of the nextword development key (`keys/nextword-dev.secret`), which signs the
/// bundles in this repository. Its secret half is published: it proves nothing about who made
/// a bundle and must never be pinned by an app.
pub const DEV_PUBLIC_KEY: &str = include_str!("../../keys/nextword-dev.pub");

/// Which bundles a command accepts (shared by every command that opens a bundle).
#[derive(Args, Clone, Debug)]
pub struct TrustArgs {
    /// Public key file (64 hex digits) whose signatures are accepted; repeat to pin several.
    /// Default: the nextword development key, which signs the bundles of this repository.
    #[arg(long = "trust-key", global = true, value_name = "FILE")]
    trust_keys: Vec<PathBuf>,
    /// Refuse unsigned bundles. Without it an unsigned bundle is accepted with a warning; a
    /// signed one must always verify under a pinned key.
    #[arg(long, global = true)]
    require_signed: bool,
    /// Key file (64 hex digits) decrypting a bundle with encrypted files.
    #[arg(long, global = true, value_name = "FILE")]
    weights_key: Option<PathBuf>,
}

impl TrustArgs {
    pub fn policy(&self) -> Result<TrustPolicy> {
        let pinned_keys = if self.trust_keys.is_empty() {
            vec![PublicKey::from_hex(DEV_PUBLIC_KEY)?]
        } else {
            self.trust_keys
                .iter()
                .map(|p| Ok(PublicKey::from_hex(&read_text(p)?)?))
                .collect::<Result<_>>()?
        };
        Ok(TrustPolicy {
            pinned_keys,
            allow_unsigned: !self.require_signed,
        })
    }

    pub fn weights_key(&self) -> Result<Option<WeightsKey>> {
        self.weights_key
            .as_deref()
            .map(|p| Ok(WeightsKey::from_hex(&read_text(p)?)?))
            .transpose()
    }
}

#[derive(Subcommand)]
pub enum BundleCommand {
    /// Make a signing key pair: PREFIX.secret (keep it offline) and PREFIX.pub (pin it in apps).
    Keygen {
        prefix: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Make a weights key file for `encrypt` (the app holds the same key).
    WeightsKeygen {
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Sign DIR's manifest.json: writes DIR/manifest.sig.
    Sign {
        dir: PathBuf,
        /// Secret key file made by `keygen`.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Check a bundle (directory or pack) as an app would: signature, hashes, decryption.
    Verify {
        path: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Encrypt files of bundle DIR in place and record them in its manifest; sign again after.
    Encrypt {
        dir: PathBuf,
        /// Weights key file made by `weights-keygen`.
        #[arg(long = "with", value_name = "FILE")]
        key: PathBuf,
        /// Files to encrypt (default: the model).
        #[arg(long = "file")]
        files: Vec<String>,
    },
    /// Write bundle DIR as a single file (a plain tar) that apps can open directly.
    Pack {
        dir: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Write the delta that turns bundle OLD into bundle NEW (directories or packs).
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Install a bundle (directory or pack) into a store as its current version.
    Install {
        source: PathBuf,
        #[arg(long)]
        store: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Apply a delta to a store's current bundle, verify the result and switch to it atomically.
    Apply {
        delta: PathBuf,
        #[arg(long)]
        store: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
}

pub fn run(command: BundleCommand, as_json: bool) -> Result<()> {
    match command {
        BundleCommand::Keygen { prefix, force } => {
            let key = SecretKey::generate()?;
            let secret = prefix.with_extension("secret");
            let public = prefix.with_extension("pub");
            write_new(
                &secret,
                format!("{}\n", key.to_hex().as_str()).as_bytes(),
                force,
            )?;
            write_new(
                &public,
                format!("{}\n", key.public_key().to_hex()).as_bytes(),
                force,
            )?;
            report(
                as_json,
                json!({"secret": secret, "public": public, "key_id": key.public_key().key_id()}),
                format!(
                    "wrote {} (keep secret) and {} (pin in apps); key id {}",
                    secret.display(),
                    public.display(),
                    key.public_key().key_id()
                ),
            )
        }
        BundleCommand::WeightsKeygen { out, force } => {
            let key = WeightsKey::generate()?;
            write_new(
                &out,
                format!("{}\n", key.to_hex().as_str()).as_bytes(),
                force,
            )?;
            report(
                as_json,
                json!({"key": out, "key_id": key.key_id()}),
                format!("wrote {}; key id {}", out.display(), key.key_id()),
            )
        }
        BundleCommand::Sign { dir, key } => {
            let key = SecretKey::from_hex(&read_text(&key)?)?;
            let manifest = read(&dir.join(MANIFEST_FILE))?;
            parse_manifest(&manifest).context("refusing to sign an invalid manifest")?;
            let sig_path = dir.join(SIGNATURE_FILE);
            write_atomic(&sig_path, &key.sign_manifest(&manifest))?;
            let key_id = key.public_key().key_id();
            report(
                as_json,
                json!({"signature": sig_path, "key_id": key_id}),
                format!("signed {} with key {key_id}", dir.display()),
            )
        }
        BundleCommand::Verify { path, trust } => {
            let bundle = trust::open_bundle(&path, &trust.policy()?, trust.weights_key()?.as_ref())
                .with_context(|| format!("verifying {}", path.display()))?;
            let m = &bundle.manifest;
            report(
                as_json,
                json!({"bundle": path, "model_id": m.model_id, "trust": bundle.provenance.to_string(),
                       "encrypted": m.encryption.as_ref().map(|e| &e.files), "files": m.files.len()}),
                format!(
                    "ok: {} ({}), {} files hashed, {}{}",
                    m.model_id,
                    path.display(),
                    m.files.len(),
                    bundle.provenance,
                    match &m.encryption {
                        Some(e) => format!(", decrypted {}", e.files.join(", ")),
                        None => String::new(),
                    }
                ),
            )
        }
        BundleCommand::Encrypt { dir, key, files } => encrypt(&dir, &key, files, as_json),
        BundleCommand::Pack { dir, out } => {
            let manifest = read(&dir.join(MANIFEST_FILE))?;
            let parsed = parse_manifest(&manifest)?;
            let mut entries = vec![(MANIFEST_FILE.to_string(), manifest)];
            if dir.join(SIGNATURE_FILE).exists() {
                entries.push((SIGNATURE_FILE.into(), read(&dir.join(SIGNATURE_FILE))?));
            }
            for name in parsed.files.keys() {
                entries.push((name.clone(), read(&dir.join(name))?));
            }
            let pack = nextword_core::pack::write(
                entries.iter().map(|(n, b)| (n.as_str(), b.as_slice())),
            )?;
            write_atomic(&out, &pack)?;
            report(
                as_json,
                json!({"pack": out, "bytes": pack.len(), "entries": entries.len()}),
                format!(
                    "wrote {} ({} entries, {} bytes)",
                    out.display(),
                    entries.len(),
                    pack.len()
                ),
            )
        }
        BundleCommand::Diff { old, new, out } => {
            let delta = update::make_delta(&old, &new, |a, b| {
                let mut patch = Vec::new();
                bidiff::simple_diff(a, b, &mut patch)?;
                Ok(patch)
            })?;
            write_atomic(&out, &delta)?;
            report(
                as_json,
                json!({"delta": out, "bytes": delta.len()}),
                format!("wrote {} ({} bytes)", out.display(), delta.len()),
            )
        }
        BundleCommand::Install {
            source,
            store,
            trust,
        } => {
            let dir = BundleStore::new(&store).install(
                &source,
                &trust.policy()?,
                trust.weights_key()?.as_ref(),
            )?;
            report(
                as_json,
                json!({"current": dir}),
                format!("installed; current bundle {}", dir.display()),
            )
        }
        BundleCommand::Apply {
            delta,
            store,
            trust,
        } => {
            let dir = BundleStore::new(&store).apply_delta(
                &read(&delta)?,
                &trust.policy()?,
                trust.weights_key()?.as_ref(),
            )?;
            report(
                as_json,
                json!({"current": dir}),
                format!("updated; current bundle {}", dir.display()),
            )
        }
    }
}

/// Encrypts `files` of the bundle in place, rewriting their hashes and the manifest's
/// encryption entry. The old signature no longer matches, so it is removed.
fn encrypt(dir: &Path, key_file: &Path, files: Vec<String>, as_json: bool) -> Result<()> {
    let key = WeightsKey::from_hex(&read_text(key_file)?)?;
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = parse_manifest(&read(&manifest_path)?)?;
    if manifest.encryption.is_some() {
        bail!("{} is already encrypted", dir.display());
    }
    let files = if files.is_empty() {
        vec![manifest.model.file.clone()]
    } else {
        files
    };
    let mut value: serde_json::Value = serde_json::from_slice(&read(&manifest_path)?)?;
    for name in &files {
        if !manifest.files.contains_key(name) {
            bail!("{name} is not a file of the bundle");
        }
        let path = dir.join(name);
        let sealed = encryption::encrypt(&key, name, &read(&path)?)?;
        write_atomic(&path, &sealed)?;
        value["files"][name] = json!(nextword_core::bundle::sha256_hex(&sealed));
    }
    value["encryption"] = serde_json::to_value(Encryption {
        algorithm: encryption::ALGORITHM.into(),
        key_id: key.key_id(),
        files: files.clone(),
    })?;
    let mut text = serde_json::to_string_pretty(&value)?;
    text.push('\n');
    write_atomic(&manifest_path, text.as_bytes())?;
    let sig = dir.join(SIGNATURE_FILE);
    let unsigned = sig.exists();
    if unsigned {
        fs::remove_file(&sig).with_context(|| format!("removing {}", sig.display()))?;
    }
    report(
        as_json,
        json!({"encrypted": files, "key_id": key.key_id(), "signature_removed": unsigned}),
        format!(
            "encrypted {} with key {}{}",
            files.join(", "),
            key.key_id(),
            if unsigned {
                "; the old signature was removed: sign the bundle again"
            } else {
                ""
            }
        ),
    )
}

fn report(as_json: bool, value: serde_json::Value, text: String) -> Result<()> {
    if as_json {
        println!("{value}");
    } else {
        println!("{text}");
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn read_text(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Writes a key file, refusing to overwrite one unless forced.
fn write_new(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!("{} exists (pass --force to replace it)", path.display());
    }
    write_atomic(path, bytes)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp-write");
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
