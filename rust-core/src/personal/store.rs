//! The user's statistics on disk, in a directory the app gives: a snapshot (`user.json`) and a
//! journal of the operations since (`user.journal`, one JSON line each).
//!
//! Why this shape: a keyboard learns on every commit, and rewriting the whole snapshot (up to a
//! few MB) each time would cost a phone tens of milliseconds and wear its flash. Appending one
//! line and `fsync`ing it is cheap, and acknowledges the operation durably. Every
//! `COMPACT_AFTER_ENTRIES` lines the snapshot is rewritten atomically (temporary file, `fsync`,
//! rename, `fsync` of the directory) and the journal emptied. Each line carries a sequence
//! number and the snapshot the last one it includes, so a crash between the rename and the
//! emptying replays nothing twice. A line cut short by a crash (no final newline) was never
//! acknowledged and is dropped; any other unreadable content is corruption.
//!
//! Why JSON: the data are a few maps of words to counts; JSON keeps the file inspectable by the
//! app's developers and by users asking what was learned about them, serde gives versioned
//! reading for free (`#[serde(default)]` on added fields), and the size is bounded by
//! [`Limits`](super::ngram::Limits) (about 2 MB at the defaults).
//!
//! A lock file keeps a second writer (another predictor, another process) out: two writers
//! would interleave their journals and overwrite each other's snapshots.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::ngram::{Limits, Run, UserNgrams};

/// Version of the store's files this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "nextword-user-store";
pub const SNAPSHOT_FILE: &str = "user.json";
pub const JOURNAL_FILE: &str = "user.journal";
const LOCK_FILE: &str = "user.lock";
/// Journal lines after which the snapshot is rewritten.
const COMPACT_AFTER_ENTRIES: usize = 256;

/// One change to the user's statistics, as journaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Learn { runs: Vec<Run> },
    Add { word: String },
    Remove { word: String },
    Clear,
    Block { word: String },
    Unblock { word: String },
}

impl Op {
    pub fn apply(&self, data: &mut UserNgrams, limits: &Limits) {
        match self {
            Op::Learn { runs } => data.learn(runs, limits),
            Op::Add { word } => data.add_word(word),
            Op::Remove { word } => {
                data.remove_word(word, limits);
            }
            Op::Clear => data.clear(),
            Op::Block { word } => data.block(word),
            Op::Unblock { word } => {
                data.unblock(word);
            }
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    format: String,
    version: u32,
    /// Sequence number of the last journaled operation the snapshot includes.
    seq: u64,
    data: UserNgrams,
}

#[derive(Serialize, Deserialize)]
struct JournalLine {
    v: u32,
    seq: u64,
    op: Op,
}

/// Only the version of a file, read first so that a newer layout is told apart from corruption.
#[derive(Deserialize)]
struct VersionProbe {
    #[serde(alias = "v")]
    version: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("user store file {path} is corrupt ({reason}); kept aside as {kept_as}, learning starts afresh")]
    Corrupt {
        path: PathBuf,
        reason: String,
        kept_as: PathBuf,
    },
    #[error("user store file {path} has format version {found}, this build reads up to version {supported}; kept aside as {kept_as}, learning starts afresh")]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
        kept_as: PathBuf,
    },
    #[error("user store {dir} is already open for writing (by another predictor or process)")]
    Locked { dir: PathBuf },
    #[error("user store I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What reading a store found.
pub struct Loaded {
    pub data: UserNgrams,
    /// Sequence number of the last operation read.
    pub seq: u64,
    /// The problem that made (part of) the store unreadable, if any; its files are then kept
    /// aside (when writing is allowed) and the readable part is used.
    pub problem: Option<StoreError>,
    /// Journal lines read after the snapshot.
    journal_entries: usize,
    /// Byte length of the journal's intact lines.
    journal_good_len: u64,
}

/// The store, open for writing: it holds the directory's lock.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    journal: File,
    seq: u64,
    journal_entries: usize,
    _lock: File,
}

