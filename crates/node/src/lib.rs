//! Estuary's browser node, compiled to WebAssembly and run in a Web Worker.
//!
//! This crate is a binding layer only: every rule lives in the format crates
//! (`estuary-dag`, `estuary-piece`), and each function here converts JavaScript values in, calls them, and turns
//! their typed errors into real JavaScript `Error`s with clear messages.

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
        let commp = self
            .inner
            .take()
            .ok_or_else(|| JsError::new("this PieceHasher has already finished"))?;
        let info = commp.finish().map_err(|e| JsError::new(&e.to_string()))?;
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
