//! Bundle updates on the device: a [`BundleStore`] of installed versions with an atomically
//! switched pointer, and binary deltas between two versions of a bundle.
//!
//! Store layout (one updater at a time per store):
//!
//! ```text
//! root/CURRENT        name of the active version directory, one line
//! root/v-<id>/        an installed, verified bundle (id: SHA-256 prefix of its manifest)
//! root/.staging-*     an update being written; removed when it fails or by the next update
//! ```
//!
//! An update is built in memory and verified there (signature under the app's policy, hashes,
//! decryption), written to a staging directory and fsynced, verified again as read back from
//! disk, renamed into place, and only then made current by writing `CURRENT.tmp`, fsyncing it
//! and renaming it over `CURRENT` (atomic on POSIX file systems). A failure or crash at any
//! point before that last rename leaves `CURRENT` naming the old, complete bundle.
//!
//! A delta is a tar (the [`crate::pack`] format) of `nextword-delta.json`, which says how each
//! file of the new bundle is made from the old one, and one entry per file that is not
//! unchanged: either the whole file or a `bidiff` patch against the old file of that name,
//! deflate-compressed (a bidiff patch is mostly zero bytes where the files agree).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::{is_plain_file_name, parse_manifest, sha256_hex, MAX_FILE_BYTES};
use crate::encryption::WeightsKey;
use crate::error::{Error, Result};
use crate::pack;
use crate::trust::{open_bundle, open_source, Source, TrustPolicy, MANIFEST_FILE, SIGNATURE_FILE};

/// The delta format this build reads and writes.
pub const DELTA_FORMAT: u64 = 1;
/// Entry of a delta describing it.
pub const DELTA_HEADER: &str = "nextword-delta.json";
const CURRENT: &str = "CURRENT";
const CURRENT_TMP: &str = "CURRENT.tmp";
const STAGING_PREFIX: &str = ".staging-";

/// How a delta makes each file of the new bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeltaHeader {
    pub format: u64,
    /// SHA-256 of the exact `manifest.json` the delta applies to.
    pub base_manifest_sha256: String,
    /// Every file of the new bundle, `manifest.json` (and `manifest.sig`) included.
    pub files: BTreeMap<String, FileChange>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FileChange {
    /// The old bundle's file of the same name, byte for byte.
    Unchanged,
    /// The old bundle's file of the same name (whose SHA-256 this is) patched by the delta's
    /// entry of that name (a deflate-compressed `bidiff` patch).
    Patch { base_sha256: String },
    /// The delta's entry of that name is the whole file.
    Full,
}

/// The files that make up a bundle: the manifest, its signature if any, and the files it lists.
fn bundle_files(source: &Source) -> Result<BTreeMap<String, Vec<u8>>> {
    let raw = source.read(MANIFEST_FILE, MAX_FILE_BYTES)?;
    let manifest = parse_manifest(&raw)?;
    let mut files = BTreeMap::new();
    for name in manifest.files.keys() {
        files.insert(name.clone(), source.read(name, MAX_FILE_BYTES)?);
    }
    if let Some(sig) = source.read_optional(SIGNATURE_FILE, MAX_FILE_BYTES)? {
        files.insert(SIGNATURE_FILE.to_string(), sig);
    }
    files.insert(MANIFEST_FILE.to_string(), raw);
    Ok(files)
}

/// A delta from bundle `old` to bundle `new` (directories or packs). `diff(old, new)` makes a
/// `bidiff` patch; it is a parameter so the device side of the SDK does not carry the differ.
/// A file whose patch would not be smaller than itself is shipped whole.
pub fn make_delta(
    old: &Path,
    new: &Path,
    diff: impl Fn(&[u8], &[u8]) -> io::Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let old_files = bundle_files(&Source::open(old)?)?;
    let new_files = bundle_files(&Source::open(new)?)?;
    if new_files.contains_key(DELTA_HEADER) {
        return Err(Error::InvalidDelta(format!(
            "the new bundle has a file named {DELTA_HEADER}"
        )));
    }
    let mut header = DeltaHeader {
        format: DELTA_FORMAT,
        base_manifest_sha256: sha256_hex(&old_files[MANIFEST_FILE]),
        files: BTreeMap::new(),
    };
    let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, bytes) in &new_files {
        let change = match old_files.get(name) {
            Some(old_bytes) if old_bytes == bytes => FileChange::Unchanged,
            Some(old_bytes) => {
                let patch = diff(old_bytes, bytes)
                    .and_then(|patch| compress(&patch))
                    .map_err(|e| Error::InvalidDelta(format!("diff of {name}: {e}")))?;
                if patch.len() < bytes.len() {
                    entries.push((name.clone(), patch));
                    FileChange::Patch {
                        base_sha256: sha256_hex(old_bytes),
                    }
                } else {
                    entries.push((name.clone(), bytes.clone()));
                    FileChange::Full
                }
            }
            None => {
                entries.push((name.clone(), bytes.clone()));
                FileChange::Full
            }
        };
        header.files.insert(name.clone(), change);
    }
    let header_bytes = serde_json::to_vec_pretty(&header).expect("plain struct serializes");
    pack::write(
        std::iter::once((DELTA_HEADER, header_bytes.as_slice()))
            .chain(entries.iter().map(|(n, b)| (n.as_str(), b.as_slice()))),
    )
}

