//! Where pinned blocks live.
//!
//! [`Blockstore`] is the port; [`s3::S3Blockstore`] keeps blocks in S3-compatible object storage
//! for oracles on several machines; [`FsBlockstore`] is the default adapter: one file per block
//! under `blocks/<shard>/<cid>`, written to a temporary file, synced, renamed into place and
//! the directory synced, so a block file either is complete or does not exist, whatever moment
//! the process (or the machine) dies. Blocks are verified against their CID before they are
//! stored and when they are read back; a block that fails is moved aside to `quarantine/` (not
//! deleted: it may be the only copy someone wants to look at; both directories are synced) and
//! reads as absent, so it is fetched again.
//!
//! A fetch writes into a *staging area* of its own (`staging/<name>/…`, [`Staged`]), never
//! straight into the store: what a source sends lands there, and only the blocks the DAG
//! reaches are moved into the store when the DAG is complete ([`Blockstore::promote`]: a
//! rename on a filesystem, a server-side copy on S3). Whatever else the source sent, and
//! everything of a fetch that failed, is dropped with its staging area. Garbage collection
//! lists the store ([`Blockstore::list`]), with each block's last write: storing a block that is
//! already there touches it, so a block just uploaded counts as new.
//!
//! A storage failure is a [`BlockstoreError::Io`], never an absent block: the gateway answers
//! 503 for it, the reconciler requeues nothing, and the walk that met it stops with a fault
//! ([`estuary_dag::BlockError::Io`] through [`Source`]).

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
    time::SystemTime,
};

use cid::Cid;
use estuary_dag::{BlockError, BlockSource, car::verify};

pub mod s3;
pub mod space;

/// A blockstore failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockstoreError {
    /// The bytes do not hash to the CID.
    #[error("block {0} does not match its CID")]
    Mismatch(Cid),
    /// The storage failed.
    #[error("blockstore I/O: {0}")]
    Io(#[from] io::Error),
}

/// A block as [`Blockstore::list`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// The block.
    pub cid: Cid,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written (or stored again).
    pub modified: SystemTime,
}

