//! Estuary's browser node, compiled to WebAssembly and run in a Web Worker.
//!
//! This crate is a binding layer only: every rule lives in the format crates
//! (`estuary-dag`, `estuary-piece`), and each function here converts JavaScript values in, calls them, and turns
//! their typed errors into real JavaScript `Error`s with clear messages.

#[cfg(target_arch = "wasm32")]
mod p2p;
#[cfg(target_arch = "wasm32")]
pub use p2p::P2pNode;

use estuary_dag::CidInfo;
use estuary_piece::{CommP, PieceCid};
use js_sys::{Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const CID_INFO_TS: &str = r#"
/** A parsed CID. */
export interface CidInfo {
  /** 0 or 1. */
  version: number;
  /** Multicodec code of the content (0x70 dag-pb, 0x55 raw, ...). */
  codec: number;
  /** The codec's common name, or null when unknown. */
  codecName: string | null;
  /** The multihash: function code and digest. */
  multihash: { code: number; digest: Uint8Array };
  /** The binary CID. */
  bytes: Uint8Array;
  /** Canonical text: base58btc for CIDv0, base32 for CIDv1. */
  string: string;
}
"#;

/// Parses a CID from its text form.
///
/// Returns `{ version, codec, codecName, multihash: { code, digest }, bytes, string }`, where
/// `codec` and `multihash.code` are multicodec numbers, `digest` and `bytes` are `Uint8Array`s
/// and `string` is the canonical text (base58btc for CIDv0, base32 for CIDv1). Throws an `Error`
/// saying what is wrong for anything that is not a CID.
#[wasm_bindgen(js_name = parseCid, unchecked_return_type = "CidInfo")]
pub fn parse_cid(text: &str) -> Result<Object, JsError> {
    let info = estuary_dag::parse_cid(text).map_err(|e| JsError::new(&e.to_string()))?;
    Ok(cid_object(&info))
}

#[wasm_bindgen(typescript_custom_section)]
const INCLUSION_TS: &str = r#"
/** A piece found inside an aggregate by its FRC-0058 inclusion proof. */
export interface Inclusion {
  /** Where the piece starts in the aggregate, padded bytes. */
  offset: number;
  /** The piece's padded size. */
  pieceSize: number;
  /** The aggregate's padded size: the deal's. */
  aggregateSize: number;
  /** The piece's commitment, as its CID gives it (`0x` hex): `commPc`. */
  pieceCommP: string;
  /** The aggregate's commitment (`0x` hex): `commPa`. */
  aggregateCommP: string;
}
"#;

/// Checks an FRC-0058 inclusion proof: that `piece` (a v2 piece CID) is a data segment of
/// `aggregate` (v2) at the place the proof names, with its entry in the aggregate's index
/// (`estuary_piece::aggregate::verify_pieces`, the checks of go-data-segment).
///
/// The proof is FRC-0058's pair of `ProofData`: for the subtree (piece → aggregate) and for the
/// index entry, the node's index at its level and its path, the sibling nodes bottom up,
/// concatenated (32 bytes each). Returns `{ offset, pieceSize, aggregateSize, pieceCommP,
/// aggregateCommP }` (the commitments as the CIDs give them, to compare with what else names
/// them); throws an `Error` saying what does not hold.
#[wasm_bindgen(js_name = verifyInclusion, unchecked_return_type = "Inclusion")]
pub fn verify_inclusion(
    piece: &str,
    aggregate: &str,
    subtree_index: f64,
    subtree_path: &[u8],
    index_index: f64,
    index_path: &[u8],
) -> Result<Object, JsError> {
    let cid = |text: &str, what: &str| {
        text.parse::<PieceCid>()
            .map_err(|e| JsError::new(&format!("{what} is not a piece CID ({text:?}): {e}")))
    };
    let (piece, aggregate) = (cid(piece, "the piece")?, cid(aggregate, "the aggregate")?);
    let proof = estuary_piece::aggregate::InclusionProof {
        subtree: merkle_proof(subtree_index, subtree_path, "subtree")?,
        index: merkle_proof(index_index, index_path, "index")?,
    };
    let segment =
        estuary_piece::aggregate::verify_pieces(&proof, &piece, &aggregate).map_err(js_err)?;
    let out = Object::new();
    set(&out, "offset", &JsValue::from_f64(segment.offset as f64));
    set(&out, "pieceSize", &JsValue::from_f64(segment.size as f64));
    let size = aggregate.padded_size().unwrap_or_default();
    set(&out, "aggregateSize", &JsValue::from_f64(size as f64));
    set(&out, "pieceCommP", &JsValue::from_str(&hex(piece.commp())));
    set(&out, "aggregateCommP", &JsValue::from_str(&hex(aggregate.commp())));
    Ok(out)
}

/// `0x` and lower-case hex.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::from("0x"), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// A Merkle proof from JavaScript: an index (an integer below 2^53) and 32-byte nodes.
fn merkle_proof(
    index: f64,
    path: &[u8],
    which: &str,
) -> Result<estuary_piece::aggregate::MerkleProof, JsError> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if !(0.0..=MAX_SAFE).contains(&index) || index.fract() != 0.0 {
        return Err(JsError::new(&format!("the {which} proof's index {index} is not an integer")));
    }
    if !path.len().is_multiple_of(32) || path.len() > 63 * 32 {
        return Err(JsError::new(&format!(
            "the {which} proof's path is {} bytes: at most 63 nodes of 32 bytes",
            path.len()
        )));
    }
    let path = path.chunks_exact(32).map(|n| n.try_into().unwrap_or([0; 32])).collect();
    Ok(estuary_piece::aggregate::MerkleProof { index: index as u64, path })
}

