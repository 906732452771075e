//! `GET /piece/{part}` of a pin split across pieces: its span of the pin's packed CAR
//! ([`serve_span`]).
//!
//! `GET /piece/{aggregate}`: a closed bucket's FRC-0058 aggregate, assembled on the fly from
//! its pins' packed CARs (no second copy on disk), with single byte ranges (`bytes=a-b`,
//! `bytes=a-`: what an SP resumes a download with). Zeros between the CARs, and the index, are
//! produced, not read. The layout is [`crate::domain::bucket::Layout`]; the bytes' commP is the
//! aggregate's piece CID (`the_payload_laid_out_has_the_aggregates_commp` in `crates/piece`).

use std::{collections::HashMap, io::SeekFrom, path::PathBuf, sync::Arc};

use axum::body::Bytes;
use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use estuary_piece::{
    PieceCid,
    aggregate::{Aggregate, Segment, index_payload},
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::ApiError;
use crate::{
    domain::bucket::{Layout, Part},
    store::Store,
};

/// Bytes read from a CAR, or zeros produced, per chunk of the body.
const CHUNK: u64 = 256 << 10;

static ZEROS: [u8; CHUNK as usize] = [0; CHUNK as usize];

/// Aggregates assembled recently: a closed bucket never changes, so its layout, index and CAR
/// paths are built once, not per request — an anonymous client asking for one byte of a
/// 100,000-piece aggregate again and again costs a lookup here, not 100,000 rows and stats.
/// Bounded (16 aggregates, the least recently used out). Beside them, the trees inclusion
/// proofs are cut from (`GET /inclusion/{piece}`, `Trees`).
#[derive(Debug)]
pub struct AggregateCache {
    entries: Recent<PieceCid, Assembled>,
    /// Closed buckets' aggregate trees.
    pub(super) trees: Trees,
}

impl Default for AggregateCache {
    fn default() -> Self {
        Self { entries: Recent::new(usize::MAX, CACHED, |_| 1), trees: Trees::default() }
    }
}

/// Values used recently, at most `count` of them, the least recently used out once their total
/// weight passes a limit (a value heavier than the limit is still kept, alone: it was just made,
/// and is in use). A few dozen entries at most: a lookup is a scan.
#[derive(Debug)]
struct Recent<K, V> {
    /// Most recently used last.
    entries: std::sync::Mutex<Vec<(K, Arc<V>)>>,
    limit: usize,
    count: usize,
    weight: fn(&V) -> usize,
}

impl<K: PartialEq, V> Recent<K, V> {
    fn new(limit: usize, count: usize, weight: fn(&V) -> usize) -> Self {
        Self { entries: std::sync::Mutex::default(), limit, count: count.max(1), weight }
    }

    fn get(&self, key: &K) -> Option<Arc<V>> {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = entries.iter().position(|(k, _)| k == key)?;
        let entry = entries.remove(at);
        let found = Arc::clone(&entry.1);
        entries.push(entry);
        Some(found)
    }

    fn put(&self, key: K, value: Arc<V>) {
        let mut entries = self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.retain(|(k, _)| *k != key);
        let mut held: usize = entries.iter().map(|(_, v)| (self.weight)(v)).sum();
        while !entries.is_empty()
            && (held + (self.weight)(&value) > self.limit || entries.len() >= self.count)
        {
            held -= (self.weight)(&entries.remove(0).1);
        }
        entries.push((key, value));
    }

    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}

/// A closed bucket's FRC-0058 aggregate tree, and where each of its pieces is in it: what every
/// inclusion proof of the bucket is cut from.
#[derive(Debug)]
pub(super) struct Tree {
    /// The tree (its proofs cost a lookup per level: the nodes are hashed once, when built).
    pub aggregate: Aggregate,
    /// Each piece (v2 piece CID) and its place among the aggregate's segments.
    pub places: HashMap<String, usize>,
}

/// Trees built recently, bounded by their estimated size ([`TREE_BYTES`] in all, at most
/// [`TREES`] of them). A tree is built by one request at a time, off the async workers; a
/// request that finds another building is answered 503 at once (it holds no gateway slot while
/// waiting), so a client cycling through more buckets than are held costs at most one core and
/// one bucket's rows at a time, and its other requests are refused, not queued.
#[derive(Debug)]
pub(super) struct Trees {
    /// By bucket id, weighed by their pieces.
    entries: Recent<u64, Tree>,
    /// One build at a time.
    build: tokio::sync::Semaphore,
}

/// Bytes of trees held, over all trees (their estimate: [`Tree::bytes`]).
const TREE_BYTES: usize = 256 << 20;
/// Trees held at most.
const TREES: usize = 64;

impl Tree {
    /// Its size in memory, estimated: per piece, its placed item, segment, upper nodes, place and
    /// piece CID (about 400 bytes); per tree, a vector per level (about 8 KiB).
    fn bytes(&self) -> usize {
        (8 << 10) + 400 * self.places.len()
    }
}

impl Default for Trees {
    fn default() -> Self {
        Self::with_limit(TREE_BYTES)
    }
}

impl Trees {
    fn with_limit(bytes: usize) -> Self {
        Self {
            entries: Recent::new(bytes, TREES, Tree::bytes),
            build: tokio::sync::Semaphore::new(1),
        }
    }

    fn get(&self, bucket: u64) -> Option<Arc<Tree>> {
        self.entries.get(&bucket)
    }

    fn put(&self, bucket: u64, tree: Arc<Tree>) {
        self.entries.put(bucket, tree);
    }

    /// Closed bucket `bucket`'s tree (`aggregate` its aggregate, of `deal_size`), built from its
    /// rows unless held; a tree whose root is not `aggregate`'s commitment (rows that no longer
    /// give the aggregate recorded) is an error, and not kept.
    pub(super) async fn tree(
        &self,
        store: &Store,
        bucket: u64,
        aggregate: &PieceCid,
        deal_size: u64,
    ) -> Result<Arc<Tree>, ApiError> {
        if let Some(tree) = self.get(bucket) {
            return Ok(tree);
        }
        let _one = self.build.try_acquire().map_err(|_| ApiError::Busy)?;
        // Another request may have built it while this one waited.
        if let Some(tree) = self.get(bucket) {
            return Ok(tree);
        }
        let pieces = store.bucket_pieces(bucket).await?;
        let tree = tokio::task::spawn_blocking(move || {
            let aggregate = crate::deals::buckets::aggregate_of(bucket, &pieces, deal_size)?;
            let places = pieces.into_iter().enumerate().map(|(n, p)| (p.piece_cid, n)).collect();
            Ok::<_, crate::deals::buckets::BucketError>(Tree { aggregate, places })
        })
        .await
        .map_err(|e| ApiError::Internal(format!("building bucket {bucket}'s tree: {e}")))?
        .map_err(|e| match e {
            crate::deals::buckets::BucketError::Store(e) => ApiError::Store(e),
            other => ApiError::Internal(other.to_string()),
        })?;
        if tree.aggregate.root != *aggregate.commp() || tree.aggregate.deal_size != deal_size {
            return Err(ApiError::Internal(format!(
                "bucket {bucket}'s pieces no longer give its aggregate {aggregate}"
            )));
        }
        let tree = Arc::new(tree);
        self.put(bucket, Arc::clone(&tree));
        Ok(tree)
    }
}

/// Aggregates kept assembled (each holds its pieces' paths and its index: about 200 bytes per
/// piece).
const CACHED: usize = 16;

/// What serving an aggregate needs, read once.
#[derive(Debug)]
struct Assembled {
    layout: Layout,
    index: Bytes,
    /// Each piece's CAR and its size.
    cars: Vec<(PathBuf, u64)>,
}

impl AggregateCache {
    fn get(&self, piece: &PieceCid) -> Option<Arc<Assembled>> {
        self.entries.get(piece)
    }

    fn put(&self, piece: PieceCid, assembled: Arc<Assembled>) {
        self.entries.put(piece, assembled);
    }

    /// How many aggregates are held (for tests).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The aggregate `piece`, read from the store and laid out; `None` if it is no closed bucket's
/// here.
async fn assemble(
    store: &Store,
    packed_dir: &std::path::Path,
    piece: &PieceCid,
) -> Result<Option<Assembled>, ApiError> {
    let Some((bucket, pieces)) = store.bucket_of_aggregate(&piece.to_string()).await? else {
        return Ok(None);
    };
    let corrupt = || ApiError::NotFound(format!("aggregate {piece} cannot be assembled here"));
    let deal_size = bucket.deal_size.ok_or_else(corrupt)?;
    let mut segments = Vec::with_capacity(pieces.len());
    for p in &pieces {
        let cid: PieceCid = p.piece_cid.parse().map_err(|_| corrupt())?;
        segments.push(Segment { commp: *cid.commp(), offset: p.offset, size: p.padded_size });
    }
    let index = Bytes::from(index_payload(&segments));
    let spans: Vec<_> = pieces.iter().map(|p| (p.offset, p.padded_size, p.car_size)).collect();
    let layout = Layout::new(&spans, index.len() as u64, deal_size).ok_or_else(corrupt)?;
    let cars = pieces
        .iter()
        .map(|p| (packed_dir.join(format!("{}.car", p.piece_cid)), p.car_size))
        .collect();
    Ok(Some(Assembled { layout, index, cars }))
}

/// The aggregate `piece` (the bytes of the request's `Range`, if any) as a response, or `None`
/// if it is no closed bucket's here.
pub(super) async fn serve(
    store: &Store,
    cache: &AggregateCache,
    packed_dir: &std::path::Path,
    piece: &PieceCid,
    range: Option<HeaderValue>,
) -> Result<Option<Response>, ApiError> {
    let assembled = match cache.get(piece) {
        Some(assembled) => assembled,
        None => {
            let Some(assembled) = assemble(store, packed_dir, piece).await? else {
                return Ok(None);
            };
            let assembled = Arc::new(assembled);
            cache.put(*piece, Arc::clone(&assembled));
            assembled
        }
    };
    let total = assembled.layout.total();
    let range = range.and_then(|v| parse_range(&v, total));
    let (status, start, end) = match range {
        Some(Ok((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(Err(())) => {
            return Ok(Some(unsatisfiable(total)));
        }
        None => (StatusCode::OK, 0, total),
    };
    let parts = assembled.layout.parts(start, end);
    check_cars(&assembled.cars, &parts).await?;
    let body = Body::from_stream(futures::stream::unfold(
        Reader { parts: parts.into_iter(), assembled, current: None },
        Reader::next,
    ));
    let response = ranged(body, piece, status, (start, end), total);
    Ok(Some(response))
}

/// `piece`, not here, read from the providers that hold it (the bytes of the request's
/// `Range`, if any), each span checked against the piece's commitment, and said so
/// (`x-estuary-source: providers`); `None` if it cannot be.
pub(super) async fn serve_cold(
    cold: &Arc<crate::deals::cold::ColdReads>,
    piece: &PieceCid,
    range: Option<HeaderValue>,
) -> Result<Option<Response>, ApiError> {
    use crate::deals::cold::ColdError;
    let mut asked = None;
    let read = cold.read(piece, |total| {
        let parsed = range.as_ref().and_then(|v| parse_range(v, total));
        asked = Some((total, parsed));
        match parsed {
            Some(Ok(range)) => Some(range),
            Some(Err(())) => None,
            None => Some((0, total)),
        }
    });
    let read = match read.await {
        Ok(read) => read,
        Err(ColdError::Store(e)) => return Err(e.into()),
        Err(ColdError::Busy) => return Err(ApiError::Busy),
        Err(e @ (ColdError::Unserved { .. } | ColdError::Cut(_) | ColdError::Local(_))) => {
            return Err(ApiError::Upstream(e.to_string()));
        }
    };
    let Some(read) = read else {
        if let Some((total, Some(Err(())))) = asked {
            return Ok(Some(unsatisfiable(total)));
        }
        return Ok(None);
    };
    let (status, start, end) = match asked {
        Some((_, Some(Ok((start, end))))) => (StatusCode::PARTIAL_CONTENT, start, end),
        _ => (StatusCode::OK, 0, read.total),
    };
    let mut response =
        ranged(Body::from_stream(read.body), piece, status, (start, end), read.total);
    // As the gateway says of blocks read from the providers.
    response.headers_mut().insert(
        header::HeaderName::from_static(super::gateway::SOURCE),
        HeaderValue::from_static("providers"),
    );
    Ok(Some(response))
}

/// Part `piece` of a split pin: `length` bytes of the CAR at `path` (of `car_size` bytes) from
/// `offset` (the bytes of the request's `Range`, if any), read as it is sent.
pub(super) async fn serve_span(
    piece: &PieceCid,
    path: &std::path::Path,
    car_size: u64,
    offset: u64,
    length: u64,
    range: Option<HeaderValue>,
) -> Result<Response, ApiError> {
    let gone = || ApiError::NotFound(format!("piece {piece} is not here at its size"));
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.len() == car_size && offset.saturating_add(length) <= car_size => {}
        _ => return Err(gone()),
    }
    let (status, start, end) = match range.and_then(|v| parse_range(&v, length)) {
        Some(Ok((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(Err(())) => {
            return Ok(unsatisfiable(length));
        }
        None => (StatusCode::OK, 0, length),
    };
    let mut file = tokio::fs::File::open(path).await.map_err(|_| gone())?;
    file.seek(SeekFrom::Start(offset + start)).await.map_err(|_| gone())?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file.take(end - start),
        CHUNK as usize,
    ));
    let response = ranged(body, piece, status, (start, end), length);
    Ok(response)
}

/// A piece's bytes as this oracle holds them, streamed, with their length.
pub type PieceBytes = (u64, futures::stream::BoxStream<'static, std::io::Result<Bytes>>);

/// The bytes of `piece` as the oracle holds it, in full — a packed CAR, a closed bucket's
/// aggregate or a split pin's part: what `/piece/{piece}` serves; `None` if it is not here.
/// What the prober makes a piece's levels from ([`crate::deals::probes`]).
pub async fn piece_bytes(
    store: &Store,
    packed_dir: &std::path::Path,
    piece: &PieceCid,
) -> Result<Option<PieceBytes>, ApiError> {
    use futures::StreamExt;
    let path = packed_dir.join(format!("{piece}.car"));
    if let Ok(file) = tokio::fs::File::open(&path).await {
        let len = file.metadata().await.map_err(|e| ApiError::NotFound(e.to_string()))?.len();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, CHUNK as usize);
        return Ok(Some((len, stream.boxed())));
    }
    if let Some(assembled) = assemble(store, packed_dir, piece).await? {
        let total = assembled.layout.total();
        let parts = assembled.layout.parts(0, total);
        check_cars(&assembled.cars, &parts).await?;
        let assembled = Arc::new(assembled);
        let reader = Reader { parts: parts.into_iter(), assembled, current: None };
        return Ok(Some((total, futures::stream::unfold(reader, Reader::next).boxed())));
    }
    for source in store.part_sources(&piece.to_string()).await? {
        let path = packed_dir.join(format!("{}.car", source.parent));
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.len() == source.car_size => {}
            _ => continue,
        }
        let Ok(mut file) = tokio::fs::File::open(&path).await else { continue };
        if file.seek(SeekFrom::Start(source.offset)).await.is_err() {
            continue;
        }
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file.take(source.length), CHUNK as usize);
        return Ok(Some((source.length, stream.boxed())));
    }
    Ok(None)
}

/// A `416` for a range past the end of `total` bytes.
fn unsatisfiable(total: u64) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
    insert(&mut response, header::CONTENT_RANGE, &format!("bytes */{total}"));
    response
}

/// A piece's bytes `[start, end)` of `total` as a `200` or `206` answer, with its headers.
fn ranged(
    body: Body,
    piece: &PieceCid,
    status: StatusCode,
    (start, end): (u64, u64),
    total: u64,
) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    insert(&mut response, header::CONTENT_LENGTH, &(end - start).to_string());
    insert(&mut response, header::ACCEPT_RANGES, "bytes");
    insert(&mut response, header::CONTENT_TYPE, "application/octet-stream");
    insert(&mut response, header::ETAG, &format!("\"{piece}\""));
    if status == StatusCode::PARTIAL_CONTENT {
        let last = end.saturating_sub(1);
        insert(&mut response, header::CONTENT_RANGE, &format!("bytes {start}-{last}/{total}"));
    }
    response
}

fn insert(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}

/// The CARs the range reads, checked to be here at their size before anything is sent (a
/// range costs a stat per CAR it reads, not per CAR of the aggregate).
async fn check_cars(cars: &[(PathBuf, u64)], parts: &[Part]) -> Result<(), ApiError> {
    for part in parts {
        let Part::Car { n, .. } = *part else { continue };
        let Some((path, size)) = cars.get(n) else {
            return Err(ApiError::NotFound("this aggregate cannot be assembled here".into()));
        };
        match tokio::fs::metadata(path).await {
            Ok(meta) if meta.len() == *size => {}
            _ => {
                let name = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                return Err(ApiError::NotFound(format!(
                    "piece {} of this aggregate is not here at its size",
                    name.unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

/// A single range `bytes=a-b` or `bytes=a-` of `total` bytes as `[start, end)`: `None` to
/// serve the whole (any other form, which a server may ignore), `Err` if it starts past the
/// end.
pub(super) fn parse_range(value: &HeaderValue, total: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.to_str().ok()?.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    if a.trim().is_empty() {
        // The last `n` bytes (RFC 9110 §14.1.2).
        let n: u64 = b.trim().parse().ok()?;
        return Some(if n == 0 || total == 0 {
            Err(())
        } else {
            Ok((total.saturating_sub(n), total))
        });
    }
    let start: u64 = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => total,
        b => b.parse::<u64>().ok()?.checked_add(1)?.min(total),
    };
    if start >= total {
        return Some(Err(()));
    }
    (start < end).then_some(Ok((start, end)))
}

/// The body, part after part; a CAR is opened when its first part comes.
struct Reader {
    parts: std::vec::IntoIter<Part>,
    assembled: Arc<Assembled>,
    /// The part being read: what is left of it, and its open CAR.
    current: Option<(Part, Option<tokio::fs::File>)>,
}

impl Reader {
    async fn next(mut self) -> Option<(std::io::Result<Bytes>, Self)> {
        loop {
            let (part, file) = match self.current.take() {
                Some(current) => current,
                None => (self.parts.next()?, None),
            };
            let chunk = match part {
                Part::Zeros(0) | Part::Car { len: 0, .. } | Part::Index { len: 0, .. } => continue,
                Part::Zeros(len) => {
                    let n = len.min(CHUNK);
                    self.current = Some((Part::Zeros(len - n), None));
                    Ok(Bytes::from_static(&ZEROS[..n as usize]))
                }
                Part::Index { from, len } => {
                    let index = &self.assembled.index;
                    let (a, b) = (from as usize, (from + len) as usize);
                    Ok(index.slice(a.min(index.len())..b.min(index.len())))
                }
                Part::Car { n, from, len } => match self.read(n, from, len, file).await {
                    Ok((bytes, file)) => {
                        let read = bytes.len() as u64;
                        let rest = Part::Car { n, from: from + read, len: len - read };
                        self.current = Some((rest, Some(file)));
                        Ok(bytes)
                    }
                    Err(e) => {
                        // The body ends with the error: the client sees a short download.
                        self.parts = Vec::new().into_iter();
                        Err(e)
                    }
                },
            };
            return Some((chunk, self));
        }
    }

    async fn read(
        &self,
        n: usize,
        from: u64,
        len: u64,
        file: Option<tokio::fs::File>,
    ) -> std::io::Result<(Bytes, tokio::fs::File)> {
        let mut file = match file {
            Some(file) => file,
            None => {
                let path = self.assembled.cars.get(n).map(|(path, _)| path);
                let path = path.ok_or_else(|| std::io::Error::other("no such CAR"))?;
                let mut file = tokio::fs::File::open(path).await?;
                file.seek(SeekFrom::Start(from)).await?;
                file
            }
        };
        let mut buf = vec![0u8; len.min(CHUNK) as usize];
        file.read_exact(&mut buf).await?;
        Ok((Bytes::from(buf), file))
    }
}

#[cfg(test)]
mod tests {
    use estuary_piece::commp::PieceInfo;

    use super::*;

    #[test]
    fn ranges_an_sp_resumes_with_suffixes_and_the_rest_ignored() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(parse_range(&h("bytes=100-"), 1000), Some(Ok((100, 1000))));
        assert_eq!(parse_range(&h("bytes=0-99"), 1000), Some(Ok((0, 100))));
        assert_eq!(parse_range(&h("bytes=900-5000"), 1000), Some(Ok((900, 1000))));
        assert_eq!(parse_range(&h("bytes=1000-"), 1000), Some(Err(())));
        assert_eq!(parse_range(&h("bytes=-100"), 1000), Some(Ok((900, 1000))), "the last 100");
        assert_eq!(parse_range(&h("bytes=-5000"), 1000), Some(Ok((0, 1000))), "all of it");
        assert_eq!(parse_range(&h("bytes=-0"), 1000), Some(Err(())));
        assert_eq!(parse_range(&h("bytes=-5"), 0), Some(Err(())));
        assert_eq!(parse_range(&h("bytes=0-1,5-9"), 1000), None, "several: the whole");
        assert_eq!(parse_range(&h("items=0-1"), 1000), None);
        assert_eq!(parse_range(&h("bytes=9-3"), 1000), None);
        assert_eq!(parse_range(&h("bytes=0-18446744073709551615"), 1000), None);
    }

    /// Trees are kept by their size: the least recently used go first, and one tree larger than
    /// the limit is still kept alone (it was just built, and is being used).
    #[test]
    fn trees_are_kept_by_their_size() {
        let trees = Trees::with_limit((8 << 10) * 3 + 400 * 5);
        let tree = |pieces: usize| {
            let nodes: Vec<_> = (0..pieces).map(|i| ([i as u8; 32], 2u8)).collect();
            Arc::new(Tree {
                aggregate: Aggregate::build(&nodes, 1 << 25).unwrap(),
                places: (0..pieces).map(|i| (format!("p{i}"), i)).collect(),
            })
        };
        trees.put(1, tree(2));
        trees.put(2, tree(2));
        assert!(trees.get(1).is_some(), "1 is now the most recently used");
        trees.put(3, tree(2));
        assert!(trees.get(2).is_none(), "2 made room: three trees of two pieces are too many");
        assert!(trees.get(1).is_some() && trees.get(3).is_some());
        trees.put(4, tree(40));
        assert!(trees.get(1).is_none() && trees.get(3).is_none());
        assert_eq!(trees.get(4).unwrap().places.len(), 40);
        // However small, at most TREES of them.
        let many = Trees::with_limit(usize::MAX);
        let one = tree(1);
        for bucket in 0..=TREES as u64 {
            many.put(bucket, Arc::clone(&one));
        }
        assert!(many.get(0).is_none());
        assert!(many.get(1).is_some() && many.get(TREES as u64).is_some());
    }

    #[test]
    fn the_cache_keeps_the_most_recently_used_aggregates() {
        let cache = AggregateCache::default();
        let assembled = || {
            let layout = Layout::new(&[(0, 512, 300)], 64, 2048).unwrap();
            Arc::new(Assembled { layout, index: Bytes::new(), cars: Vec::new() })
        };
        let piece = |n: u8| {
            let info = PieceInfo { commp: [n; 32], padded_size: 2048, payload_size: 2032 };
            PieceCid::v2(&info)
        };
        for n in 0..CACHED as u8 {
            cache.put(piece(n), assembled());
        }
        assert!(cache.get(&piece(0)).is_some(), "0 is used again: the most recent");
        cache.put(piece(200), assembled());
        assert_eq!(cache.len(), CACHED);
        assert!(cache.get(&piece(1)).is_none(), "the least recently used went");
        assert!(cache.get(&piece(0)).is_some());
        cache.put(piece(200), assembled());
        assert_eq!(cache.len(), CACHED, "put again, held once");
    }
}
