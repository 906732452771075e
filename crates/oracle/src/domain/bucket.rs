//! Buckets: packed pins grouped into one deal-sized FRC-0058 aggregate, so that small pins share
//! one order (and one deal per replica) instead of each paying for its own.
//!
//! ```text
//!   reported piece ──► place(open bucket, size) ──► Into { offset }   (kept in the bucket)
//!                                               ├─► Full              (close it, open a new one)
//!                                               └─► Alone             (as large as half a deal:
//!                                                                       its own order)
//!   open bucket ──► due(now) ──► Age (its oldest pin waited `max_age`) ──► close
//!                            └─► Own (a pin's own bucket, as soon as its pin is in) ──► close
//!   (one open bucket per group: the shared one, each dedicated account's or contract's, each
//!   pin that asked for its own)
//!   close ──► deal_size_for(end, pieces): the smallest deal that holds it ──► aggregate, order
//! ```
//!
//! Placement follows FRC-0058 as `crates/piece`'s `aggregate` builds it (filecoin-project/
//! go-data-segment, `datasegment/creation.go`, `ComputeDealPlacement` and `NewAggregate`): pieces
//! in arrival order, each aligned to its own padded size, and room at the end of the deal for
//! `max_index_entries(deal)` 64-byte index entries. A bucket is placed against the largest deal
//! (`--bucket-size`); at close it takes the smallest power of two that still holds its pieces
//! and index, so a bucket closed by age half empty does not pay for the empty half.

use estuary_piece::aggregate::{
    ENTRY_SIZE, index_area_start, max_index_entries, next_offset, unpadded,
};

/// The smallest aggregate: below 4 KiB there is no room for the index (`Aggregate::build`).
pub const MIN_DEAL_SIZE: u64 = 4096;

/// When buckets close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketRules {
    /// The largest deal, padded bytes (a power of two, at least [`MIN_DEAL_SIZE`]).
    pub deal_size: u64,
    /// A bucket closes once its oldest pin has waited this long, ms.
    pub max_age_ms: u64,
}

impl BucketRules {
    /// The largest piece a bucket takes: a piece larger than half the deal leaves no room for
    /// the index beside it (sizes are powers of two), so it is ordered on its own.
    pub fn largest_piece(&self) -> u64 {
        self.deal_size / 2
    }
}

/// How a CAR too large for one deal of `deal_size` padded bytes is split: the fewest
/// consecutive spans `(offset, length)` of at most `deal_size × 127/128` bytes (the most a piece
/// of that size holds, Fr32), of equal lengths but for one byte. Balanced, so that no part is a
/// sliver (a CAR one byte over a deal gives two halves, not a deal and one byte: SPs refuse
/// tiny pieces, and each part would be a deal of its own): every part is at least half a span, so
/// its padded size is the deal's or half of it. Empty for a CAR that fits one deal (or a deal
/// size under 128 bytes).
pub fn split_spans(car_size: u64, deal_size: u64) -> Vec<(u64, u64)> {
    let span = deal_size / 128 * 127;
    if span == 0 || car_size <= span {
        return Vec::new();
    }
    let parts = car_size.div_ceil(span);
    let (base, longer) = (car_size / parts, car_size % parts);
    let mut offset = 0;
    (0..parts)
        .map(|k| {
            let length = base + u64::from(k < longer);
            let at = offset;
            offset += length;
            (at, length)
        })
        .collect()
}

/// The open bucket, as placement needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenBucket {
    /// Its id.
    pub id: u64,
    /// Where its pieces end, padded bytes.
    pub end: u64,
    /// Pieces in it.
    pub pieces: u64,
    /// When its first piece came, unix ms.
    pub created_ms: u64,
}

/// Where a piece goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Into the open bucket (a new one when there is none), at `offset`; its pieces then end
    /// at `end`.
    Into {
        /// The piece's offset in the deal, padded bytes.
        offset: u64,
        /// Where the bucket's pieces end with it.
        end: u64,
    },
    /// Not into the open bucket: close it, and place the piece in a new one.
    Full,
    /// Too large for any bucket: the piece is its own order.
    Alone,
}

/// Why a bucket closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhy {
    /// The next piece did not fit.
    Full,
    /// Its oldest pin waited the maximum age.
    Age,
    /// A pin's own bucket: closed as soon as its pin is in it.
    Own,
}