/// The files of the new bundle: `delta` applied to the bundle whose files `base` reads.
/// Checks only that the delta is well formed and made for this base; the result is verified
/// as a bundle by the caller.
pub fn apply_delta(
    delta: &[u8],
    base: &dyn Fn(&str) -> Result<Vec<u8>>,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut entries = pack::read(delta).map_err(|e| Error::InvalidDelta(e.to_string()))?;
    let header_bytes = entries
        .remove(DELTA_HEADER)
        .ok_or_else(|| Error::InvalidDelta(format!("no {DELTA_HEADER}")))?;
    let header: DeltaHeader = serde_json::from_slice(&header_bytes)
        .map_err(|e| Error::InvalidDelta(format!("{DELTA_HEADER}: {e}")))?;
    if header.format != DELTA_FORMAT {
        return Err(Error::InvalidDelta(format!(
            "format {} (this build reads {DELTA_FORMAT})",
            header.format
        )));
    }
    let installed = sha256_hex(&base(MANIFEST_FILE)?);
    if !installed.eq_ignore_ascii_case(&header.base_manifest_sha256) {
        return Err(Error::DeltaBaseMismatch {
            expected: header.base_manifest_sha256,
            installed,
        });
    }
    if !header.files.contains_key(MANIFEST_FILE) {
        return Err(Error::InvalidDelta(format!(
            "no {MANIFEST_FILE} in the new bundle"
        )));
    }
    let mut files = BTreeMap::new();
    for (name, change) in &header.files {
        if !is_plain_file_name(name) {
            return Err(Error::InvalidDelta(format!(
                "{name:?} is not a plain file name"
            )));
        }
        let mut entry = || {
            entries
                .remove(name)
                .ok_or_else(|| Error::InvalidDelta(format!("no entry for {name}")))
        };
        let bytes = match change {
            FileChange::Unchanged => base(name)?,
            FileChange::Full => entry()?,
            FileChange::Patch { base_sha256 } => {
                let old = base(name)?;
                let found = sha256_hex(&old);
                if !found.eq_ignore_ascii_case(base_sha256) {
                    return Err(Error::DeltaBaseMismatch {
                        expected: format!("{name} {base_sha256}"),
                        installed: format!("{name} {found}"),
                    });
                }
                patch(&old, &entry()?).map_err(|e| {
                    Error::InvalidDelta(format!("patch of {name} does not apply: {e}"))
                })?
            }
        };
        files.insert(name.clone(), bytes);
    }
    if let Some(extra) = entries.keys().next() {
        return Err(Error::InvalidDelta(format!("entry {extra} is not used")));
    }
    Ok(files)
}

fn compress(bytes: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    encoder.finish()
}

/// `old` patched by a compressed bidiff `patch`, refusing results over the bundle file limit.
fn patch(old: &[u8], patch: &[u8]) -> io::Result<Vec<u8>> {
    let patch = flate2::read::DeflateDecoder::new(patch);
    let reader = bipatch::Reader::new(patch, io::Cursor::new(old))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{e:?}")))?;
    let mut out = Vec::new();
    reader.take(MAX_FILE_BYTES + 1).read_to_end(&mut out)?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("result is larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    Ok(out)
}

/// Points in an update at which a test can make it fail (as a crash or an I/O error would).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    StagingCreated,
    FileWritten,
    Staged,
    VersionInPlace,
    PointerWritten,
    Switched,
}

/// Installed bundle versions under one directory, with one of them current.
#[derive(Debug, Clone)]
pub struct BundleStore {
    root: PathBuf,
}

impl BundleStore {
    /// A store at `root` (created on first install).
    pub fn new(root: impl Into<PathBuf>) -> BundleStore {
        BundleStore { root: root.into() }
    }