impl Store {
    /// Opens (creating the directory if needed) and reads the store. A corrupt or newer file is
    /// renamed aside and reported in [`Loaded::problem`]; only I/O failures and a second writer
    /// are errors.
    pub fn open(dir: &Path, limits: &Limits) -> Result<(Store, Loaded), StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let loaded = read(dir, limits, true)?;
        let journal_path = dir.join(JOURNAL_FILE);
        let journal = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&journal_path)
            .map_err(io_err(&journal_path))?;
        // Drop a line a crash cut short, so the next one starts on a line of its own.
        journal
            .set_len(loaded.journal_good_len)
            .map_err(io_err(&journal_path))?;
        let mut store = Store {
            dir: dir.to_path_buf(),
            journal,
            seq: loaded.seq,
            journal_entries: loaded.journal_entries,
            _lock: lock,
        };
        use std::io::Seek;
        store
            .journal
            .seek(io::SeekFrom::End(0))
            .map_err(io_err(&journal_path))?;
        if loaded.problem.is_some() {
            // Persist what was recovered so the set-aside files are not needed again.
            store.compact(&loaded.data)?;
        }
        Ok((store, loaded))
    }

    /// Reads the store without writing anything (no lock, no renaming): for incognito sessions.
    pub fn read_only(dir: &Path, limits: &Limits) -> Result<Loaded, StoreError> {
        read(dir, limits, false)
    }

    /// Journals `op` durably: when this returns, the operation survives a crash.
    pub fn append(&mut self, op: &Op) -> Result<(), StoreError> {
        let path = self.dir.join(JOURNAL_FILE);
        let line = JournalLine {
            v: FORMAT_VERSION,
            seq: self.seq + 1,
            op: op.clone(),
        };
        let mut bytes = serde_json::to_vec(&line).expect("journal line serializes");
        bytes.push(b'\n');
        self.journal.write_all(&bytes).map_err(io_err(&path))?;
        self.journal.sync_data().map_err(io_err(&path))?;
        self.seq += 1;
        self.journal_entries += 1;
        Ok(())
    }

    /// Whether the journal is long enough that the snapshot should be rewritten.
    pub fn compaction_due(&self) -> bool {
        self.journal_entries >= COMPACT_AFTER_ENTRIES
    }

    /// Rewrites the snapshot atomically with `data` (the state after every journaled
    /// operation), then empties the journal.
    pub fn compact(&mut self, data: &UserNgrams) -> Result<(), StoreError> {
        let snapshot = Snapshot {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            seq: self.seq,
            data: data.clone(),
        };
        let bytes = serde_json::to_vec(&snapshot).expect("snapshot serializes");
        write_atomically(&self.dir, SNAPSHOT_FILE, &bytes)?;
        let path = self.dir.join(JOURNAL_FILE);
        self.journal.set_len(0).map_err(io_err(&path))?;
        use std::io::Seek;
        self.journal
            .seek(io::SeekFrom::Start(0))
            .map_err(io_err(&path))?;
        self.journal.sync_all().map_err(io_err(&path))?;
        self.journal_entries = 0;
        Ok(())
    }
}

/// Temporary file, `fsync`, rename over the target, `fsync` of the directory: readers see the
/// old file or the new one, never a mix, whenever the process or the device stops.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    {
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, &target).map_err(io_err(&target))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    // Directories cannot be opened for syncing on every platform (Windows); where they can,
    // this makes the rename durable.
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Renames a bad file aside (`user.json.corrupt-<unix ms>`) so nothing the user had is
/// destroyed; returns the new name (the old one when not allowed to write).
fn keep_aside(path: &Path, why: &str, may_write: bool) -> Result<PathBuf, StoreError> {
    if !may_write {
        return Ok(path.to_path_buf());
    }
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{why}-{ms}"));
    let kept = PathBuf::from(name);
    fs::rename(path, &kept).map_err(io_err(path))?;
    Ok(kept)
}

fn read(dir: &Path, limits: &Limits, may_write: bool) -> Result<Loaded, StoreError> {
    let mut loaded = Loaded {
        data: UserNgrams::default(),
        seq: 0,
        problem: None,
        journal_entries: 0,
        journal_good_len: 0,
    };
    let snap_path = dir.join(SNAPSHOT_FILE);
    let journal_path = dir.join(JOURNAL_FILE);
    match fs::read(&snap_path) {
        Ok(bytes) => match parse_snapshot(&bytes) {
            Ok(s) => {
                loaded.data = s.data;
                loaded.seq = s.seq;
            }
            Err(bad) => {
                // The journal only makes sense on top of its snapshot: both go aside.
                let tag = bad.tag();
                let kept = keep_aside(&snap_path, tag, may_write)?;
                if journal_path.exists() {
                    keep_aside(&journal_path, tag, may_write)?;
                }
                loaded.problem = Some(bad.into_error(&snap_path, kept));
                return Ok(loaded);
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&snap_path)(e)),
    }
    let file = match File::open(&journal_path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(loaded),
        Err(e) => return Err(io_err(&journal_path)(e)),
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut offset = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(io_err(&journal_path))?;
        if n == 0 || line.last() != Some(&b'\n') {
            // End of file, or a last line a crash cut short: never acknowledged, dropped.
            break;
        }
        match parse_journal_line(&line[..n - 1]) {
            Ok(entry) => {
                if entry.seq > loaded.seq {
                    if entry.seq != loaded.seq + 1 {
                        let kept = keep_aside(&journal_path, "corrupt", may_write)?;
                        loaded.problem = Some(StoreError::Corrupt {
                            path: journal_path.clone(),
                            reason: format!("operation {} follows {}", entry.seq, loaded.seq),
                            kept_as: kept,
                        });
                        loaded.journal_good_len = 0;
                        return Ok(loaded);
                    }
                    entry.op.apply(&mut loaded.data, limits);
                    loaded.seq = entry.seq;
                    loaded.journal_entries += 1;
                }
                offset += n as u64;
                loaded.journal_good_len = offset;
            }
            Err(bad) => {
                // Operations read so far are kept; the journal goes aside.
                let kept = keep_aside(&journal_path, bad.tag(), may_write)?;
                loaded.problem = Some(bad.into_error(&journal_path, kept));
                loaded.journal_good_len = 0;
                return Ok(loaded);
            }
        }
    }
    Ok(loaded)
}