impl CloseWhy {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Age => "age",
            Self::Own => "own",
        }
    }
}

/// Whether `pieces` pieces ending at `end` fit with their index in a deal of `deal_size`.
pub fn fits(end: u64, pieces: u64, deal_size: u64) -> bool {
    let entries = max_index_entries(deal_size);
    pieces <= entries && end.saturating_add(entries * ENTRY_SIZE) <= deal_size
}

/// Where a piece of `size` padded bytes goes, given the open bucket.
pub fn place(open: Option<&OpenBucket>, size: u64, rules: &BucketRules) -> Placement {
    if !size.is_power_of_two() || size < 128 || size > rules.largest_piece() {
        return Placement::Alone;
    }
    let (end, pieces) = open.map_or((0, 0), |b| (b.end, b.pieces));
    let offset = next_offset(end, size);
    let new_end = offset.saturating_add(size);
    if fits(new_end, pieces + 1, rules.deal_size) {
        Placement::Into { offset, end: new_end }
    } else {
        Placement::Full
    }
}

/// The group of a pin's own bucket starts with this (then its job's key).
pub const OWN_GROUP: &str = "pin:";

/// Whether open bucket `open` of `group` is due to close at `now_ms`: a pin's own bucket as
/// soon as it holds its pin, any other once its oldest pin waited the maximum age.
pub fn due(
    open: &OpenBucket,
    group: Option<&str>,
    now_ms: u64,
    rules: &BucketRules,
) -> Option<CloseWhy> {
    if open.pieces == 0 {
        return None;
    }
    if group.is_some_and(|g| g.starts_with(OWN_GROUP)) {
        return Some(CloseWhy::Own);
    }
    (now_ms.saturating_sub(open.created_ms) >= rules.max_age_ms).then_some(CloseWhy::Age)
}

/// The smallest deal that holds `pieces` pieces ending at `end` with their index, up to
/// `largest`; `None` if none does.
pub fn deal_size_for(end: u64, pieces: u64, largest: u64) -> Option<u64> {
    let mut size = end.max(MIN_DEAL_SIZE).checked_next_power_of_two()?;
    while size <= largest {
        if fits(end, pieces, size) {
            return Some(size);
        }
        size = size.checked_mul(2)?;
    }
    None
}

/// A run of an aggregate's payload, as the server reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Zero bytes.
    Zeros(u64),
    /// `len` bytes of piece `n`'s CAR, from byte `from`.
    Car {
        /// The piece, in bucket order.
        n: usize,
        /// From this byte of its CAR.
        from: u64,
        /// Bytes.
        len: u64,
    },
    /// `len` bytes of the index's payload, from byte `from`.
    Index {
        /// From this byte of the index payload.
        from: u64,
        /// Bytes.
        len: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Car(usize),
    Index,
}

/// Where each CAR and the index are in an aggregate's payload: what is served at
/// `/piece/{aggregate}` (go-data-segment's `AggregateObjectReader`), without a copy on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// (payload start, length, source), sorted and disjoint.
    regions: Vec<(u64, u64, Source)>,
    total: u64,
}

impl Layout {
    /// The payload of a `deal_size` aggregate holding CARs of `car_size` at padded `offset`
    /// (each within its padded `size`), in order, and an index payload of `index_len` bytes.
    /// `None` if they overlap or overrun the deal (a corrupt bucket).
    pub fn new(pieces: &[(u64, u64, u64)], index_len: u64, deal_size: u64) -> Option<Self> {
        let total = unpadded(deal_size);
        let mut regions = Vec::with_capacity(pieces.len() + 1);
        for (n, &(offset, size, car_size)) in pieces.iter().enumerate() {
            if car_size > unpadded(size) || offset % 128 != 0 {
                return None;
            }
            regions.push((unpadded(offset), car_size, Source::Car(n)));
        }
        regions.push((unpadded(index_area_start(deal_size)), index_len, Source::Index));
        let mut end = 0;
        for &(start, len, _) in &regions {
            if start < end {
                return None;
            }
            end = start.checked_add(len)?;
        }
        (end <= total).then_some(Self { regions, total })
    }

