//! Walking a DAG: the links of a block, and depth-first order from a root.

use std::collections::HashSet;

use ::cid::Cid;

use crate::{
    block::{DAG_PB, RAW},
    pb::{PbError, PbNode},
};

/// Why a walk stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalkError {
    /// A block the walk needs is not available.
    #[error("block {0} is missing")]
    Missing(Cid),
    /// A dag-pb block does not decode.
    #[error("block {cid} is not valid dag-pb: {source}")]
    BadNode {
        /// The block.
        cid: Cid,
        /// Why.
        source: PbError,
    },
    /// A codec the walker cannot read links from.
    #[error("block {cid} has codec 0x{codec:x}, which this walker cannot follow")]
    UnsupportedCodec {
        /// The block.
        cid: Cid,
        /// Its codec.
        codec: u64,
    },
}

/// The CIDs `data` (the block named `cid`) links to, in link order.
pub fn links(cid: &Cid, data: &[u8]) -> Result<Vec<Cid>, WalkError> {
    match cid.codec() {
        RAW => Ok(Vec::new()),
        DAG_PB => Ok(PbNode::decode(data)
            .map_err(|source| WalkError::BadNode { cid: *cid, source })?
            .links
            .into_iter()
            .map(|l| l.hash)
            .collect()),
        codec => Err(WalkError::UnsupportedCodec { cid: *cid, codec }),
    }
}

/// Visits every block reachable from `root` once, depth first, parents before children and
/// children in link order (the order of `ipfs dag export`). `get` returns a block's bytes;
/// `visit` receives each block.
pub fn dfs<B: AsRef<[u8]>>(
    root: Cid,
    mut get: impl FnMut(&Cid) -> Option<B>,
    mut visit: impl FnMut(&Cid, &[u8]),
) -> Result<(), WalkError> {
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        let data = get(&cid).ok_or(WalkError::Missing(cid))?;
        let children = links(&cid, data.as_ref())?;
        visit(&cid, data.as_ref());
        stack.extend(children.into_iter().rev());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Block, ImportOptions, file::import_bytes, profile::Profile};
    use std::collections::HashMap;

    #[test]
    fn dfs_is_preorder_and_each_block_once() {
        let opts = ImportOptions {
            chunk_size: 1,
            max_links: 2,
            ..Profile::KuboCidV1.options()
        };
        let (root, blocks) = import_bytes(b"abab", opts).unwrap();
        let store: HashMap<Cid, Block> = blocks.iter().map(|b| (b.cid, b.clone())).collect();
        let mut order = Vec::new();
        dfs(
            root.cid,
            |c| store.get(c).map(|b| b.data.clone()),
            |c, _| order.push(*c),
        )
        .unwrap();
        // root, left parent (a, b), right parent is the same node as the left: visited once.
        let a = blocks[0].cid;
        let b = blocks[1].cid;
        let left = blocks[2].cid;
        assert_eq!(order, [root.cid, left, a, b]);
        let missing = dfs(root.cid, |_| None::<Vec<u8>>, |_, _| {});
        assert_eq!(missing, Err(WalkError::Missing(root.cid)));
    }
}
