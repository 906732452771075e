//! The node's exports, run in headless Chromium by `wasm-bindgen-test-runner`.
#![cfg(target_arch = "wasm32")]
#![allow(missing_docs, clippy::unwrap_used)]

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn get(v: &JsValue, key: &str) -> JsValue {
    Reflect::get(v, &JsValue::from_str(key)).unwrap()
}

#[wasm_bindgen_test]
fn parse_cid_returns_its_parts() {
    let cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let info: JsValue = estuary_node::parse_cid(cid).unwrap().into();
    assert_eq!(get(&info, "version").as_f64(), Some(1.0));
    assert_eq!(get(&info, "codec").as_f64(), Some(85.0));
    assert_eq!(get(&info, "codecName").as_string().as_deref(), Some("raw"));
    assert_eq!(get(&get(&info, "multihash"), "code").as_f64(), Some(18.0));
    let digest: Uint8Array = get(&get(&info, "multihash"), "digest").dyn_into().unwrap();
    assert_eq!(digest.length(), 32);
    let bytes: Uint8Array = get(&info, "bytes").dyn_into().unwrap();
    assert_eq!(bytes.to_vec()[..4], [0x01, 0x55, 0x12, 0x20]);
    assert_eq!(get(&info, "string").as_string().as_deref(), Some(cid));
}

#[wasm_bindgen_test]
fn parse_cid_v0() {
    let info: JsValue =
        estuary_node::parse_cid("QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o").unwrap().into();
    assert_eq!(get(&info, "version").as_f64(), Some(0.0));
    assert_eq!(get(&info, "codecName").as_string().as_deref(), Some("dag-pb"));
}

#[wasm_bindgen_test]
fn parse_cid_throws_a_real_error() {
    let err: JsValue = estuary_node::parse_cid("not-a-cid").unwrap_err().into();
    let err: js_sys::Error = err.dyn_into().expect("a JS Error");
    let message = String::from(err.message());
    assert!(message.starts_with("not a valid CID"), "{message}");

    let err: JsValue = estuary_node::parse_cid("").unwrap_err().into();
    let err: js_sys::Error = err.dyn_into().unwrap();
    assert_eq!(String::from(err.message()), "CID is empty");
}

#[wasm_bindgen_test]
fn piece_hasher_matches_lotus_vectors() {
    // go-fil-commp-hashhash testdata: 127 bytes of 0xCC, and 1016 zero bytes.
    let mut h = estuary_node::PieceHasher::new();
    h.update(&[0xcc; 100]).unwrap();
    h.update(&[0xcc; 27]).unwrap();
    let info: JsValue = h.finish().unwrap().into();
    assert_eq!(
        get(&info, "pieceCidV1").as_string().as_deref(),
        Some("baga6ea4seaqmfldjtozgne6adk7eve2vdxte7vzlivae7nzsbrawobo546zkijq")
    );
    assert_eq!(
        get(&info, "pieceCidV2").as_string().as_deref(),
        Some("bafkzcibcaabmfldjtozgne6adk7eve2vdxte7vzlivae7nzsbrawobo546zkijq")
    );
    assert_eq!(get(&info, "paddedSize").as_f64(), Some(128.0));

    let mut h = estuary_node::PieceHasher::new();
    h.update(&[0u8; 1016]).unwrap();
    let info: JsValue = h.finish().unwrap().into();
    assert_eq!(
        get(&info, "pieceCidV1").as_string().as_deref(),
        Some("baga6ea4seaqb66wjlfkrbye6uqoemcyxmqylwmrm235uclwfpsyx3ge2imidoly")
    );
    assert_eq!(get(&info, "payloadSize").as_f64(), Some(1016.0));
}

#[wasm_bindgen_test]
fn piece_hasher_errors_are_real_errors() {
    let mut h = estuary_node::PieceHasher::new();
    h.update(&[1; 10]).unwrap();
    let err: js_sys::Error = JsValue::from(h.finish().unwrap_err()).dyn_into().unwrap();
    assert!(String::from(err.message()).contains("at least 65 bytes"));
    let again: js_sys::Error = JsValue::from(h.update(&[1]).unwrap_err()).dyn_into().unwrap();
    assert!(String::from(again.message()).contains("already finished"));
}
