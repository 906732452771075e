//! Import settings, and the named profiles that reproduce other implementations' CIDs.

use ::cid::Version;

/// How a directory's size is estimated against the HAMT sharding threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ShardStrategy {
    /// Sum of link name bytes plus CID bytes (kubo's historical estimate).
    LinksBytes,
    /// The serialized size of the directory block (IPIP-499).
    BlockBytes,
}

/// Everything that decides the bytes of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// CID version of dag-pb nodes. Raw leaves are always CIDv1, as in kubo and Helia.
    pub cid_version: Version,
    /// Bytes per leaf.
    pub chunk_size: usize,
    /// Most links in one file node.
    pub max_links: usize,
    /// Leaves as raw blocks (`true`) or as dag-pb UnixFS file nodes.
    pub raw_leaves: bool,
    /// A directory whose estimated size exceeds this many bytes is sharded.
    pub shard_threshold: usize,
    /// How that size is estimated.
    pub shard_strategy: ShardStrategy,
}

/// Named import profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Profile {
    /// kubo's `ipfs add` defaults: CIDv0, 256 KiB chunks, 174 links, dag-pb leaves.
    UnixfsV0_2015,
    /// kubo's `ipfs add --cid-version=1`: CIDv1, 256 KiB chunks, 174 links, raw leaves.
    KuboCidV1,
    /// IPIP-499's `unixfs-v1-2025`: CIDv1, 1 MiB chunks, 1024 links, raw leaves.
    #[default]
    UnixfsV1_2025,
}

/// Largest chunk accepted: a leaf must stay under the 2 MiB block limit with room to spare.
pub const MAX_CHUNK_SIZE: usize = 1 << 20;
/// Most links per file node accepted (a full node stays far below 2 MiB).
pub const MAX_LINKS: usize = 8192;

/// Why import options are unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// No profile has that name.
    #[error("unknown profile {0:?}; known: unixfs-v0-2015, kubo-cidv1, unixfs-v1-2025")]
    UnknownProfile(String),
    /// Chunk size outside 1..=1 MiB.
    #[error("chunk size {0} is outside 1..={MAX_CHUNK_SIZE}")]
    ChunkSize(usize),
    /// Links per node outside 2..=8192.
    #[error("links per node {0} is outside 2..={MAX_LINKS}")]
    MaxLinks(usize),
}

impl Profile {
    /// Every profile, in the order they were introduced.
    pub const ALL: [Profile; 3] =
        [Profile::UnixfsV0_2015, Profile::KuboCidV1, Profile::UnixfsV1_2025];

    /// The profile's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::UnixfsV0_2015 => "unixfs-v0-2015",
            Self::KuboCidV1 => "kubo-cidv1",
            Self::UnixfsV1_2025 => "unixfs-v1-2025",
        }
    }

    /// The profile with this name.
    pub fn from_name(name: &str) -> Result<Self, OptionsError> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| OptionsError::UnknownProfile(name.to_owned()))
    }

    /// The profile's settings.
    pub fn options(self) -> ImportOptions {
        match self {
            Self::UnixfsV0_2015 => ImportOptions {
                cid_version: Version::V0,
                chunk_size: 256 * 1024,
                max_links: 174,
                raw_leaves: false,
                shard_threshold: 256 * 1024,
                shard_strategy: ShardStrategy::LinksBytes,
            },
            Self::KuboCidV1 => ImportOptions {
                cid_version: Version::V1,
                chunk_size: 256 * 1024,
                max_links: 174,
                raw_leaves: true,
                shard_threshold: 256 * 1024,
                shard_strategy: ShardStrategy::LinksBytes,
            },
            Self::UnixfsV1_2025 => ImportOptions {
                cid_version: Version::V1,
                chunk_size: 1024 * 1024,
                max_links: 1024,
                raw_leaves: true,
                shard_threshold: 256 * 1024,
                shard_strategy: ShardStrategy::BlockBytes,
            },
        }
    }
}

impl Default for ImportOptions {
    fn default() -> Self {
        Profile::default().options()
    }
}

impl ImportOptions {
    /// The size of the leaves a caller may hash itself
    /// ([`FileBuilder::push_hashed_leaf`](crate::FileBuilder::push_hashed_leaf)): with raw
    /// leaves (always CIDv1 raw) a leaf's CID is its sha2-256 digest alone; dag-pb leaves wrap
    /// the bytes first, so they have none.
    pub fn hashed_leaf_size(&self) -> Option<usize> {
        self.raw_leaves.then_some(self.chunk_size)
    }

    /// Checks that the settings can produce a valid DAG.
    pub fn validate(&self) -> Result<(), OptionsError> {
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(OptionsError::ChunkSize(self.chunk_size));
        }
        if !(2..=MAX_LINKS).contains(&self.max_links) {
            return Err(OptionsError::MaxLinks(self.max_links));
        }
        Ok(())
    }
}
