//! Where walks and readers get blocks: a [`BlockSource`], whose failures say what happened.
//!
//! A block that is not there ([`BlockError::Missing`]) is a fact about the DAG; a source that
//! failed ([`BlockError::Io`]: a disk or S3 error) is a fault of the source, after which nothing
//! is known about the block. The two are never confused: a reconciler that took an outage for
//! missing blocks would requeue every pin, and a gateway would answer 404 for content it holds.

use ::cid::Cid;

/// Why a source could not give a block.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The source does not hold the block.
    #[error("block {0} is missing")]
    Missing(Cid),
    /// The source holds bytes under this CID that do not hash to it (they were set aside).
    #[error("block {0} is corrupt in the store")]
    Corrupt(Cid),
    /// The source failed; whether it holds the block is unknown. Retrying later may help.
    #[error("reading block {cid}: {source}")]
    Io {
        /// The block asked for.
        cid: Cid,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl BlockError {
    /// The block the error is about.
    pub fn cid(&self) -> Cid {
        match self {
            Self::Missing(cid) | Self::Corrupt(cid) | Self::Io { cid, .. } => *cid,
        }
    }

    /// Whether the source itself failed (the block may well be there).
    pub fn is_fault(&self) -> bool {
        matches!(self, Self::Io { .. })
    }
}

impl Clone for BlockError {
    fn clone(&self) -> Self {
        match self {
            Self::Missing(cid) => Self::Missing(*cid),
            Self::Corrupt(cid) => Self::Corrupt(*cid),
            Self::Io { cid, source } => Self::Io { cid: *cid, source: source.to_string().into() },
        }
    }
}

impl PartialEq for BlockError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Missing(a), Self::Missing(b)) | (Self::Corrupt(a), Self::Corrupt(b)) => a == b,
            (Self::Io { cid: a, source: x }, Self::Io { cid: b, source: y }) => {
                a == b && x.to_string() == y.to_string()
            }
            _ => false,
        }
    }
}

impl Eq for BlockError {}

/// Gives verified block bytes by CID.
///
/// Implemented for maps of blocks (`&map`), for `&mut` of any source, and for closures through
/// [`from_fn`], so a test passes `&map` and a store passes a closure over its reads.
pub trait BlockSource {
    /// The bytes a lookup returns (owned, or borrowed from the source).
    type Bytes: AsRef<[u8]>;

    /// The block `cid`, verified against it.
    fn block(&mut self, cid: &Cid) -> Result<Self::Bytes, BlockError>;
}

impl<S: BlockSource + ?Sized> BlockSource for &mut S {
    type Bytes = S::Bytes;

    fn block(&mut self, cid: &Cid) -> Result<S::Bytes, BlockError> {
        (**self).block(cid)
    }
}

impl<'a, H: std::hash::BuildHasher> BlockSource for &'a std::collections::HashMap<Cid, Vec<u8>, H> {
    type Bytes = &'a [u8];

    fn block(&mut self, cid: &Cid) -> Result<&'a [u8], BlockError> {
        self.get(cid).map(Vec::as_slice).ok_or(BlockError::Missing(*cid))
    }
}

/// A [`BlockSource`] made of a closure.
#[derive(Debug, Clone, Copy)]
pub struct FnSource<F>(pub F);

impl<F, B> BlockSource for FnSource<F>
where
    F: FnMut(&Cid) -> Result<B, BlockError>,
    B: AsRef<[u8]>,
{
    type Bytes = B;

    fn block(&mut self, cid: &Cid) -> Result<B, BlockError> {
        (self.0)(cid)
    }
}

/// A source over a closure that reads one block.
pub fn from_fn<F, B>(read: F) -> FnSource<F>
where
    F: FnMut(&Cid) -> Result<B, BlockError>,
    B: AsRef<[u8]>,
{
    FnSource(read)
}

/// A source over a lookup that answers `None` for a missing block and cannot fail otherwise
/// (an in-memory index).
pub fn infallible<B: AsRef<[u8]>>(
    mut get: impl FnMut(&Cid) -> Option<B>,
) -> impl BlockSource<Bytes = B> {
    from_fn(move |cid: &Cid| get(cid).ok_or(BlockError::Missing(*cid)))
}
