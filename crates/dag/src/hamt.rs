//! HAMT-sharded UnixFS directories: the hash, the bucket tree, and how entries are found.
//!
//! A sharded directory is a tree of 256-way buckets keyed by the murmur3-x64-64 hash of each
//! entry's name (the first 64 bits of murmur3-x64-128, seed 0, big-endian): level `k` uses byte
//! `k` of the hash. A slot holds one entry, or a sub-bucket when two or more names share that
//! prefix. Each bucket is a dag-pb node whose links are named with the slot as two upper-case hex
//! digits, followed by the entry's name for entries; its UnixFS data carries the occupied slots
//! as a big-endian bitmap without leading zero bytes, the hash function (0x22) and the fanout.
//! This is the layout kubo and Helia write and read.

use std::collections::BTreeMap;

use crate::{
    block::{Block, DAG_PB},
    file::Imported,
    pb::{PbLink, PbNode},
    profile::ImportOptions,
    unixfs::{DataType, UnixFsData},
};

/// Multihash code of murmur3-x64-64, the HAMT's hash.
pub const MURMUR3_X64_64: u64 = 0x22;
/// Slots per bucket.
pub const FANOUT: usize = 256;

/// The first 64 bits of murmur3-x64-128 (seed 0), big-endian.
pub fn hash(data: &[u8]) -> [u8; 8] {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let fmix = |mut k: u64| {
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    };
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(16);
    for block in &mut blocks {
        let k1 = u64::from_le_bytes(block[..8].try_into().unwrap_or_default());
        let k2 = u64::from_le_bytes(block[8..].try_into().unwrap_or_default());
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 = h1.rotate_left(27).wrapping_add(h2).wrapping_mul(5).wrapping_add(0x52dc_e729);
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 = h2.rotate_left(31).wrapping_add(h1).wrapping_mul(5).wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    if tail.len() > 8 {
        let k2 = tail[8..].iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        h2 ^= k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    }
    if !tail.is_empty() {
        let k1 =
            tail[..tail.len().min(8)].iter().rev().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        h1 ^= k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    }
    h1 ^= data.len() as u64;
    h2 ^= data.len() as u64;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h1.to_be_bytes()
}

/// Why a sharded directory could not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HamtError {
    /// Two names share all 64 bits of their hash: the HAMT would need the rehashing extension,
    /// which neither this writer nor kubo's supports.
    #[error("names {0:?} and {1:?} have the same 64-bit HAMT hash")]
    HashExhausted(String, String),
}

enum Slot {
    Entry { name: String, node: Imported, hash: [u8; 8] },
    Bucket(Bucket),
}

#[derive(Default)]
struct Bucket {
    slots: BTreeMap<u8, Slot>,
}

impl Bucket {
    fn insert(
        &mut self,
        depth: usize,
        name: String,
        node: Imported,
        hash: [u8; 8],
    ) -> Result<(), HamtError> {
        let index = hash[depth];
        match self.slots.remove(&index) {
            None => {
                self.slots.insert(index, Slot::Entry { name, node, hash });
            }
            Some(Slot::Bucket(mut sub)) => {
                sub.insert(depth + 1, name, node, hash)?;
                self.slots.insert(index, Slot::Bucket(sub));
            }
            Some(Slot::Entry { name: other, node: other_node, hash: other_hash }) => {
                if depth + 1 >= hash.len() {
                    return Err(HamtError::HashExhausted(other, name));
                }
                let mut sub = Bucket::default();
                sub.insert(depth + 1, other, other_node, other_hash)?;
                sub.insert(depth + 1, name, node, hash)?;
                self.slots.insert(index, Slot::Bucket(sub));
            }
        }
        Ok(())
    }

    fn write(self, opts: &ImportOptions, out: &mut impl FnMut(Block)) -> Imported {
        let mut bitmap = [0u8; FANOUT / 8];
        let mut links = Vec::with_capacity(self.slots.len());
        let mut children_size = 0u64;
        for (index, slot) in self.slots {
            bitmap[FANOUT / 8 - 1 - usize::from(index) / 8] |= 1 << (index % 8);
            let (name, child) = match slot {
                Slot::Entry { name, node, .. } => (format!("{index:02X}{name}"), node),
                Slot::Bucket(sub) => (format!("{index:02X}"), sub.write(opts, out)),
            };
            children_size += child.dag_size;
            links.push(PbLink { hash: child.cid, name: Some(name), tsize: Some(child.dag_size) });
        }
        let first = bitmap.iter().position(|b| *b != 0).unwrap_or(bitmap.len() - 1);
        let meta = UnixFsData {
            data: Some(bitmap[first..].to_vec()),
            hash_type: Some(MURMUR3_X64_64),
            fanout: Some(FANOUT as u64),
            ..UnixFsData::new(DataType::HamtShard)
        };
        let block = Block::new(
            opts.cid_version,
            DAG_PB,
            PbNode { links, data: Some(meta.encode()) }.encode(),
        );
        let imported = Imported {
            cid: block.cid,
            dag_size: block.data.len() as u64 + children_size,
            file_size: 0,
        };
        out(block);
        imported
    }
}

/// Writes `entries` (already imported, names unique) as a sharded directory; returns its root.
pub fn write(
    opts: &ImportOptions,
    entries: Vec<(String, Imported)>,
    out: &mut impl FnMut(Block),
) -> Result<Imported, HamtError> {
    let mut root = Bucket::default();
    for (name, node) in entries {
        let h = hash(name.as_bytes());
        root.insert(0, name, node, h)?;
    }
    Ok(root.write(opts, out))
}

/// Where to look for `name` in a bucket whose links are `labels`: the index of the link to
/// follow and whether it is a sub-bucket (`true`) or the entry itself (`false`).
pub fn lookup<'a>(
    labels: impl IntoIterator<Item = &'a str>,
    name: &str,
    depth: usize,
) -> Option<(usize, bool)> {
    let index = *hash(name.as_bytes()).get(depth)?;
    let prefix = format!("{index:02X}");
    labels.into_iter().enumerate().find_map(|(i, label)| {
        let rest = label.strip_prefix(prefix.as_str())?;
        if rest.is_empty() {
            Some((i, true))
        } else if rest == name {
            Some((i, false))
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_reference_values() {
        // murmur3-x64-128("hello", 0) = cbd8a7b341bd9b02 5b1e906a48ae1d19 (@multiformats/murmur3).
        assert_eq!(hash(b"hello"), 0xcbd8_a7b3_41bd_9b02u64.to_be_bytes());
        assert_eq!(hash(b""), [0; 8]);
    }
}