    /// Directory of the current bundle, to pass to [`crate::Predictor::open`].
    pub fn current(&self) -> Result<PathBuf> {
        let pointer = self.root.join(CURRENT);
        let name = match fs::read_to_string(&pointer) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(self.error("no bundle installed"))
            }
            Err(e) => return Err(self.error(format!("cannot read {CURRENT}: {e}"))),
        };
        if !is_plain_file_name(&name) || name.starts_with('.') {
            return Err(self.error(format!("{CURRENT} names {name:?}")));
        }
        Ok(self.root.join(name))
    }

    /// Installs the bundle directory or pack at `source` and makes it current, if it verifies
    /// under `policy` (and decrypts with `weights_key`).
    pub fn install(
        &self,
        source: &Path,
        policy: &TrustPolicy,
        weights_key: Option<&WeightsKey>,
    ) -> Result<PathBuf> {
        let files = bundle_files(&Source::open(source)?)?;
        self.install_files(files, policy, weights_key, &mut |_| Ok(()))
    }

    /// Applies `delta` to the current bundle and makes the result current, if it verifies
    /// under `policy`. On any error the current bundle stays as it was.
    pub fn apply_delta(
        &self,
        delta: &[u8],
        policy: &TrustPolicy,
        weights_key: Option<&WeightsKey>,
    ) -> Result<PathBuf> {
        self.apply_delta_with(delta, policy, weights_key, &mut |_| Ok(()))
    }

    pub(crate) fn apply_delta_with(
        &self,
        delta: &[u8],
        policy: &TrustPolicy,
        weights_key: Option<&WeightsKey>,
        fail: &mut dyn FnMut(Stage) -> io::Result<()>,
    ) -> Result<PathBuf> {
        let current = Source::Dir(self.current()?);
        let files = apply_delta(delta, &|name| current.read(name, MAX_FILE_BYTES))?;
        self.install_files(files, policy, weights_key, fail)
    }

    /// Verifies `files` as a bundle, writes it beside the current one and switches to it;
    /// cleans up after itself when a step fails.
    pub(crate) fn install_files(
        &self,
        files: BTreeMap<String, Vec<u8>>,
        policy: &TrustPolicy,
        weights_key: Option<&WeightsKey>,
        fail: &mut dyn FnMut(Stage) -> io::Result<()>,
    ) -> Result<PathBuf> {
        let manifest = parse_manifest(files.get(MANIFEST_FILE).ok_or_else(|| {
            Error::InvalidDelta(format!("the new bundle has no {MANIFEST_FILE}"))
        })?)?;
        if let Some(name) = files.keys().find(|n| {
            *n != MANIFEST_FILE && *n != SIGNATURE_FILE && !manifest.files.contains_key(*n)
        }) {
            return Err(Error::InvalidDelta(format!(
                "{name} is not a file of the new bundle's manifest"
            )));
        }
        let files = Source::Pack(files);
        open_source(&files, policy, weights_key)?;
        let Source::Pack(files) = files else {
            unreachable!("built as a pack above")
        };
        let version = format!("v-{}", &sha256_hex(&files[MANIFEST_FILE])[..16]);
        let staging = self
            .root
            .join(format!("{STAGING_PREFIX}{}", std::process::id()));
        let result = self.write_and_switch(&files, &version, &staging, policy, weights_key, fail);
        if result.is_err() {
            // Best effort: leftovers are harmless (never current) and the next update removes
            // them too.
            let _ = fs::remove_dir_all(&staging);
            let _ = fs::remove_file(self.root.join(CURRENT_TMP));
        }
        result
    }

    pub(crate) fn write_and_switch(
        &self,
        files: &BTreeMap<String, Vec<u8>>,
        version: &str,
        staging: &Path,
        policy: &TrustPolicy,
        weights_key: Option<&WeightsKey>,
        fail: &mut dyn FnMut(Stage) -> io::Result<()>,
    ) -> Result<PathBuf> {
        let io_err = |what: &str, e: io::Error| self.error(format!("{what}: {e}"));
        fs::create_dir_all(&self.root).map_err(|e| io_err("create", e))?;
        let previous = self.current().ok();
        let target = self.root.join(version);
        if previous.as_deref() == Some(target.as_path()) {
            return Ok(target);
        }
        self.remove_stale_staging()?;
        fs::create_dir(staging).map_err(|e| io_err("create staging directory", e))?;
        fail(Stage::StagingCreated).map_err(|e| io_err("staging", e))?;
        for (name, bytes) in files {
            let mut file = fs::File::create(staging.join(name)).map_err(|e| io_err(name, e))?;
            file.write_all(bytes).map_err(|e| io_err(name, e))?;
            file.sync_all().map_err(|e| io_err(name, e))?;
            fail(Stage::FileWritten).map_err(|e| io_err(name, e))?;
        }
        sync_dir(staging).map_err(|e| io_err("sync staging directory", e))?;
        fail(Stage::Staged).map_err(|e| io_err("staged", e))?;
        // Read back what reached the disk before trusting it.
        open_bundle(staging, policy, weights_key)?;
        if target.exists() {
            // A leftover of an update that failed before switching: never current, so unverified.
            fs::remove_dir_all(&target).map_err(|e| io_err("remove leftover version", e))?;
        }
        fs::rename(staging, &target).map_err(|e| io_err("rename staging directory", e))?;
        sync_dir(&self.root).map_err(|e| io_err("sync store", e))?;
        fail(Stage::VersionInPlace).map_err(|e| io_err("version in place", e))?;
        let tmp = self.root.join(CURRENT_TMP);
        let mut pointer = fs::File::create(&tmp).map_err(|e| io_err(CURRENT_TMP, e))?;
        writeln!(pointer, "{version}").map_err(|e| io_err(CURRENT_TMP, e))?;
        pointer.sync_all().map_err(|e| io_err(CURRENT_TMP, e))?;
        fail(Stage::PointerWritten).map_err(|e| io_err(CURRENT_TMP, e))?;
        fs::rename(&tmp, self.root.join(CURRENT)).map_err(|e| io_err(CURRENT, e))?;
        sync_dir(&self.root).map_err(|e| io_err("sync store", e))?;
        fail(Stage::Switched).map_err(|e| io_err("switched", e))?;
        if let Some(old) = previous {
            // Predictors already opened hold their bundle in memory, so the old files can go.
            if let Err(e) = fs::remove_dir_all(&old) {
                log::warn!(
                    "could not remove the previous bundle {}: {e}",
                    old.display()
                );
            }
        }
        Ok(target)
    }

    fn remove_stale_staging(&self) -> Result<()> {
        let entries = fs::read_dir(&self.root)
            .map_err(|e| self.error(format!("cannot list the store: {e}")))?;
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
            {
                fs::remove_dir_all(entry.path())
                    .map_err(|e| self.error(format!("cannot remove stale staging: {e}")))?;
            }
        }
        Ok(())
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Store {
            path: self.root.clone(),
            reason: reason.into(),
        }
    }
}