fn cid_object(info: &CidInfo) -> Object {
    let multihash = Object::new();
    set(&multihash, "code", &JsValue::from_f64(info.hash_code as f64));
    set(&multihash, "digest", &Uint8Array::from(info.digest.as_slice()));

    let out = Object::new();
    set(&out, "version", &JsValue::from_f64(info.version as f64));
    set(&out, "codec", &JsValue::from_f64(info.codec as f64));
    let name = estuary_dag::cid::codec_name(info.codec).map_or(JsValue::NULL, JsValue::from_str);
    set(&out, "codecName", &name);
    set(&out, "multihash", &multihash);
    set(&out, "bytes", &Uint8Array::from(info.bytes.as_slice()));
    set(&out, "string", &JsValue::from_str(&info.text));
    out
}

fn set(target: &Object, key: &str, value: &JsValue) {
    // Defining a property on a fresh plain object cannot fail.
    let _ = Reflect::set(target, &JsValue::from_str(key), value);
}

#[wasm_bindgen(typescript_custom_section)]
const PIECE_INFO_TS: &str = r#"
/** A computed piece. Sizes are exact up to 2^53 bytes (pieces stop at 64 GiB). */
export interface PieceInfo {
  /** Piece CID v1 (`baga…`); its size travels separately. */
  pieceCidV1: string;
  /** Piece CID v2 (FRC-0069, `bafkzcib…`), which carries the sizes. */
  pieceCidV2: string;
  /** Padded piece size: a power of two of at least 128. */
  paddedSize: number;
  /** Payload bytes committed to. */
  payloadSize: number;
}
"#;

/// Streaming Filecoin piece commitment: `update` with chunks as they are read, then `finish`.
/// Memory stays constant whatever the size.
#[wasm_bindgen]
#[derive(Default)]
pub struct PieceHasher {
    inner: Option<CommP>,
}