/// Content-addressed block storage.
pub trait Blockstore: Send + Sync + 'static {
    /// Stores a block after checking it hashes to `cid`. Storing a block twice is harmless.
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError>;
    /// Stores a block the caller has just verified against `cid` (the CAR decoder does), without
    /// hashing it again. A block already there is touched (its time of writing is now).
    fn put_verified(&self, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        self.put(cid, data)
    }
    /// A block's bytes, verified; `None` if absent (or corrupt: a corrupt block is set aside so
    /// that it is fetched again).
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError>;
    /// Whether a block is present (not verified).
    fn has(&self, cid: &Cid) -> Result<bool, BlockstoreError>;
    /// Hands every stored block to `each` (in no particular order) until it returns false.
    fn list(&self, each: &mut dyn FnMut(Listed) -> bool) -> Result<(), BlockstoreError>;
    /// Deletes a block (nothing if it is absent).
    fn delete(&self, cid: &Cid) -> Result<(), BlockstoreError>;
    /// Stores a verified block in staging area `stage` (created if needed).
    fn put_staged(&self, stage: &str, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError>;
    /// A block of staging area `stage`, verified; `None` if it is not there.
    fn get_staged(&self, stage: &str, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError>;
    /// Moves block `cid` from staging area `stage` into the store (if the store has it, the
    /// staged copy goes and the stored one is touched).
    fn promote(&self, stage: &str, cid: &Cid) -> Result<(), BlockstoreError>;
    /// Every staging area, with its last write.
    fn stages(&self) -> Result<Vec<(String, SystemTime)>, BlockstoreError>;
    /// Removes staging area `stage` and what it holds; the bytes it held.
    fn remove_stage(&self, stage: &str) -> Result<u64, BlockstoreError>;
    /// The file a block is kept in, when the store keeps blocks in files (a backup hard-links
    /// it rather than copying).
    fn file_of(&self, _cid: &Cid) -> Option<PathBuf> {
        None
    }
}

impl<B: Blockstore + ?Sized> Blockstore for std::sync::Arc<B> {
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        (**self).put(cid, data)
    }
    fn put_verified(&self, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        (**self).put_verified(cid, data)
    }
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError> {
        (**self).get(cid)
    }
    fn has(&self, cid: &Cid) -> Result<bool, BlockstoreError> {
        (**self).has(cid)
    }
    fn list(&self, each: &mut dyn FnMut(Listed) -> bool) -> Result<(), BlockstoreError> {
        (**self).list(each)
    }
    fn delete(&self, cid: &Cid) -> Result<(), BlockstoreError> {
        (**self).delete(cid)
    }
    fn put_staged(&self, stage: &str, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        (**self).put_staged(stage, cid, data)
    }
    fn get_staged(&self, stage: &str, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError> {
        (**self).get_staged(stage, cid)
    }
    fn promote(&self, stage: &str, cid: &Cid) -> Result<(), BlockstoreError> {
        (**self).promote(stage, cid)
    }
    fn stages(&self) -> Result<Vec<(String, SystemTime)>, BlockstoreError> {
        (**self).stages()
    }
    fn remove_stage(&self, stage: &str) -> Result<u64, BlockstoreError> {
        (**self).remove_stage(stage)
    }
    fn file_of(&self, cid: &Cid) -> Option<PathBuf> {
        (**self).file_of(cid)
    }
}

/// The name of a staging area: `[0-9a-z-]`, 1 to 64 characters (a job's staging area is named
/// by a digest of its key).
pub fn valid_stage(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A store seen through a staging area: writes go to the area, reads look there first, then in
/// the store. What a fetch writes through it stays apart until [`Blockstore::promote`]d.
#[derive(Debug)]
pub struct Staged<B: ?Sized> {
    /// The store.
    pub store: std::sync::Arc<B>,
    /// The staging area's name.
    pub stage: String,
}

impl<B: Blockstore + ?Sized> Staged<B> {
    /// A view of `store` through staging area `stage`.
    pub fn new(store: std::sync::Arc<B>, stage: impl Into<String>) -> Self {
        let stage = stage.into();
        assert!(valid_stage(&stage), "staging area names are made by this crate: {stage:?}");
        Self { store, stage }
    }
}

impl<B: Blockstore + ?Sized> Blockstore for Staged<B> {
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        verify(cid, data).map_err(|_| BlockstoreError::Mismatch(*cid))?;
        self.put_verified(cid, data)
    }
    fn put_verified(&self, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        self.store.put_staged(&self.stage, cid, data)
    }
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError> {
        match self.store.get_staged(&self.stage, cid)? {
            Some(data) => Ok(Some(data)),
            None => self.store.get(cid),
        }
    }
    fn has(&self, cid: &Cid) -> Result<bool, BlockstoreError> {
        Ok(self.store.get_staged(&self.stage, cid)?.is_some() || self.store.has(cid)?)
    }
    fn list(&self, each: &mut dyn FnMut(Listed) -> bool) -> Result<(), BlockstoreError> {
        self.store.list(each)
    }
    fn delete(&self, cid: &Cid) -> Result<(), BlockstoreError> {
        self.store.delete(cid)
    }
    fn put_staged(&self, stage: &str, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        self.store.put_staged(stage, cid, data)
    }
    fn get_staged(&self, stage: &str, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError> {
        self.store.get_staged(stage, cid)
    }
    fn promote(&self, stage: &str, cid: &Cid) -> Result<(), BlockstoreError> {
        self.store.promote(stage, cid)
    }
    fn stages(&self) -> Result<Vec<(String, SystemTime)>, BlockstoreError> {
        self.store.stages()
    }
    fn remove_stage(&self, stage: &str) -> Result<u64, BlockstoreError> {
        self.store.remove_stage(stage)
    }
}

/// A blockstore as a [`BlockSource`] for walks: an absent block is
/// [`BlockError::Missing`], a storage failure [`BlockError::Io`].
#[derive(Debug)]
pub struct Source<'a, B: ?Sized>(pub &'a B);

impl<B: Blockstore + ?Sized> BlockSource for Source<'_, B> {
    type Bytes = Vec<u8>;

    fn block(&mut self, cid: &Cid) -> Result<Vec<u8>, BlockError> {
        match self.0.get(cid) {
            Ok(Some(data)) => Ok(data),
            Ok(None) => Err(BlockError::Missing(*cid)),
            Err(e) => Err(BlockError::Io { cid: *cid, source: Box::new(e) }),
        }
    }
}

