//! Blocks and how their CIDs are made.

use ::cid::{Cid, Version};
use multihash::Multihash;
use sha2::{Digest, Sha256};

/// Multicodec code of raw bytes.
pub const RAW: u64 = 0x55;
/// Multicodec code of dag-pb.
pub const DAG_PB: u64 = 0x70;
/// Multicodec code of dag-cbor.
pub const DAG_CBOR: u64 = 0x71;
/// Multihash code of sha2-256.
pub const SHA2_256: u64 = 0x12;
/// Multihash code of the identity "hash".
pub const IDENTITY: u64 = 0x00;

/// A block: bytes and the CID that names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The block's CID.
    pub cid: Cid,
    /// The block's bytes.
    pub data: Vec<u8>,
}

/// The sha2-256 multihash of `data`.
pub fn sha256_multihash(data: &[u8]) -> Multihash<64> {
    let digest = Sha256::digest(data);
    // A 32-byte digest always fits a 64-byte multihash.
    Multihash::wrap(SHA2_256, &digest).unwrap_or_default()
}

/// The CID of `data` under `codec`, hashed with sha2-256. A CIDv0 is only possible for dag-pb;
/// any other codec is given a CIDv1.
pub fn sha256_cid(version: Version, codec: u64, data: &[u8]) -> Cid {
    let hash = sha256_multihash(data);
    if version == Version::V0 && codec == DAG_PB {
        Cid::new_v0(hash).unwrap_or_else(|_| Cid::new_v1(codec, hash))
    } else {
        Cid::new_v1(codec, hash)
    }
}

impl Block {
    /// A block of `data` under `codec` with a sha2-256 CID.
    pub fn new(version: Version, codec: u64, data: Vec<u8>) -> Self {
        Self { cid: sha256_cid(version, codec, &data), data }
    }
}
