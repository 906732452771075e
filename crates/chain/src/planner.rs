//! The watcher's decisions, without I/O: which blocks count as confirmed, which range to read
//! next, and where a reorg's common ancestor is. The watcher ([`crate::watcher`]) asks the
//! chain and the store, and does what this module says.

use alloy::primitives::B256;

use crate::{config::Finality, watcher::Cursor};

/// The highest block that counts as confirmed: `head - confirmations` for
/// [`Finality::Depth`], the endpoint's tagged (`safe`/`finalized`) block otherwise, never above
/// the head. `None` when no block is confirmed yet.
pub fn confirmed(
    finality: Finality,
    confirmations: u64,
    head: u64,
    tagged: Option<u64>,
) -> Option<u64> {
    match finality {
        Finality::Depth => head.checked_sub(confirmations),
        Finality::Safe | Finality::Finalized => tagged.map(|t| t.min(head)),
    }
}

/// The range to read next, from block `next` up to `confirmed` and at most `max_range` blocks
/// long; `None` when nothing new is confirmed.
pub fn next_range(next: u64, confirmed: Option<u64>, max_range: u64) -> Option<(u64, u64)> {
    let confirmed = confirmed?;
    if next > confirmed {
        return None;
    }
    Some((next, confirmed.min(next.saturating_add(max_range.max(1) - 1))))
}

/// The search for a reorg's common ancestor: the stored checkpoints, highest first, are
/// compared with the canonical chain until one still holds.
#[derive(Debug, Clone)]
pub struct AncestorSearch {
    checkpoints: Vec<Cursor>,
    at: usize,
    floor: Option<Cursor>,
}

/// What to do after comparing a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ancestor {
    /// Compare the next checkpoint.
    Continue,
    /// The highest checkpoint still canonical: rewind to it.
    Found(Cursor),
    /// No checkpoint holds: rewind to before the floor block (`None`: to before the start).
    Exhausted(Option<u64>),
}

impl AncestorSearch {
    /// A search over `checkpoints` (any order) below `orphaned` (the stored cursor, which is no
    /// longer canonical), giving up at `floor` (the lowest block worth re-reading from).
    pub fn new(mut checkpoints: Vec<Cursor>, orphaned: u64, floor: u64) -> Self {
        checkpoints.retain(|c| c.block_number < orphaned && c.block_number >= floor);
        checkpoints.sort_by_key(|c| std::cmp::Reverse(c.block_number));
        checkpoints.dedup_by_key(|c| c.block_number);
        let floor =
            floor.checked_sub(1).map(|b| Cursor { block_number: b, block_hash: B256::ZERO });
        Self { checkpoints, at: 0, floor }
    }

    /// The block whose canonical hash to compare next, if any is left.
    pub fn probe(&self) -> Option<u64> {
        self.checkpoints.get(self.at).map(|c| c.block_number)
    }

    /// Takes the canonical hash of the block [`probe`](Self::probe) named.
    pub fn answer(&mut self, canonical: Option<B256>) -> Ancestor {
        let Some(checkpoint) = self.checkpoints.get(self.at) else {
            return Ancestor::Exhausted(self.floor.map(|f| f.block_number));
        };
        if canonical == Some(checkpoint.block_hash) {
            return Ancestor::Found(*checkpoint);
        }
        self.at += 1;
        if self.at < self.checkpoints.len() {
            Ancestor::Continue
        } else {
            Ancestor::Exhausted(self.floor.map(|f| f.block_number))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(n: u64, h: u8) -> Cursor {
        Cursor { block_number: n, block_hash: B256::repeat_byte(h) }
    }

    #[test]
    fn confirmation_and_ranges() {
        assert_eq!(confirmed(Finality::Depth, 5, 3, None), None);
        assert_eq!(confirmed(Finality::Depth, 5, 10, None), Some(5));
        assert_eq!(confirmed(Finality::Safe, 5, 10, Some(12)), Some(10));
        assert_eq!(confirmed(Finality::Finalized, 5, 10, None), None);
        assert_eq!(next_range(6, Some(5), 100), None);
        assert_eq!(next_range(0, Some(5), 100), Some((0, 5)));
        assert_eq!(next_range(0, Some(5000), 1000), Some((0, 999)));
        assert_eq!(next_range(u64::MAX, Some(u64::MAX), 10), Some((u64::MAX, u64::MAX)));
    }

    #[test]
    fn the_highest_canonical_checkpoint_is_the_ancestor() {
        let mut s = AncestorSearch::new(vec![cp(8, 8), cp(12, 12), cp(10, 10), cp(20, 20)], 15, 3);
        assert_eq!(s.probe(), Some(12), "above the orphaned cursor is ignored");
        assert_eq!(s.answer(Some(B256::repeat_byte(0))), Ancestor::Continue);
        assert_eq!(s.probe(), Some(10));
        assert_eq!(s.answer(Some(B256::repeat_byte(10))), Ancestor::Found(cp(10, 10)));
        let mut s = AncestorSearch::new(vec![cp(8, 8)], 15, 3);
        assert_eq!(s.answer(None), Ancestor::Exhausted(Some(2)));
        let mut s = AncestorSearch::new(vec![], 15, 0);
        assert_eq!(s.probe(), None);
        assert_eq!(s.answer(None), Ancestor::Exhausted(None));
    }
}