/// [`Blockstore`] on a local filesystem.
#[derive(Debug, Clone)]
pub struct FsBlockstore {
    root: PathBuf,
}

impl FsBlockstore {
    /// A blockstore under `root` (created if needed).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, BlockstoreError> {
        let root = root.into();
        fs::create_dir_all(root.join("blocks"))?;
        Ok(Self { root })
    }

    fn path(&self, cid: &Cid) -> PathBuf {
        sharded(&self.root.join("blocks"), cid)
    }

    fn stage_dir(&self, stage: &str) -> Result<PathBuf, BlockstoreError> {
        if !valid_stage(stage) {
            return Err(BlockstoreError::Io(io::Error::other(format!(
                "{stage:?} is not a staging area's name"
            ))));
        }
        Ok(self.root.join("staging").join(stage))
    }

    /// Reads a block file and verifies it; a file that does not match is moved to
    /// `quarantine/` (both directories synced) and reads as absent.
    fn read_verified(&self, cid: &Cid, path: &Path) -> Result<Option<Vec<u8>>, BlockstoreError> {
        match fs::read(path) {
            Ok(data) => {
                if verify(cid, &data).is_err() {
                    // Set aside, not deleted; reads as absent, so it is fetched again.
                    let aside = self.root.join("quarantine");
                    fs::create_dir_all(&aside)?;
                    fs::rename(path, aside.join(cid.to_string()))?;
                    sync_dir(&aside)?;
                    if let Some(dir) = path.parent() {
                        sync_dir(dir)?;
                    }
                    tracing::warn!(%cid, "a block failed verification; moved to quarantine/");
                    return Ok(None);
                }
                Ok(Some(data))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// `<dir>/<shard>/<cid>`, the shard being the last byte of the multihash digest in hex: well
/// spread whatever the CID prefix.
fn sharded(dir: &Path, cid: &Cid) -> PathBuf {
    let shard = cid.hash().digest().last().map_or(0, |b| *b);
    dir.join(format!("{shard:02x}")).join(cid.to_string())
}

/// Marks an existing file as written now.
fn touch(path: &Path) -> io::Result<()> {
    fs::File::options().append(true).open(path)?.set_modified(SystemTime::now())
}

/// Lists the block files under `dir` (`<shard>/<cid>`), skipping anything else (a temporary
/// file being written, a stray name).
fn list_dir(dir: &Path, each: &mut dyn FnMut(Listed) -> bool) -> io::Result<bool> {
    let shards = match fs::read_dir(dir) {
        Ok(shards) => shards,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    for shard in shards {
        let shard = shard?;
        if !shard.file_type()?.is_dir() {
            continue;
        }
        for entry in fs::read_dir(shard.path())? {
            let entry = entry?;
            let Some(cid) = entry.file_name().to_str().and_then(|n| Cid::try_from(n).ok()) else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Deleted between the listing and now.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if !each(Listed { cid, size: meta.len(), modified: meta.modified()? }) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The newest modification under `dir` (the directory itself included).
fn newest(dir: &Path) -> io::Result<SystemTime> {
    let mut latest = fs::metadata(dir)?.modified()?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        latest = latest.max(meta.modified()?);
        if meta.is_dir() {
            latest = latest.max(newest(&entry.path())?);
        }
    }
    Ok(latest)
}

/// Bytes of the files under `dir`.
fn bytes_under(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { bytes_under(&entry.path())? } else { meta.len() };
    }
    Ok(total)
}

/// Writes `data` to `path` so that the file is either whole or absent, and stays so across a
/// power loss: a synced temporary file renamed into place, then the directory synced.
pub fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("the path has no parent"))?;
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Syncs a directory, so a rename inside it survives a power loss.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

impl Blockstore for FsBlockstore {
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        verify(cid, data).map_err(|_| BlockstoreError::Mismatch(*cid))?;
        self.put_verified(cid, data)
    }

    fn put_verified(&self, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        let path = self.path(cid);
        match touch(&path) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        write_atomically(&path, data)?;
        Ok(())
    }

    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError> {
        self.read_verified(cid, &self.path(cid))
    }

    fn has(&self, cid: &Cid) -> Result<bool, BlockstoreError> {
        match fs::metadata(self.path(cid)) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn list(&self, each: &mut dyn FnMut(Listed) -> bool) -> Result<(), BlockstoreError> {
        list_dir(&self.root.join("blocks"), each)?;
        Ok(())
    }

    fn delete(&self, cid: &Cid) -> Result<(), BlockstoreError> {
        match fs::remove_file(self.path(cid)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn put_staged(&self, stage: &str, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        let path = sharded(&self.stage_dir(stage)?, cid);
        if !path.exists() {
            write_atomically(&path, data)?;
        }
        Ok(())
    }

    fn get_staged(&self, stage: &str, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError> {
        let path = sharded(&self.stage_dir(stage)?, cid);
        self.read_verified(cid, &path)
    }

    fn promote(&self, stage: &str, cid: &Cid) -> Result<(), BlockstoreError> {
        let from = sharded(&self.stage_dir(stage)?, cid);
        let to = self.path(cid);
        match touch(&to) {
            Ok(()) => {
                fs::remove_file(&from).or_else(|e| match e.kind() {
                    io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })?;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let dir = to.parent().ok_or_else(|| io::Error::other("a block path has a parent"))?;
        fs::create_dir_all(dir)?;
        // The staged file was synced when written; the rename is made durable by syncing the
        // directory it lands in (the staging area is thrown away anyway).
        fs::rename(&from, &to)?;
        touch(&to)?;
        sync_dir(dir)?;
        Ok(())
    }

    fn stages(&self) -> Result<Vec<(String, SystemTime)>, BlockstoreError> {
        let dir = self.root.join("staging");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if valid_stage(&name) && entry.file_type()?.is_dir() {
                out.push((name, newest(&entry.path())?));
            }
        }
        Ok(out)
    }

    fn file_of(&self, cid: &Cid) -> Option<PathBuf> {
        Some(self.path(cid))
    }

    fn remove_stage(&self, stage: &str) -> Result<u64, BlockstoreError> {
        let dir = self.stage_dir(stage)?;
        let bytes = match bytes_under(&dir) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(bytes),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_dag::block::Block;

    #[test]
    fn put_get_verify_and_heal() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlockstore::open(dir.path()).unwrap();
        let block = Block::new(cid::Version::V1, 0x55, b"hello".to_vec());
        assert!(!store.has(&block.cid).unwrap());
        store.put(&block.cid, &block.data).unwrap();
        store.put(&block.cid, &block.data).unwrap();
        assert_eq!(store.get(&block.cid).unwrap().as_deref(), Some(&b"hello"[..]));
        assert!(matches!(store.put(&block.cid, b"other"), Err(BlockstoreError::Mismatch(_))));
        // A corrupted file is set aside on read, so the block is fetched again.
        std::fs::write(store.path(&block.cid), b"rot").unwrap();
        assert_eq!(store.get(&block.cid).unwrap(), None);
        assert!(!store.has(&block.cid).unwrap());
        assert_eq!(
            std::fs::read(dir.path().join("quarantine").join(block.cid.to_string())).unwrap(),
            b"rot"
        );
    }
}