#[wasm_bindgen]
impl PieceHasher {
    /// A hasher that has seen nothing.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Self {
        Self { inner: Some(CommP::new()) }
    }

    /// Adds bytes. Throws once `finish` has been called.
    pub fn update(&mut self, bytes: &[u8]) -> Result<(), JsError> {
        self.inner
            .as_mut()
            .ok_or_else(|| JsError::new("this PieceHasher has already finished"))?
            .update(bytes);
        Ok(())
    }

    /// Adds runs hashed elsewhere (by [`piece_run_roots`], typically in other workers): `roots` is
    /// their 32-byte roots, concatenated. Throws unless the bytes added so far end at a run
    /// boundary past the first run (see `atRunBoundary`).
    #[wasm_bindgen(js_name = pushRunRoots)]
    pub fn push_run_roots(&mut self, roots: &[u8]) -> Result<(), JsError> {
        let (nodes, rest) = roots.as_chunks::<32>();
        if !rest.is_empty() {
            return Err(JsError::new("run roots are 32 bytes each"));
        }
        self.inner
            .as_mut()
            .ok_or_else(|| JsError::new("this PieceHasher has already finished"))?
            .push_run_roots(nodes)
            .map_err(|e| JsError::new(&e.to_string()))
    }

    /// Whether the bytes added so far end at a run boundary past the first run, where
    /// `pushRunRoots` may be called.
    #[wasm_bindgen(getter, js_name = atRunBoundary)]
    pub fn at_run_boundary(&self) -> bool {
        self.inner.as_ref().is_some_and(CommP::at_run_boundary)
    }

    /// Bytes added so far.
    #[wasm_bindgen(getter, js_name = payloadSize)]
    pub fn payload_size(&self) -> f64 {
        self.inner.as_ref().map_or(0.0, |c| c.payload_size() as f64)
    }

    /// The piece (FRC-0069: fewer than 127 bytes, even none, are zero-padded to 127). Throws past
    /// 64 GiB padded, or after a first
    /// `finish`.
    #[wasm_bindgen(unchecked_return_type = "PieceInfo")]
    pub fn finish(&mut self) -> Result<Object, JsError> {
        self.finish_with_prefix(&[])
    }

    /// The piece of the bytes added with their first `prefix.length` bytes (at most 127) replaced
    /// by `prefix` — for a CAR whose header is patched at the end.
    #[wasm_bindgen(js_name = finishWithPrefix, unchecked_return_type = "PieceInfo")]
    pub fn finish_with_prefix(&mut self, prefix: &[u8]) -> Result<Object, JsError> {
        let commp = self
            .inner
            .take()
            .ok_or_else(|| JsError::new("this PieceHasher has already finished"))?;
        let info = commp.finish_with_prefix(prefix).map_err(|e| JsError::new(&e.to_string()))?;
        let out = Object::new();
        set(&out, "pieceCidV1", &JsValue::from_str(&PieceCid::v1(&info).to_string()));
        set(&out, "pieceCidV2", &JsValue::from_str(&PieceCid::v2(&info).to_string()));
        set(&out, "paddedSize", &JsValue::from_f64(info.padded_size as f64));
        set(&out, "payloadSize", &JsValue::from_f64(info.payload_size as f64));
        Ok(out)
    }
}

/// Payload bytes per run: the unit [`piece_run_roots`] hashes and `PieceHasher.pushRunRoots`
/// adds (260,096 bytes).
#[wasm_bindgen(js_name = pieceRunPayload)]
pub fn piece_run_payload() -> u32 {
    estuary_piece::RUN_PAYLOAD as u32
}

/// The roots of consecutive runs of payload (a whole number of `pieceRunPayload()` bytes), 32
/// bytes each, for a `PieceHasher` in another worker to add with `pushRunRoots`. Throws for a
/// length that is not a whole number of runs.
#[wasm_bindgen(js_name = pieceRunRoots)]
pub fn piece_run_roots(bytes: &[u8]) -> Result<Uint8Array, JsError> {
    let roots = estuary_piece::run_roots(bytes).map_err(|e| JsError::new(&e.to_string()))?;
    Ok(Uint8Array::from(roots.as_flattened()))
}

#[wasm_bindgen(typescript_custom_section)]
const IMPORTED_TS: &str = r#"
/** What `CarImporter.finish` returns. */
export interface ImportedCar {
  /** Root CID of the DAG (the file, or the directory). */
  root: string;
  /** Piece CID v2 of the CAR (when the importer computes the piece). */
  pieceCidV2?: string;
  /** Piece CID v1. */
  pieceCidV1?: string;
  /** Padded piece size. */
  paddedSize?: number;
  /** CAR bytes. */
  carSize: number;
  /** Distinct blocks. */
  blocks: number;
  /** File bytes imported. */
  fileBytes: number;
  /** The final CAR header: write it at offset 0 over the provisional one (same length). */
  header: Uint8Array;
}
"#;

