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
    // FRC-0069: nothing at all is a piece too (127 bytes of padding).
    let mut h = estuary_node::PieceHasher::new();
    let info: JsValue = h.finish().unwrap().into();
    assert_eq!(
        get(&info, "pieceCidV2").as_string().as_deref(),
        Some("bafkzcibcp4bdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy")
    );
    let err: js_sys::Error = JsValue::from(h.finish().unwrap_err()).dyn_into().unwrap();
    assert!(String::from(err.message()).contains("already finished"));
    let again: js_sys::Error = JsValue::from(h.update(&[1]).unwrap_err()).dyn_into().unwrap();
    assert!(String::from(again.message()).contains("already finished"));
}

/// A plain reference tree over `data` with the scalar node hash (no lanes, no runs).
fn reference_commp(data: &[u8]) -> [u8; 32] {
    use estuary_piece::commp::node;
    use estuary_piece::fr32::pad_quad;
    let quads = data.len().div_ceil(127);
    let mut payload = data.to_vec();
    payload.resize(quads.next_power_of_two() * 127, 0);
    let mut layer: Vec<[u8; 32]> = Vec::new();
    for quad in payload.chunks_exact(127) {
        let mut fr = [0u8; 128];
        pad_quad(quad.try_into().unwrap(), &mut fr);
        layer.extend(fr.chunks_exact(32).map(|c| <[u8; 32]>::try_from(c).unwrap()));
    }
    while layer.len() > 1 {
        layer = layer.chunks_exact(2).map(|p| node(&p[0], &p[1])).collect();
    }
    layer[0]
}

fn piece_cid_v1(commp: [u8; 32], payload: usize) -> String {
    let padded = (payload.div_ceil(127) * 128).next_power_of_two() as u64;
    let info =
        estuary_piece::PieceInfo { commp, padded_size: padded, payload_size: payload as u64 };
    estuary_piece::PieceCid::v1(&info).to_string()
}

/// The simd128 lanes and the runs give the plain tree's root, alone or split across "workers".
#[wasm_bindgen_test]
fn runs_and_lanes_match_a_plain_tree() {
    let run = estuary_node::piece_run_payload() as usize;
    let data: Vec<u8> =
        (0..3 * run as u32 + 1000).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let want = piece_cid_v1(reference_commp(&data), data.len());

    let mut h = estuary_node::PieceHasher::new();
    for part in data.chunks(65_536) {
        h.update(part).unwrap();
    }
    assert_eq!(get(&h.finish().unwrap().into(), "pieceCidV1").as_string().unwrap(), want);

    let mut h = estuary_node::PieceHasher::new();
    assert!(!h.at_run_boundary());
    h.update(&data[..run]).unwrap();
    assert!(h.at_run_boundary());
    let roots = estuary_node::piece_run_roots(&data[run..3 * run]).unwrap();
    assert_eq!(roots.length(), 64);
    h.push_run_roots(&roots.to_vec()).unwrap();
    h.update(&data[3 * run..]).unwrap();
    assert_eq!(get(&h.finish().unwrap().into(), "pieceCidV1").as_string().unwrap(), want);
}

#[wasm_bindgen_test]
fn run_misuse_throws() {
    let err: JsValue = estuary_node::piece_run_roots(&[0; 10]).unwrap_err().into();
    let err: js_sys::Error = err.dyn_into().unwrap();
    assert!(String::from(err.message()).contains("whole number"));
    let mut h = estuary_node::PieceHasher::new();
    let err: JsValue = h.push_run_roots(&[0; 32]).unwrap_err().into();
    let err: js_sys::Error = err.dyn_into().unwrap();
    assert!(String::from(err.message()).contains("run boundary"));
    let err: JsValue = h.push_run_roots(&[0; 31]).unwrap_err().into();
    assert!(err.dyn_into::<js_sys::Error>().is_ok());
}

