//! `estuary aggregate`: pack CARs (or any files) into one deal (FRC-0058), write the deal's bytes,
//! and print the aggregate's piece CID and each segment's inclusion proof; `aggregate verify`
//! checks such a proof.

use std::{
    fs::File,
    io::{BufWriter, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use estuary_piece::{
    PieceCid, PieceInfo,
    aggregate::{self, Aggregate, InclusionProof, MerkleProof},
    fr32,
};
use serde::{Deserialize, Serialize};

/// A merkle proof as JSON: index and hex siblings.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProofJson {
    /// The node's index at its level.
    pub index: u64,
    /// Siblings, bottom up, hex.
    pub path: Vec<String>,
}

/// A segment's inclusion proof as JSON.
#[derive(Debug, Serialize, Deserialize)]
pub struct InclusionJson {
    /// Piece root to aggregate root.
    pub subtree: ProofJson,
    /// Index entry to aggregate root.
    pub index: ProofJson,
}

/// One packed piece.
#[derive(Debug, Serialize)]
pub struct SegmentJson {
    /// The input file.
    pub file: String,
    /// Its piece CID v2.
    pub piece_cid: String,
    /// Offset in the padded deal.
    pub offset: u64,
    /// Padded size.
    pub size: u64,
    /// Its inclusion proof.
    pub proof: InclusionJson,
}

/// What `estuary aggregate --json` prints.
#[derive(Debug, Serialize)]
pub struct AggregateReport {
    /// The aggregate's piece CID v2.
    pub piece_cid: String,
    /// Its piece CID v1.
    pub piece_cid_v1: String,
    /// Padded deal size.
    pub deal_size: u64,
    /// Bytes written to `--out` (the unpadded deal size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_bytes: Option<u64>,
    /// The segments in order.
    pub segments: Vec<SegmentJson>,
}

fn to_json(p: &MerkleProof) -> ProofJson {
    ProofJson { index: p.index, path: p.path.iter().map(hex::encode).collect() }
}

fn from_json(p: &ProofJson) -> Result<MerkleProof> {
    let path = p
        .path
        .iter()
        .map(|h| {
            let bytes = hex::decode(h).context("proof node is not hex")?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| anyhow::anyhow!("proof node is not 32 bytes"))
        })
        .collect::<Result<_>>()?;
    Ok(MerkleProof { index: p.index, path })
}

/// Parses a size such as `1048576`, `32GiB`, `512MiB` or `8KiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("size {s:?} is not a number"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} overflows"))
}

/// `estuary aggregate FILE... --deal-size SIZE [--out FILE]`.
pub fn aggregate(files: &[PathBuf], deal_size: u64, out: Option<&Path>) -> Result<AggregateReport> {
    if files.is_empty() {
        bail!("give at least one file to aggregate");
    }
    let pieces: Vec<PieceInfo> =
        files.iter().map(|f| crate::piece_cmd::piece_of_file(f)).collect::<Result<_>>()?;
    let agg = Aggregate::build(
        &pieces.iter().map(|p| (p.commp, p.height())).collect::<Vec<_>>(),
        deal_size,
    )?;
    let out_bytes = out.map(|path| write_deal(&agg, files, path)).transpose()?;
    let aggregate_info =
        PieceInfo { commp: agg.root, padded_size: deal_size, payload_size: deal_size / 128 * 127 };
    let segments = files
        .iter()
        .zip(&pieces)
        .enumerate()
        .map(|(n, (file, piece))| {
            let seg = agg.segments[n];
            let proof = agg.proof(n).context("segment without proof")?;
            Ok(SegmentJson {
                file: file.display().to_string(),
                piece_cid: PieceCid::v2(piece).to_string(),
                offset: seg.offset,
                size: seg.size,
                proof: InclusionJson {
                    subtree: to_json(&proof.subtree),
                    index: to_json(&proof.index),
                },
            })
        })
        .collect::<Result<_>>()?;
    Ok(AggregateReport {
        piece_cid: PieceCid::v2(&aggregate_info).to_string(),
        piece_cid_v1: PieceCid::v1(&aggregate_info).to_string(),
        deal_size,
        out_bytes,
        segments,
    })
}

/// Writes the deal's unpadded bytes: each file at its segment's offset, zeros between, and the
/// index (Fr32-unpadded) at the end. Its commP is the aggregate's.
fn write_deal(agg: &Aggregate, files: &[PathBuf], path: &Path) -> Result<u64> {
    let unpadded = |padded: u64| padded / 128 * 127;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut at = 0u64;
    let zeros = vec![0u8; 1 << 16];
    let fill = |out: &mut BufWriter<File>, at: &mut u64, to: u64| -> Result<()> {
        while *at < to {
            let n = (to - *at).min(zeros.len() as u64) as usize;
            out.write_all(&zeros[..n])?;
            *at += n as u64;
        }
        Ok(())
    };
    for (seg, file) in agg.segments.iter().zip(files) {
        fill(&mut out, &mut at, unpadded(seg.offset))?;
        at += std::io::copy(&mut File::open(file)?, &mut out)?;
    }
    let index_start = aggregate::index_area_start(agg.deal_size);
    fill(&mut out, &mut at, unpadded(index_start))?;
    let mut area = vec![0u8; (agg.deal_size - index_start) as usize];
    for (n, seg) in agg.segments.iter().enumerate() {
        area[n * 64..(n + 1) * 64].copy_from_slice(&seg.entry());
    }
    for quad in area.chunks_exact(fr32::QUAD) {
        let mut raw = [0u8; fr32::QUAD_PAYLOAD];
        fr32::unpad_quad(quad.try_into().unwrap_or(&[0; fr32::QUAD]), &mut raw);
        out.write_all(&raw)?;
        at += raw.len() as u64;
    }
    out.flush()?;
    Ok(at)
}

/// `estuary aggregate verify`: checks `proof` (one segment's `proof` from `--json`) for `piece`
/// in `aggregate` (both piece CIDs v2).
pub fn verify(aggregate_cid: &str, piece_cid: &str, proof: &Path) -> Result<aggregate::Segment> {
    let agg: PieceCid = aggregate_cid.parse().context("the aggregate's piece CID")?;
    let piece: PieceCid = piece_cid.parse().context("the piece's CID")?;
    let (
        PieceCid::V2 { commp: agg_root, height: agg_height, .. },
        PieceCid::V2 { commp, height, .. },
    ) = (agg, piece)
    else {
        bail!("both piece CIDs must be v2 (they carry the heights the proof needs)");
    };
    let text =
        std::fs::read_to_string(proof).with_context(|| format!("reading {}", proof.display()))?;
    let json: InclusionJson =
        serde_json::from_str(&text).context("the proof is not {\"subtree\", \"index\"} JSON")?;
    let proof =
        InclusionProof { subtree: from_json(&json.subtree)?, index: from_json(&json.index)? };
    Ok(aggregate::verify(&proof, &commp, height, &agg_root, u32::from(agg_height))?)
}
