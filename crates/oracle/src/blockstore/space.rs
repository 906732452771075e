//! Free space on the data directory's filesystem, and the floor below which the oracle takes no
//! more bytes: uploads are refused with 507 and fetches wait (a fault, not the job's failure), so
//! a full disk never fails or quarantines jobs and the database, the logs and the blocks already
//! stored keep room to work.

use std::{io, path::Path};

/// Bytes an unprivileged writer may still use on the filesystem holding `path` (or its nearest
/// existing ancestor, for a directory not made yet).
#[allow(clippy::useless_conversion)] // the field types differ between platforms
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let mut at = path;
    loop {
        match nix::sys::statvfs::statvfs(at) {
            Ok(stat) => {
                return Ok(u64::from(stat.blocks_available())
                    .saturating_mul(u64::from(stat.fragment_size())));
            }
            Err(nix::errno::Errno::ENOENT) => match at.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => at = parent,
                _ => return Ok(u64::MAX),
            },
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Whether taking `more` bytes at `path` keeps at least `floor` bytes free; `Err` when the
/// filesystem cannot be asked.
pub fn above_floor(path: &Path, floor: u64, more: u64) -> io::Result<bool> {
    if floor == 0 {
        return Ok(true);
    }
    Ok(free_bytes(path)? >= floor.saturating_add(more))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_directory_has_some_free_space_and_a_huge_floor_is_never_met() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(&dir.path().join("not/made/yet")).unwrap() > 0);
        assert!(above_floor(dir.path(), 0, u64::MAX).unwrap());
        assert!(above_floor(dir.path(), 1, 0).unwrap());
        assert!(!above_floor(dir.path(), 1 << 62, 0).unwrap());
    }
}