/// The importer streams a file into CAR bytes whose header is patched at the end, and refuses
/// misuse with real errors.
#[wasm_bindgen_test]
fn car_importer_streams_and_refuses_misuse() {
    let mut importer = estuary_node::CarImporter::new(None, None, true).unwrap();
    let err: JsValue = importer.push(&[1, 2, 3]).unwrap_err().into();
    assert!(err.dyn_into::<js_sys::Error>().is_ok());
    let mut car = importer.begin_file().map(|_| Vec::new()).unwrap();
    let data: Vec<u8> =
        (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect();
    for part in data.chunks(100_000) {
        car.extend(importer.push(part).unwrap().to_vec());
    }
    car.extend(importer.end_file().unwrap().to_vec());
    let err: JsValue = importer.begin_file().unwrap_err().into();
    assert!(String::from(err.dyn_into::<js_sys::Error>().unwrap().message()).contains("one file"));
    let done: JsValue = importer.finish().unwrap().into();
    car.extend(Uint8Array::from(get(&done, "tail")).to_vec());
    let header = Uint8Array::from(get(&done, "header")).to_vec();
    car[..header.len()].copy_from_slice(&header);
    // The same bytes through the DAG engine and the piece engine directly.
    let (root, _) =
        estuary_dag::file::import_bytes(&data, estuary_dag::Profile::default().options()).unwrap();
    assert_eq!(get(&done, "root").as_string().unwrap(), root.cid.to_string());
    assert_eq!(get(&done, "carSize").as_f64().unwrap() as usize, car.len());
    let info = estuary_piece::commp::commp(&car).unwrap();
    assert_eq!(
        get(&done, "pieceCidV2").as_string().unwrap(),
        estuary_piece::PieceCid::v2(&info).to_string()
    );
    let (header, blocks) = estuary_dag::car::read_car(&car, Default::default()).unwrap();
    assert_eq!(header.roots, vec![root.cid]);
    assert_eq!(blocks.len() as f64, get(&done, "blocks").as_f64().unwrap());
    assert!(importer.finish().is_err());
}

#[wasm_bindgen_test]
fn car_section_finds_the_cid_and_the_data() {
    use estuary_node::car_section;
    // A CARv1 made by the importer: header, then one section per block.
    let block = b"served from this browser";
    let cid = estuary_dag::block::sha256_cid(cid::Version::V1, 0x55, block);
    let mut car = estuary_dag::car::header_v1(&[cid]);
    let header = car_section(&car, false).unwrap();
    let header_len =
        get(&header, "varint").as_f64().unwrap() + get(&header, "length").as_f64().unwrap();
    assert_eq!(header_len as usize, car.len());
    estuary_dag::car::encode_section(&estuary_dag::Block { cid, data: block.to_vec() }, &mut car);
    let section = car_section(&car[car.len() - block.len() - 37..], true).unwrap();
    assert_eq!(Uint8Array::from(get(&section, "cid")).to_vec(), cid.to_bytes());
    let cid_len = get(&section, "cidLength").as_f64().unwrap();
    assert_eq!(cid_len as usize, cid.to_bytes().len());
    assert_eq!(get(&section, "length").as_f64().unwrap() - cid_len, block.len() as f64);
    // Not a section: a clear error, no panic.
    assert!(car_section(&[0x80], true).is_err());
    assert!(car_section(&[0x05, 0x01, 0x55], true).is_err());
}

#[wasm_bindgen_test]
async fn p2p_node_refuses_what_it_cannot_dial() {
    use estuary_node::P2pNode;
    let none = js_sys::Function::new_no_args("return undefined");
    let refused = |r: Result<P2pNode, wasm_bindgen::JsError>| {
        String::from(
            JsValue::from(r.err().expect("an error"))
                .dyn_into::<js_sys::Error>()
                .unwrap()
                .message(),
        )
    };
    let msg = refused(P2pNode::start("not a multiaddr".into(), none.clone(), None).await);
    assert!(msg.contains("not a multiaddr"), "{msg}");
    let msg = refused(P2pNode::start("/ip4/127.0.0.1/tcp/9/ws".into(), none.clone(), None).await);
    assert!(msg.contains("/p2p/"), "{msg}");
    let peer = libp2p::PeerId::random();
    let msg = refused(
        P2pNode::start(
            format!("/ip4/127.0.0.1/tcp/9/ws/p2p/{peer}"),
            none.clone(),
            Some(vec![1, 2, 3]),
        )
        .await,
    );
    assert!(msg.contains("key"), "{msg}");
    // Nobody listens on port 9: the dial fails with a clear error.
    let msg =
        refused(P2pNode::start(format!("/ip4/127.0.0.1/tcp/9/ws/p2p/{peer}"), none, None).await);
    assert!(msg.contains("cannot connect to the oracle"), "{msg}");
}

#[wasm_bindgen_test]
fn leaves_by_digest_make_the_same_car_as_bytes() {
    use estuary_node::CarImporter;
    let data: Vec<u8> =
        (0..(5 << 19) + 1234u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut by_bytes = CarImporter::new(None, None, false).unwrap();
    by_bytes.begin_file().unwrap();
    let mut car_a = by_bytes.push(&data).unwrap().to_vec();
    car_a.extend(by_bytes.end_file().unwrap().to_vec());
    let root_a = get(&by_bytes.finish().unwrap(), "root");

    let mut by_digest = CarImporter::new(None, None, false).unwrap();
    let size = by_digest.leaf_size().unwrap() as usize;
    by_digest.begin_file().unwrap();
    let mut car_b = Vec::new();
    for leaf in data.chunks(size) {
        let digest = estuary_dag::block::sha256_multihash(leaf);
        let parts = by_digest.push_leaf(leaf.len() as u32, digest.digest()).unwrap();
        car_b.extend(Uint8Array::from(get(&parts, "head")).to_vec());
        if get(&parts, "data").as_bool().unwrap() {
            car_b.extend_from_slice(leaf);
        }
        car_b.extend(Uint8Array::from(get(&parts, "tail")).to_vec());
    }
    car_b.extend(by_digest.end_file().unwrap().to_vec());
    assert_eq!(get(&by_digest.finish().unwrap(), "root"), root_a);
    assert_eq!(car_b, car_a, "the same CAR bytes");
    // Misuse is a clear error: a wrong digest length, a leaf past the leaf size.
    let mut bad = CarImporter::new(None, None, false).unwrap();
    bad.begin_file().unwrap();
    assert!(bad.push_leaf(10, &[0; 31]).is_err());
    assert!(bad.push_leaf(size as u32 + 1, &[0; 32]).is_err());
    assert!(
        CarImporter::new(Some("unixfs-v0-2015".into()), None, false).unwrap().leaf_size().is_none()
    );
}
