//! `GET /piece/{aggregate}`: a closed bucket's FRC-0058 aggregate, assembled on the fly from
//! its pins' packed CARs (no second copy on disk), with single byte ranges (`bytes=a-b`,
//! `bytes=a-`: what an SP resumes a download with). Zeros between the CARs, and the index, are
//! produced, not read. The layout is [`crate::domain::bucket::Layout`]; the bytes' commP is the
//! aggregate's piece CID (`the_payload_laid_out_has_the_aggregates_commp` in `crates/piece`).

use std::{io::SeekFrom, path::PathBuf};

use axum::body::Bytes;
use axum::{
    body::Body,
    http::{HeaderValue, StatusCode, header},
    response::Response,
};
use estuary_piece::{
    PieceCid,
    aggregate::{Segment, index_payload},
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::ApiError;
use crate::{
    domain::bucket::{Layout, Part},
    store::{BucketPiece, Store},
};

/// Bytes read from a CAR, or zeros produced, per chunk of the body.
const CHUNK: u64 = 256 << 10;

static ZEROS: [u8; CHUNK as usize] = [0; CHUNK as usize];

/// The aggregate `piece` (the bytes of the request's `Range`, if any) as a response, or `None` if it is no closed bucket's here.
pub(super) async fn serve(
    store: &Store,
    packed_dir: &std::path::Path,
    piece: &PieceCid,
    range: Option<HeaderValue>,
) -> Result<Option<Response>, ApiError> {
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
    let paths = cars(packed_dir, &pieces).await?;
    let total = layout.total();
    let range = range.and_then(|v| parse_range(&v, total));
    let (status, start, end) = match range {
        Some(Ok((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(Err(())) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            insert(&mut response, header::CONTENT_RANGE, &format!("bytes */{total}"));
            return Ok(Some(response));
        }
        None => (StatusCode::OK, 0, total),
    };
    let parts = layout.parts(start, end);
    let body = Body::from_stream(futures::stream::unfold(
        Reader { parts: parts.into_iter(), paths, index, current: None },
        Reader::next,
    ));
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
    Ok(Some(response))
}

fn insert(response: &mut Response, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, v);
    }
}

/// Each piece's CAR, checked to be here at its size before anything is sent.
async fn cars(dir: &std::path::Path, pieces: &[BucketPiece]) -> Result<Vec<PathBuf>, ApiError> {
    let mut paths = Vec::with_capacity(pieces.len());
    for p in pieces {
        let path = dir.join(format!("{}.car", p.piece_cid));
        match tokio::fs::metadata(&path).await {
            Ok(meta) if meta.len() == p.car_size => paths.push(path),
            _ => {
                return Err(ApiError::NotFound(format!(
                    "piece {} of this aggregate is not here at its size",
                    p.piece_cid
                )));
            }
        }
    }
    Ok(paths)
}

/// A single range `bytes=a-b` or `bytes=a-` of `total` bytes as `[start, end)`: `None` to
/// serve the whole (any other form, which a server may ignore), `Err` if it starts past the
/// end.
fn parse_range(value: &HeaderValue, total: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.to_str().ok()?.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
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
    paths: Vec<PathBuf>,
    index: Bytes,
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
                    let (a, b) = (from as usize, (from + len) as usize);
                    Ok(self.index.slice(a.min(self.index.len())..b.min(self.index.len())))
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
                let mut file = tokio::fs::File::open(&self.paths[n]).await?;
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
    use super::*;

    #[test]
    fn ranges_an_sp_resumes_with_and_the_rest_ignored() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(parse_range(&h("bytes=100-"), 1000), Some(Ok((100, 1000))));
        assert_eq!(parse_range(&h("bytes=0-99"), 1000), Some(Ok((0, 100))));
        assert_eq!(parse_range(&h("bytes=900-5000"), 1000), Some(Ok((900, 1000))));
        assert_eq!(parse_range(&h("bytes=1000-"), 1000), Some(Err(())));
        assert_eq!(parse_range(&h("bytes=-100"), 1000), None, "suffix ranges: the whole");
        assert_eq!(parse_range(&h("bytes=0-1,5-9"), 1000), None, "several: the whole");
        assert_eq!(parse_range(&h("items=0-1"), 1000), None);
        assert_eq!(parse_range(&h("bytes=9-3"), 1000), None);
        assert_eq!(parse_range(&h("bytes=0-18446744073709551615"), 1000), None);
    }
}