/// Makes a directory's entries (creations, renames) durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Directories cannot be opened for syncing here; renames are as durable as the platform makes
/// them.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::SecretKey;

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fixture")
    }

    fn bidiff(old: &[u8], new: &[u8]) -> io::Result<Vec<u8>> {
        let mut patch = Vec::new();
        bidiff::simple_diff(old, new, &mut patch)?;
        Ok(patch)
    }

    /// Writes `files` as a bundle directory signed by `key`, rehashing the manifest.
    fn write_bundle(dir: &Path, files: &BTreeMap<&str, Vec<u8>>, model_id: &str, key: &SecretKey) {
        fs::create_dir_all(dir).unwrap();
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(fixture().join(MANIFEST_FILE)).unwrap()).unwrap();
        manifest["model_id"] = model_id.into();
        manifest["files"] = serde_json::json!({});
        for (name, bytes) in files {
            fs::write(dir.join(name), bytes).unwrap();
            manifest["files"][*name] = sha256_hex(bytes).into();
        }
        let raw = serde_json::to_vec_pretty(&manifest).unwrap();
        fs::write(dir.join(MANIFEST_FILE), &raw).unwrap();
        fs::write(dir.join(SIGNATURE_FILE), key.sign_manifest(&raw)).unwrap();
    }

    struct Versions {
        _tmp: tempfile::TempDir,
        v1: PathBuf,
        v2: PathBuf,
        store: BundleStore,
        key: SecretKey,
    }

    impl Versions {
        fn policy(&self) -> TrustPolicy {
            TrustPolicy::pinned([self.key.public_key()])
        }
    }

    /// v1: the fixture; v2: a few weight bytes changed and a file added; a store holding v1.
    fn versions() -> Versions {
        let tmp = tempfile::tempdir().unwrap();
        let key = SecretKey::generate().unwrap();
        let model = fs::read(fixture().join("model.onnx")).unwrap();
        let tokenizer = fs::read(fixture().join("tokenizer.json")).unwrap();
        let mut files = BTreeMap::from([("model.onnx", model), ("tokenizer.json", tokenizer)]);
        let v1 = tmp.path().join("v1");
        write_bundle(&v1, &files, "fixture-v1", &key);
        let model = files.get_mut("model.onnx").unwrap();
        let mid = model.len() / 2;
        for b in &mut model[mid..mid + 64] {
            *b = b.wrapping_add(1);
        }
        files.insert("NOTES.md", b"v2 notes\n".to_vec());
        let v2 = tmp.path().join("v2");
        write_bundle(&v2, &files, "fixture-v2", &key);
        let store = BundleStore::new(tmp.path().join("store"));
        let versions = Versions {
            v1,
            v2,
            store,
            key,
            _tmp: tmp,
        };
        versions
            .store
            .install(&versions.v1, &versions.policy(), None)
            .unwrap();
        versions
    }

    fn assert_current_is(v: &Versions, model_id: &str) {
        let dir = v.store.current().unwrap();
        let bundle = open_bundle(&dir, &v.policy(), None).unwrap();
        assert_eq!(bundle.manifest.model_id, model_id);
        let leftovers: Vec<String> = fs::read_dir(&v.store.root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(STAGING_PREFIX) || n == CURRENT_TMP)
            .collect();
        assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
    }

    #[test]
    fn delta_updates_the_store_to_the_new_version() {
        let v = versions();
        let delta = make_delta(&v.v1, &v.v2, bidiff).unwrap();
        let v2_size: usize = fs::read_dir(&v.v2)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len() as usize)
            .sum();
        assert!(
            delta.len() < v2_size / 4,
            "delta {} of {v2_size} bytes",
            delta.len()
        );
        let old_dir = v.store.current().unwrap();
        let new_dir = v.store.apply_delta(&delta, &v.policy(), None).unwrap();
        assert_eq!(new_dir, v.store.current().unwrap());
        assert_current_is(&v, "fixture-v2");
        for name in ["manifest.json", "manifest.sig", "model.onnx", "NOTES.md"] {
            assert_eq!(
                fs::read(new_dir.join(name)).unwrap(),
                fs::read(v.v2.join(name)).unwrap(),
                "{name}"
            );
        }
        assert!(!old_dir.exists(), "the previous version is removed");
        // Applying it again: the store is no longer at the delta's base.
        let err = v.store.apply_delta(&delta, &v.policy(), None).unwrap_err();
        assert!(matches!(err, Error::DeltaBaseMismatch { .. }), "{err}");
    }

    const STAGES: [Stage; 6] = [
        Stage::StagingCreated,
        Stage::FileWritten,
        Stage::Staged,
        Stage::VersionInPlace,
        Stage::PointerWritten,
        Stage::Switched,
    ];

    #[test]
    fn a_failure_at_any_step_leaves_the_old_bundle_current() {
        let v = versions();
        let delta = make_delta(&v.v1, &v.v2, bidiff).unwrap();
        for stage in STAGES.into_iter().filter(|s| *s != Stage::Switched) {
            // Fail at the first, then at a later, occurrence of the step.
            for occurrence in [1, 3] {
                let mut seen = 0;
                let err = v
                    .store
                    .apply_delta_with(&delta, &v.policy(), None, &mut |s| {
                        seen += usize::from(s == stage);
                        if s == stage && seen == occurrence {
                            Err(io::Error::other("injected failure"))
                        } else {
                            Ok(())
                        }
                    });
                if seen < occurrence {
                    continue; // the step does not happen that often
                }
                let err = err.unwrap_err();
                assert!(matches!(err, Error::Store { .. }), "{stage:?}: {err}");
                assert_current_is(&v, "fixture-v1");
            }
        }
        // Past the pointer's rename the update has happened; a later failure does not undo it.
        let result = v
            .store
            .apply_delta_with(&delta, &v.policy(), None, &mut |s| {
                if s == Stage::Switched {
                    Err(io::Error::other("injected failure"))
                } else {
                    Ok(())
                }
            });
        assert!(result.is_err());
        assert_current_is(&v, "fixture-v2");
    }

    #[test]
    fn a_crash_at_any_step_leaves_a_working_store_and_the_next_update_succeeds() {
        for stage in STAGES {
            let v = versions();
            let delta = make_delta(&v.v1, &v.v2, bidiff).unwrap();
            let current = Source::Dir(v.store.current().unwrap());
            let files = apply_delta(&delta, &|n| current.read(n, MAX_FILE_BYTES)).unwrap();
            let version = format!("v-{}", &sha256_hex(&files[MANIFEST_FILE])[..16]);
            let staging = v.store.root.join(format!("{STAGING_PREFIX}crashed"));
            // No cleanup runs: the process "dies" at `stage`.
            let crashed =
                v.store
                    .write_and_switch(&files, &version, &staging, &v.policy(), None, &mut |s| {
                        if s == stage {
                            Err(io::Error::other("crash"))
                        } else {
                            Ok(())
                        }
                    });
            assert!(crashed.is_err());
            let expected = if stage == Stage::Switched {
                "fixture-v2"
            } else {
                "fixture-v1"
            };
            let dir = v.store.current().unwrap();
            let bundle = open_bundle(&dir, &v.policy(), None)
                .unwrap_or_else(|e| panic!("after a crash at {stage:?}: {e}"));
            assert_eq!(bundle.manifest.model_id, expected, "{stage:?}");
            if stage != Stage::Switched {
                v.store.apply_delta(&delta, &v.policy(), None).unwrap();
                assert_current_is(&v, "fixture-v2");
            }
        }
    }

    #[test]
    fn a_delta_whose_result_does_not_verify_changes_nothing() {
        let v = versions();
        // Re-signed by another key.
        let attacker = SecretKey::generate().unwrap();
        let v2_raw = fs::read(v.v2.join(MANIFEST_FILE)).unwrap();
        fs::write(v.v2.join(SIGNATURE_FILE), attacker.sign_manifest(&v2_raw)).unwrap();
        let delta = make_delta(&v.v1, &v.v2, bidiff).unwrap();
        let err = v.store.apply_delta(&delta, &v.policy(), None).unwrap_err();
        assert!(matches!(err, Error::UntrustedSigner { .. }), "{err}");
        assert_current_is(&v, "fixture-v1");
        // Unsigned.
        fs::remove_file(v.v2.join(SIGNATURE_FILE)).unwrap();
        let delta = make_delta(&v.v1, &v.v2, bidiff).unwrap();
        let err = v.store.apply_delta(&delta, &v.policy(), None).unwrap_err();
        assert!(matches!(err, Error::Unsigned), "{err}");
        assert_current_is(&v, "fixture-v1");
    }

    #[test]
    fn damaged_or_foreign_deltas_are_refused() {
        let v = versions();
        let good = make_delta(&v.v1, &v.v2, bidiff).unwrap();
        let mut cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("truncated", good[..good.len() / 2].to_vec()),
            ("garbage", vec![0x5a; 4096]),
        ];
        // Flip bytes inside the model's patch entry (after its 512-byte tar header).
        let entries = pack::read(&good).unwrap();
        let patch_start = good
            .windows(16)
            .position(|w| w == &entries["model.onnx"][..16])
            .unwrap();
        for offset in [20, entries["model.onnx"].len() / 2] {
            let mut bad = good.clone();
            bad[patch_start + offset] ^= 0xff;
            cases.push(("patch byte flipped", bad));
        }
        for (what, delta) in cases {
            let err = v.store.apply_delta(&delta, &v.policy(), None).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidDelta(_) | Error::HashMismatch { .. } | Error::BadSignature
                ),
                "{what}: {err}"
            );
            assert_current_is(&v, "fixture-v1");
        }
        // A delta made for another base version.
        let other = make_delta(&v.v2, &v.v1, bidiff).unwrap();
        let err = v.store.apply_delta(&other, &v.policy(), None).unwrap_err();
        assert!(matches!(err, Error::DeltaBaseMismatch { .. }), "{err}");
        // A header naming a file outside the new manifest.
        let mut header: DeltaHeader = serde_json::from_slice(&entries[DELTA_HEADER]).unwrap();
        header.files.insert("extra.bin".into(), FileChange::Full);
        let header = serde_json::to_vec(&header).unwrap();
        let mut rebuilt: Vec<(&str, &[u8])> =
            vec![(DELTA_HEADER, header.as_slice()), ("extra.bin", &b"x"[..])];
        rebuilt.extend(
            entries
                .iter()
                .filter(|(n, _)| n.as_str() != DELTA_HEADER)
                .map(|(n, b)| (n.as_str(), b.as_slice())),
        );
        let err = v
            .store
            .apply_delta(&pack::write(rebuilt).unwrap(), &v.policy(), None)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidDelta(_)), "{err}");
        assert_current_is(&v, "fixture-v1");
    }
}