/// The piece hasher of a [`CarImporter`]: in wasm, or left to the caller's worker pool.
enum Hasher {
    Own(Box<estuary_pack::CarImporter<CommP>>),
    External(Box<estuary_pack::CarImporter<estuary_pack::External>>),
}

/// Files and folders to a UnixFS DAG, a CAR (v1, blocks in Estuary's canonical order) and its
/// piece, in one pass, in constant memory: each step returns the CAR bytes to append to the
/// output as they are produced. The CAR starts with a provisional header of the final length;
/// `finish` returns the real one to write at offset 0, and the piece CID of the CAR with it —
/// byte for byte what `estuary add PATH --car F` writes natively, and what the oracle packs
/// from the same blocks. A binding over `estuary_pack::CarImporter`.
#[wasm_bindgen]
pub struct CarImporter {
    inner: Option<Hasher>,
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// Calls `$body` with `$imp` bound to the importer, whichever its hasher.
macro_rules! with_importer {
    ($self:expr, |$imp:ident| $body:expr) => {
        match $self
            .inner
            .as_mut()
            .ok_or_else(|| JsError::new("this importer has already finished"))?
        {
            Hasher::Own($imp) => $body,
            Hasher::External($imp) => $body,
        }
    };
}

#[wasm_bindgen]
#[allow(clippy::needless_pass_by_value)] // wasm-bindgen passes JavaScript strings as owned values
impl CarImporter {
    /// An importer with a named profile (`unixfs-v1-2025` when omitted). `paths`: a folder's
    /// files by their relative paths (`a/b.txt`), which must then come in `order()`; omitted,
    /// exactly one file. `piece`: compute the CAR's piece here (one thread); without it `finish`
    /// has no piece fields and the caller hashes the CAR bytes itself (e.g. with a
    /// `ParallelPieceHasher`, finishing with `header` as prefix).
    #[wasm_bindgen(constructor)]
    pub fn new(
        profile: Option<String>,
        paths: Option<Vec<String>>,
        piece: bool,
    ) -> Result<CarImporter, JsError> {
        let profile = match profile.as_deref() {
            None | Some("") => estuary_dag::Profile::default(),
            Some(name) => estuary_dag::Profile::from_name(name).map_err(js_err)?,
        };
        let opts = profile.options();
        let importer = match paths {
            None => estuary_dag::Importer::file(opts),
            Some(paths) => estuary_dag::Importer::folder(
                opts,
                paths.into_iter().map(|p| (p, estuary_dag::EntryKind::File)).collect(),
            ),
        }
        .map_err(js_err)?;
        let inner = if piece {
            Hasher::Own(Box::new(estuary_pack::CarImporter::new(importer, false, CommP::new())))
        } else {
            Hasher::External(Box::new(estuary_pack::CarImporter::new(
                importer,
                false,
                estuary_pack::External,
            )))
        };
        Ok(CarImporter { inner: Some(inner) })
    }

    /// The order in which a folder's files must be added: indices into the paths given (in
    /// each directory, its files in byte order of their names, then its subdirectories).
    pub fn order(&mut self) -> Result<Vec<u32>, JsError> {
        with_importer!(self, |imp| Ok(imp.importer().order().iter().map(|&i| i as u32).collect()))
    }

    /// Starts the next file in `order()`; returns its index among the paths (0 for one file).
    #[wasm_bindgen(js_name = beginFile)]
    pub fn begin_file(&mut self) -> Result<u32, JsError> {
        with_importer!(self, |imp| imp.begin_file().map(|i| i as u32).map_err(js_err))
    }

    /// Adds bytes of the current file; returns the CAR bytes produced (possibly none).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Uint8Array, JsError> {
        with_importer!(self, |imp| {
            imp.push(bytes).map_err(js_err)?;
            Ok(Uint8Array::from(imp.take_output().as_slice()))
        })
    }

    /// Blocks written to the CAR so far (each distinct block once).
    #[wasm_bindgen(getter)]
    pub fn blocks(&self) -> f64 {
        match &self.inner {
            Some(Hasher::Own(imp)) => imp.importer().stats().blocks as f64,
            Some(Hasher::External(imp)) => imp.importer().stats().blocks as f64,
            None => 0.0,
        }
    }