enum Bad {
    Corrupt(String),
    Newer(u32),
}

impl Bad {
    fn tag(&self) -> &'static str {
        match self {
            Bad::Corrupt(_) => "corrupt",
            Bad::Newer(_) => "unsupported",
        }
    }

    fn into_error(self, path: &Path, kept_as: PathBuf) -> StoreError {
        match self {
            Bad::Corrupt(reason) => StoreError::Corrupt {
                path: path.to_path_buf(),
                reason,
                kept_as,
            },
            Bad::Newer(found) => StoreError::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
                supported: FORMAT_VERSION,
                kept_as,
            },
        }
    }
}

fn check_version(bytes: &[u8]) -> Result<(), Bad> {
    let probe: VersionProbe =
        serde_json::from_slice(bytes).map_err(|e| Bad::Corrupt(e.to_string()))?;
    if probe.version > FORMAT_VERSION {
        return Err(Bad::Newer(probe.version));
    }
    Ok(())
}

fn parse_snapshot(bytes: &[u8]) -> Result<Snapshot, Bad> {
    check_version(bytes)?;
    let s: Snapshot = serde_json::from_slice(bytes).map_err(|e| Bad::Corrupt(e.to_string()))?;
    if s.format != FORMAT_NAME {
        return Err(Bad::Corrupt(format!("format {:?}", s.format)));
    }
    let pairs: usize = s.data.bigrams.values().map(|n| n.len()).sum();
    if pairs != s.data.bigram_count {
        return Err(Bad::Corrupt(format!(
            "{pairs} word pairs, header says {}",
            s.data.bigram_count
        )));
    }
    Ok(s)
}

