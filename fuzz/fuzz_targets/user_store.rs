//! The user-store reader (snapshot + journal) on arbitrary files: the input is split at its
//! first 0xFF byte into `user.json` and `user.journal`. Corrupt content must be reported, never
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nextword_core::personal::store::{Store, JOURNAL_FILE, SNAPSHOT_FILE};
use nextword_core::personal::Limits;

fuzz_target!(|data: &[u8]| {
    let (snapshot, journal) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(SNAPSHOT_FILE), snapshot).unwrap();
    std::fs::write(dir.path().join(JOURNAL_FILE), journal).unwrap();
    let _ = Store::read_only(dir.path(), &Limits::default());
});