    /// Payload bytes in all.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The parts of bytes `start..end` of the payload (`end` at most [`Self::total`]).
    pub fn parts(&self, start: u64, end: u64) -> Vec<Part> {
        let end = end.min(self.total);
        let mut parts = Vec::new();
        let mut at = start;
        let first = self.regions.partition_point(|&(s, len, _)| s + len <= start);
        for &(s, len, source) in &self.regions[first..] {
            if at >= end {
                break;
            }
            if s > at {
                let gap = s.min(end) - at;
                parts.push(Part::Zeros(gap));
                at += gap;
            }
            let stop = (s + len).min(end);
            if at < stop {
                let (from, len) = (at - s, stop - at);
                parts.push(match source {
                    Source::Car(n) => Part::Car { n, from, len },
                    Source::Index => Part::Index { from, len },
                });
                at = stop;
            }
        }
        if at < end {
            parts.push(Part::Zeros(end - at));
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use estuary_piece::aggregate::Aggregate;
    use proptest::prelude::*;

    use super::*;

    const RULES: BucketRules = BucketRules { deal_size: 1 << 20, max_age_ms: 1000 };

    #[test]
    fn pieces_go_in_aligned_until_full_and_large_ones_alone() {
        let mut open = OpenBucket { id: 1, end: 0, pieces: 0, created_ms: 0 };
        assert_eq!(place(Some(&open), 256, &RULES), Placement::Into { offset: 0, end: 256 });
        open.end = 256;
        open.pieces = 1;
        // Aligned up to its own size.
        assert_eq!(place(Some(&open), 1024, &RULES), Placement::Into { offset: 1024, end: 2048 });
        // Half the deal or more, with the index, never fits: alone.
        assert_eq!(place(None, 1 << 20, &RULES), Placement::Alone);
        assert_eq!(place(None, 1 << 19, &RULES), Placement::Into { offset: 0, end: 1 << 19 });
        assert_eq!(place(None, 100, &RULES), Placement::Alone, "not a padded size");
        open.end = 1 << 19;
        assert_eq!(place(Some(&open), 1 << 19, &RULES), Placement::Full);
        // Out of index entries (8 in 1 MiB).
        let many = OpenBucket { id: 1, end: 8 * 128, pieces: 8, created_ms: 0 };
        assert_eq!(place(Some(&many), 128, &RULES), Placement::Full);
    }

    #[test]
    fn a_bucket_closes_by_age_and_shrinks_to_what_it_holds() {
        let open = OpenBucket { id: 1, end: 2048, pieces: 2, created_ms: 5000 };
        assert_eq!(due(&open, None, 5999, &RULES), None);
        assert_eq!(due(&open, None, 6000, &RULES), Some(CloseWhy::Age));
        assert_eq!(due(&OpenBucket { pieces: 0, ..open }, None, 9999, &RULES), None);
        let account = Some("requester:0xabc");
        assert_eq!(due(&open, account, 5999, &RULES), None, "an account's: by age, size");
        assert_eq!(due(&open, Some("pin:api/x/1"), 0, &RULES), Some(CloseWhy::Own));
        let empty = OpenBucket { pieces: 0, ..open };
        assert_eq!(due(&empty, Some("pin:api/x/1"), 0, &RULES), None);
        assert_eq!(deal_size_for(2048, 2, 1 << 20), Some(4096));
        assert_eq!(deal_size_for(4096, 2, 1 << 20), Some(8192));
        assert_eq!(deal_size_for(1 << 19, 1, 1 << 20), Some(1 << 20));
        assert_eq!(deal_size_for(1 << 20, 1, 1 << 20), None);
    }

    #[test]
    fn the_layout_gives_each_byte_once_with_zeros_between() {
        // Two CARs (300 B at 0, 1000 B at padded 1024) and a 254-byte index in 4 KiB.
        let layout = Layout::new(&[(0, 512, 300), (1024, 1024, 1000)], 254, 4096).unwrap();
        assert_eq!(layout.total(), 4064);
        let index_at = unpadded(index_area_start(4096));
        assert_eq!(
            layout.parts(0, layout.total()),
            [
                Part::Car { n: 0, from: 0, len: 300 },
                Part::Zeros(1016 - 300),
                Part::Car { n: 1, from: 0, len: 1000 },
                Part::Zeros(index_at - 2016),
                Part::Index { from: 0, len: 254 },
            ]
        );
        // A range from inside the first CAR into the gap after the second.
        assert_eq!(
            layout.parts(100, 2100),
            [
                Part::Car { n: 0, from: 100, len: 200 },
                Part::Zeros(716),
                Part::Car { n: 1, from: 0, len: 1000 },
                Part::Zeros(84),
            ]
        );
        // The index ends the deal (its area is the last 4 × 64 padded bytes).
        assert_eq!(index_at + 254, layout.total());
        assert_eq!(layout.parts(4000, 9999), [Part::Index { from: 190, len: 64 }]);
        // A CAR larger than its piece, or overlapping the next, is refused.
        assert_eq!(Layout::new(&[(0, 128, 128)], 0, 4096), None);
        assert_eq!(Layout::new(&[(0, 1024, 1000), (512, 512, 10)], 0, 4096), None);
    }

    proptest! {
        /// Any range's parts add up to the range, and reading every range piecewise gives the
        /// same bytes as reading the whole payload.
        #[test]
        fn parts_cover_any_range(a in 0u64..5000, b in 0u64..5000) {
            let layout = Layout::new(&[(0, 512, 300), (1024, 1024, 1000)], 254, 4096).unwrap();
            let (start, end) = (a.min(b), a.max(b));
            let len: u64 = layout
                .parts(start, end)
                .iter()
                .map(|p| match *p {
                    Part::Zeros(n) | Part::Car { len: n, .. } | Part::Index { len: n, .. } => n,
                })
                .sum();
            prop_assert_eq!(len, end.min(layout.total()).saturating_sub(start));
        }


        /// Whatever sizes arrive, the pieces placed in a bucket build into an aggregate of the
        /// size chosen at close, at the offsets placement gave.
        #[test]
        fn placed_buckets_always_build(heights in prop::collection::vec(2u8..=14, 1..40)) {
            let rules = BucketRules { deal_size: 1 << 20, max_age_ms: 0 };
            let mut open = OpenBucket { id: 1, end: 0, pieces: 0, created_ms: 0 };
            let mut placed = Vec::new();
            for h in heights {
                let size = 32u64 << h;
                match place(Some(&open), size, &rules) {
                    Placement::Into { offset, end } => {
                        placed.push(([h; 32], h, offset));
                        open.end = end;
                        open.pieces += 1;
                    }
                    Placement::Full | Placement::Alone => break,
                }
            }
            prop_assume!(!placed.is_empty());
            let deal = deal_size_for(open.end, open.pieces, rules.deal_size).unwrap();
            let pieces: Vec<_> = placed.iter().map(|&(c, h, _)| (c, h)).collect();
            let agg = Aggregate::build(&pieces, deal).unwrap();
            for (s, &(_, _, offset)) in agg.segments.iter().zip(&placed) {
                prop_assert_eq!(s.offset, offset);
            }
            if deal > MIN_DEAL_SIZE {
                prop_assert!(Aggregate::build(&pieces, deal / 2).is_err(), "the smallest deal");
            }
        }
    }

    #[test]
    fn a_car_larger_than_a_deal_is_split_into_spans_each_within_it() {
        assert!(split_spans(1000, 4096).is_empty(), "fits one deal");
        assert!(split_spans(4064, 4096).is_empty(), "exactly a full deal");
        assert_eq!(split_spans(4065, 4096), [(0, 2033), (2033, 2032)], "halves, no sliver");
        assert_eq!(split_spans(10_000, 4096), [(0, 3334), (3334, 3333), (6667, 3333)]);
        assert_eq!(split_spans(8128, 4096), [(0, 4064), (4064, 4064)], "two full deals");
        assert!(split_spans(10, 64).is_empty(), "no deal that small");
    }

    proptest::proptest! {
        /// The spans tile the CAR in order, and each fits a piece of the deal size.
        #[test]
        fn spans_tile_the_car(car in 0u64..10_000_000, shift in 7u32..24) {
            let deal = 1u64 << shift;
            let spans = split_spans(car, deal);
            let span = deal / 128 * 127;
            let mut at = 0;
            for (offset, len) in &spans {
                proptest::prop_assert_eq!(*offset, at);
                proptest::prop_assert!(*len * 2 >= span && *len <= span, "{} of {}", len, span);
                at += len;
            }
            proptest::prop_assert!(spans.is_empty() || at == car);
            proptest::prop_assert_eq!(spans.len() as u64, if car <= span { 0 } else { car.div_ceil(span) });
        }
    }
}
