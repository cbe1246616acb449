//! The record file itself: created with its magic, checked on open, grown with zeros ahead.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::super::backend;
use crate::StoreError;

pub(super) const MAGIC: &[u8; 8] = b"FLACCES1";
pub(super) const RECORDS: &str = "records";
/// The file grows by this much at a time (zeros written ahead of the frames).
pub(super) const CHUNK: u64 = 1024 * 1024;

/// Writes `len` bytes of zeros from `offset`, growing the file, so that writing frames there
/// later changes no metadata (an `fdatasync` then flushes data only). Explicit zeros rather than
/// `fallocate`: unwritten extents would still change metadata when first written.
pub(super) fn preallocate(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    let zeros = vec![0; 1024 * 1024];
    let mut at = offset;
    while at < offset + len {
        let n = (offset + len - at).min(zeros.len() as u64);
        file.write_all_at(&zeros[..n as usize], at)?;
        at += n;
    }
    Ok(())
}

pub(super) fn open_records(dir: &Path) -> Result<File, StoreError> {
    std::fs::create_dir_all(dir).map_err(backend)?;
    let path = dir.join(RECORDS);
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(backend)?;
    let len = file.metadata().map_err(backend)?.len();
    if len == 0 {
        file.write_all_at(MAGIC, 0).map_err(backend)?;
        file.sync_all().map_err(backend)?;
        // The new file's name must be durable too.
        File::open(dir).and_then(|d| d.sync_all()).map_err(backend)?;
    } else {
        let mut magic = [0u8; 8];
        let ok = file.read_exact_at(&mut magic, 0).is_ok() && &magic == MAGIC;
        if !ok {
            return Err(StoreError::Corrupt {
                position: 0,
                reason: format!("{} is not a forlop access log (or a newer format)", path.display()),
            });
        }
    }
    Ok(file)
}
