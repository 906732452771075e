//! Estuary's browser node, compiled to WebAssembly and run in a Web Worker.
//!
//! This crate is a binding layer only: every rule lives in the format crates
//! (`estuary-dag`), and each function here converts JavaScript values in, calls them, and turns
//! their typed errors into real JavaScript `Error`s with clear messages.

use estuary_dag::CidInfo;
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
