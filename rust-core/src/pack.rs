//! Single-file bundles: an uncompressed POSIX tar (`ustar`) of `manifest.json`, `manifest.sig`
//! when signed, and every file the manifest lists, all at the top level. Any tar tool can list
//! or unpack one; the loader reads it into memory and checks it exactly like a directory.
//! (The weights are 4-bit and compress poorly, so the pack is not compressed.)

use std::collections::BTreeMap;
use std::io::Read;

use crate::bundle::{is_plain_file_name, MAX_FILE_BYTES};
use crate::error::{Error, Result};

/// Largest pack file read.
pub const MAX_PACK_BYTES: u64 = 4 * MAX_FILE_BYTES;
/// Most entries a pack may hold.
const MAX_ENTRIES: usize = 256;

/// The files of a pack by name. Refuses anything but regular files with plain names, duplicate
/// names, and sizes over the bundle limit.
pub fn read(pack: &[u8]) -> Result<BTreeMap<String, Vec<u8>>> {
    let bad = |why: String| Error::InvalidPack(why);
    let mut archive = tar::Archive::new(pack);
    let mut files = BTreeMap::new();
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        if files.len() == MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} entries")));
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(bad(format!(
                "entry of type {:?}: only regular files are allowed",
                entry.header().entry_type()
            )));
        }
        let name = entry
            .path()
            .map_err(|e| bad(e.to_string()))?
            .to_str()
            .map(str::to_string)
            .ok_or_else(|| bad("entry name is not UTF-8".into()))?;
        if !is_plain_file_name(&name) {
            return Err(bad(format!("entry name {name:?} is not a plain file name")));
        }
        let size = entry.header().size().map_err(|e| bad(e.to_string()))?;
        if size > MAX_FILE_BYTES {
            return Err(bad(format!("{name} is larger than {MAX_FILE_BYTES} bytes")));
        }
        let mut bytes = Vec::with_capacity(size.min(pack.len() as u64) as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("{name}: {e}")))?;
        if files.insert(name.clone(), bytes).is_some() {
            return Err(bad(format!("{name} appears twice")));
        }
    }
    if files.is_empty() {
        return Err(bad("no entries".into()));
    }
    Ok(files)
}

/// A pack of `files` (name, content), in the given order, with fixed metadata so the same
/// files always give the same bytes.
pub fn write<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        if !is_plain_file_name(name) {
            return Err(Error::InvalidPack(format!(
                "{name:?} is not a plain file name"
            )));
        }
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, bytes)
            .map_err(|e| Error::InvalidPack(format!("{name}: {e}")))?;
    }
    builder
        .into_inner()
        .map_err(|e| Error::InvalidPack(e.to_string()))
}