    /// The size of the leaves `pushLeaf` takes, or `undefined` when the profile's leaves are
    /// not raw (their CIDs then hash more than the file bytes, so only `push` works).
    #[wasm_bindgen(js_name = leafSize)]
    pub fn leaf_size(&self) -> Option<u32> {
        let opts = match &self.inner {
            Some(Hasher::Own(imp)) => imp.importer().options(),
            Some(Hasher::External(imp)) => imp.importer().options(),
            None => return None,
        };
        u32::try_from(opts.hashed_leaf_size()?).ok()
    }

    /// Adds one whole leaf of the current file by its length and SHA-256 `digest`, computed by
    /// the caller (WebCrypto: the CPU's SHA instructions, which WebAssembly lacks); the leaf's
    /// bytes never enter wasm. Returns `{ head, data, tail }`: write `head`, then the leaf's
    /// bytes if `data` (false when the same leaf is in the CAR already), then `tail` (the
    /// parents it completes). Every leaf but the file's last must be `leafSize()`
    /// bytes; `push` must not have been used for this file, and the importer must not compute
    /// the piece itself (it would need the bytes).
    #[wasm_bindgen(js_name = pushLeaf)]
    pub fn push_leaf(&mut self, length: u32, digest: &[u8]) -> Result<Object, JsError> {
        let digest: [u8; 32] =
            digest.try_into().map_err(|_| JsError::new("a SHA-256 digest is 32 bytes"))?;
        let parts = with_importer!(self, |imp| imp
            .push_hashed_leaf(length as usize, digest)
            .map_err(js_err)?);
        let out = Object::new();
        set(&out, "head", &Uint8Array::from(parts.head.as_slice()).into());
        set(&out, "data", &JsValue::from_bool(parts.data));
        set(&out, "tail", &Uint8Array::from(parts.tail.as_slice()).into());
        Ok(out)
    }

    /// Ends the current file; returns the CAR bytes produced.
    #[wasm_bindgen(js_name = endFile)]
    pub fn end_file(&mut self) -> Result<Uint8Array, JsError> {
        with_importer!(self, |imp| {
            imp.end_file().map_err(js_err)?;
            Ok(Uint8Array::from(imp.take_output().as_slice()))
        })
    }

    /// Adds an (empty) directory at `path`; directories of files are implied by their paths.
    #[wasm_bindgen(js_name = addDirectory)]
    pub fn add_directory(&mut self, path: String) -> Result<(), JsError> {
        with_importer!(self, |imp| imp.add_dir(&path).map_err(js_err))
    }

    /// Ends the import: returns the last CAR bytes to append (the directory nodes) as `tail`,
    /// and the result (`ImportedCar`).
    #[wasm_bindgen(unchecked_return_type = "ImportedCar & { tail: Uint8Array }")]
    pub fn finish(&mut self) -> Result<Object, JsError> {
        let inner =
            self.inner.take().ok_or_else(|| JsError::new("this importer has already finished"))?;
        let (file_bytes, done) = match inner {
            Hasher::Own(imp) => (imp.importer().stats().file_bytes, imp.finish(None)),
            Hasher::External(imp) => (imp.importer().stats().file_bytes, imp.finish(None)),
        };
        let (root, finished, tail) = done.map_err(|e| match e {
            estuary_pack::PackError::RootLength { .. } => JsError::new(
                "the root CID is not as long as the provisional header's: use a CIDv1 profile",
            ),
            other => js_err(other),
        })?;
        let out = Object::new();
        set(&out, "root", &JsValue::from_str(&root.cid.to_string()));
        if let Some(info) = finished.piece {
            set(&out, "pieceCidV2", &JsValue::from_str(&PieceCid::v2(&info).to_string()));
            set(&out, "pieceCidV1", &JsValue::from_str(&PieceCid::v1(&info).to_string()));
            set(&out, "paddedSize", &JsValue::from_f64(info.padded_size as f64));
        }
        set(&out, "carSize", &JsValue::from_f64(finished.car_bytes as f64));
        set(&out, "blocks", &JsValue::from_f64(finished.blocks as f64));
        set(&out, "fileBytes", &JsValue::from_f64(file_bytes as f64));
        set(&out, "header", &Uint8Array::from(finished.head.as_slice()));
        set(&out, "tail", &Uint8Array::from(tail.as_slice()));
        Ok(out)
    }
}

