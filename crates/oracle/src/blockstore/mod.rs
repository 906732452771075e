//! Where pinned blocks live.
//!
//! [`Blockstore`] is the port; [`s3::S3Blockstore`] keeps blocks in S3-compatible object storage
//! for oracles on several machines; [`FsBlockstore`] is the default adapter: one file per block
//! under `blocks/<shard>/<cid>`, written to a temporary file, synced, renamed into place and
//! the directory synced, so a block file either is complete or does not exist, whatever moment
//! the process (or the machine) dies. Blocks are verified against their CID before they are
//! stored and when they are read back; a block that fails is moved aside to `quarantine/` (not
//! deleted: it may be the only copy someone wants to look at) and reads as absent, so it is
//! fetched again.
//!
//! A storage failure is a [`BlockstoreError::Io`], never an absent block: the gateway answers
//! 503 for it, the reconciler requeues nothing, and the walk that met it stops with a fault
//! ([`estuary_dag::BlockError::Io`] through [`Source`]).

use std::{
    fs,
    io::{self, Write},
    path::{Path, PathBuf},
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

/// Content-addressed block storage.
pub trait Blockstore: Send + Sync + 'static {
    /// Stores a block after checking it hashes to `cid`. Storing a block twice is harmless.
    fn put(&self, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError>;
    /// Stores a block the caller has just verified against `cid` (the CAR decoder does), without
    /// hashing it again.
    fn put_verified(&self, cid: &Cid, data: &[u8]) -> Result<(), BlockstoreError> {
        self.put(cid, data)
    }
    /// A block's bytes, verified; `None` if absent (or corrupt: a corrupt block is set aside so
    /// that it is fetched again).
    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError>;
    /// Whether a block is present (not verified).
    fn has(&self, cid: &Cid) -> Result<bool, BlockstoreError>;
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
        // Shard by the end of the multihash digest: well spread whatever the CID prefix.
        let digest = cid.hash().digest();
        let shard = digest.last().map_or(0, |b| *b);
        self.root.join("blocks").join(format!("{shard:02x}")).join(cid.to_string())
    }
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
        if path.exists() {
            return Ok(());
        }
        write_atomically(&path, data)?;
        Ok(())
    }

    fn get(&self, cid: &Cid) -> Result<Option<Vec<u8>>, BlockstoreError> {
        let path = self.path(cid);
        match fs::read(&path) {
            Ok(data) => {
                if verify(cid, &data).is_err() {
                    // Set aside, not deleted; reads as absent, so it is fetched again.
                    let aside = self.root.join("quarantine");
                    fs::create_dir_all(&aside)?;
                    fs::rename(&path, aside.join(cid.to_string()))?;
                    tracing::warn!(%cid, "a block failed verification; moved to quarantine/");
                    return Ok(None);
                }
                Ok(Some(data))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn has(&self, cid: &Cid) -> Result<bool, BlockstoreError> {
        Ok(self.path(cid).exists())
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