fn parse_journal_line(bytes: &[u8]) -> Result<JournalLine, Bad> {
    check_version(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| Bad::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::personal::ngram::runs;

    fn learn(text: &str) -> Op {
        Op::Learn {
            runs: runs(text, true),
        }
    }

    fn open(dir: &Path) -> (Store, Loaded) {
        Store::open(dir, &Limits::default()).unwrap()
    }

    fn write_ops(store: &mut Store, data: &mut UserNgrams, ops: &[Op]) {
        for op in ops {
            store.append(op).unwrap();
            op.apply(data, &Limits::default());
        }
    }

    #[test]
    fn journal_then_snapshot_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, loaded) = open(dir.path());
        assert!(loaded.problem.is_none());
        let mut data = loaded.data;
        write_ops(
            &mut store,
            &mut data,
            &[
                learn("hello Saoirse"),
                Op::Block {
                    word: "darn".into(),
                },
            ],
        );
        drop(store);
        let (mut store, loaded) = open(dir.path());
        assert_eq!(loaded.data, data);
        assert_eq!(loaded.seq, 2);
        store.compact(&data).unwrap();
        write_ops(
            &mut store,
            &mut data,
            &[Op::Remove {
                word: "hello".into(),
            }],
        );
        drop(store);
        let (_, loaded) = open(dir.path());
        assert_eq!(loaded.data, data);
        assert!(!loaded.data.words.contains_key("hello"));
        assert_eq!(loaded.seq, 3);
    }

    #[test]
    fn second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = open(dir.path());
        match Store::open(dir.path(), &Limits::default()) {
            Err(StoreError::Locked { .. }) => {}
            other => panic!("expected Locked, got {:?}", other.map(|s| s.1.seq)),
        }
        assert!(Store::read_only(dir.path(), &Limits::default()).is_ok());
    }

    #[test]
    fn torn_last_line_is_dropped_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, loaded) = open(dir.path());
        let mut data = loaded.data;
        write_ops(&mut store, &mut data, &[learn("one two")]);
        drop(store);
        let journal = dir.path().join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
        f.write_all(b"{\"v\":1,\"seq\":2,\"op\":{\"lea").unwrap();
        drop(f);
        let (mut store, loaded) = open(dir.path());
        assert!(loaded.problem.is_none());
        assert_eq!(loaded.data, data);
        write_ops(&mut store, &mut data, &[learn("three")]);
        drop(store);
        let (_, loaded) = open(dir.path());
        assert!(loaded.problem.is_none());
        assert_eq!(loaded.data, data);
    }

    #[test]
    fn replay_after_crash_between_rename_and_truncate_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, loaded) = open(dir.path());
        let mut data = loaded.data;
        write_ops(&mut store, &mut data, &[learn("alpha beta")]);
        let journal_bytes = fs::read(dir.path().join(JOURNAL_FILE)).unwrap();
        store.compact(&data).unwrap();
        drop(store);
        // The journal as it was before being emptied: its line is already in the snapshot.
        fs::write(dir.path().join(JOURNAL_FILE), journal_bytes).unwrap();
        let (_, loaded) = open(dir.path());
        assert_eq!(loaded.data, data);
    }

    fn aside(dir: &Path, tag: &str) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(tag))
            .collect()
    }

    #[test]
    fn corrupt_snapshot_is_kept_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(SNAPSHOT_FILE), b"{\"format\": garbage").unwrap();
        fs::write(dir.path().join(JOURNAL_FILE), b"{}\n").unwrap();
        let (mut store, loaded) = open(dir.path());
        assert!(matches!(loaded.problem, Some(StoreError::Corrupt { .. })));
        assert_eq!(loaded.data, UserNgrams::default());
        assert_eq!(aside(dir.path(), "corrupt").len(), 2);
        let mut data = loaded.data;
        write_ops(&mut store, &mut data, &[learn("fresh start")]);
        drop(store);
        let (_, loaded) = open(dir.path());
        assert!(loaded.problem.is_none());
        assert_eq!(loaded.data, data);
    }

    #[test]
    fn newer_version_is_kept_aside_as_unsupported() {
        let dir = tempfile::tempdir().unwrap();
        let future =
            br#"{"format":"nextword-user-store","version":99,"seq":5,"data":{"new":"layout"}}"#;
        fs::write(dir.path().join(SNAPSHOT_FILE), future).unwrap();
        let (_, loaded) = open(dir.path());
        match loaded.problem {
            Some(StoreError::UnsupportedVersion {
                found: 99,
                supported: FORMAT_VERSION,
                ref kept_as,
                ..
            }) => assert_eq!(fs::read(kept_as).unwrap(), future),
            _ => panic!("expected UnsupportedVersion"),
        }
    }

    #[test]
    fn corrupt_journal_line_keeps_what_came_before() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, loaded) = open(dir.path());
        let mut data = loaded.data;
        write_ops(&mut store, &mut data, &[learn("kept words")]);
        drop(store);
        let journal = dir.path().join(JOURNAL_FILE);
        let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
        f.write_all(b"\x00\x00not json\n{\"v\":1,\"seq\":3,\"op\":\"clear\"}\n")
            .unwrap();
        drop(f);
        let (_, loaded) = open(dir.path());
        assert!(matches!(loaded.problem, Some(StoreError::Corrupt { .. })));
        assert_eq!(loaded.data, data);
        assert_eq!(aside(dir.path(), "corrupt").len(), 1);
        // Recovered state was written back: the next open is clean and identical.
        let (_, again) = open(dir.path());
        assert!(again.problem.is_none());
        assert_eq!(again.data, data);
    }

    #[test]
    fn read_only_never_writes() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("not-yet");
        let loaded = Store::read_only(&missing, &Limits::default()).unwrap();
        assert!(loaded.problem.is_none());
        assert!(!missing.exists());
        fs::write(dir.path().join(SNAPSHOT_FILE), b"junk").unwrap();
        let loaded = Store::read_only(dir.path(), &Limits::default()).unwrap();
        assert!(loaded.problem.is_some());
        assert_eq!(aside(dir.path(), "").len(), 1, "nothing renamed or created");
    }

    #[test]
    fn compaction_is_due_after_many_appends() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, loaded) = open(dir.path());
        let mut data = loaded.data;
        for i in 0..COMPACT_AFTER_ENTRIES {
            assert!(!store.compaction_due());
            write_ops(&mut store, &mut data, &[learn(&format!("word{i}a"))]);
        }
        assert!(store.compaction_due());
        store.compact(&data).unwrap();
        assert!(!store.compaction_due());
        assert_eq!(
            fs::metadata(dir.path().join(JOURNAL_FILE)).unwrap().len(),
            0
        );
        drop(store);
        assert_eq!(open(dir.path()).1.data, data);
    }
}