/// Repeated blocks a download's reader keeps for their later places in the file (a gateway's
/// CAR and a peer's depth-first blocks carry each block once).
pub(crate) const DOWNLOAD_CACHE: usize = 64 << 20;

/// A verified download: push the bytes of a trustless gateway's CAR (`?format=car`, depth-first)
/// as they arrive; get back the file's bytes, each block checked against its CID and its place
/// in the DAG under the root asked for. Anything else — a wrong block, a block out of place, a
/// CAR for another root, a stream cut short — throws.
#[wasm_bindgen]
pub struct VerifiedDownload {
    root: cid::Cid,
    decoder: estuary_dag::car::CarDecoder,
    reader: estuary_dag::dfs_file::DfsFileReader,
}

#[wasm_bindgen]
impl VerifiedDownload {
    /// A download of the file under `root` (CID text).
    #[wasm_bindgen(constructor)]
    pub fn new(root: &str) -> Result<VerifiedDownload, JsError> {
        let root =
            cid::Cid::try_from(root).map_err(|e| JsError::new(&format!("not a CID: {e}")))?;
        Ok(VerifiedDownload {
            root,
            decoder: estuary_dag::car::CarDecoder::new(estuary_dag::car::CarLimits::default()),
            reader: estuary_dag::dfs_file::DfsFileReader::new(root, DOWNLOAD_CACHE),
        })
    }

    /// Adds CAR bytes; returns the file bytes they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Uint8Array, JsError> {
        self.decoder.push(chunk);
        let mut out = Vec::new();
        while let Some(item) = self.decoder.next_item().map_err(js_err)? {
            match item {
                estuary_dag::car::CarItem::Header(header) => {
                    if !header.roots.contains(&self.root) {
                        return Err(JsError::new("the CAR is for another root"));
                    }
                }
                estuary_dag::car::CarItem::Block(block) => {
                    self.reader.push(&block.cid, &block.data, &mut out).map_err(js_err)?;
                }
            }
        }
        Ok(Uint8Array::from(out.as_slice()))
    }

    /// Checks the download is complete; returns the last file bytes, if any.
    pub fn finish(&mut self) -> Result<Uint8Array, JsError> {
        self.decoder.finish().map_err(js_err)?;
        let mut out = Vec::new();
        self.reader.finish(&mut out).map_err(js_err)?;
        Ok(Uint8Array::from(out.as_slice()))
    }

    /// File bytes verified so far.
    #[wasm_bindgen(getter)]
    pub fn size(&self) -> f64 {
        self.reader.emitted() as f64
    }
}

/// Reads the start of a CAR section: its varint length and, for a block section, the CID in
/// front of the data. `bytes` is the file from the section's first byte on (100 bytes hold
/// any varint and CID); `block` is false for the CARv1 header, which has no CID.
///
/// Returns `{ varint, length, cid?, cidLength? }`: the varint's bytes, the section's bytes after
/// it, and the binary CID with its length. The browser node indexes its stored CARs with it to
/// serve their blocks.
#[wasm_bindgen(js_name = carSection)]
pub fn car_section(bytes: &[u8], block: bool) -> Result<Object, JsError> {
    let (length, varint) = estuary_dag::varint::decode(bytes)
        .map_err(|e| JsError::new(&format!("not a CAR section: {e}")))?;
    let out = Object::new();
    set(&out, "varint", &JsValue::from(varint as f64));
    set(&out, "length", &JsValue::from(length as f64));
    if block {
        let mut rest = &bytes[varint..];
        let before = rest.len();
        let cid = cid::Cid::read_bytes(&mut rest)
            .map_err(|e| JsError::new(&format!("malformed CID in a CAR section: {e}")))?;
        let cid_length = before - rest.len();
        if cid_length as u64 > length {
            return Err(JsError::new("a CAR section is shorter than its CID"));
        }
        set(&out, "cid", &Uint8Array::from(cid.to_bytes().as_slice()).into());
        set(&out, "cidLength", &JsValue::from(cid_length as f64));
    }
    Ok(out)
}
