//! The checks behind the fuzz targets (`crates/dag/fuzz`), shared with the regression test that
//! replays the committed corpus and every fixed crasher on stable Rust.
//!
//! Each check feeds arbitrary bytes to a decoder and asserts what must hold for any input: no
//! panic, and whatever decodes re-encodes to something that decodes to the same value.

use crate::{
    car::{CarDecoder, CarItem, CarLimits},
    cid::parse_cid_bytes,
    export,
    pb::PbNode,
    unixfs::UnixFsData,
    varint,
};

/// Varints: decoding never panics; a decoded value re-encodes minimally.
pub fn varint(data: &[u8]) {
    if let Ok((value, n)) = varint::decode(data) {
        let mut out = Vec::new();
        varint::encode(value, &mut out);
        assert!(out.len() <= n);
        assert_eq!(varint::decode(&out), Ok((value, out.len())));
    }
}

/// Binary CIDs: what parses round-trips exactly (binary input must be exactly one CID).
pub fn cid(data: &[u8]) {
    if let Ok(info) = parse_cid_bytes(data) {
        assert_eq!(info.bytes, data);
        assert_eq!(crate::cid::parse_cid(&info.text).as_ref().map(|i| &i.bytes), Ok(&info.bytes));
    }
}

/// dag-pb: decode → encode → decode is stable.
pub fn dag_pb(data: &[u8]) {
    if let Ok(node) = PbNode::decode(data) {
        let again = PbNode::decode(&node.encode()).expect("re-encoded node decodes");
        assert_eq!(again, node);
    }
}

/// UnixFS metadata: decode → encode → decode is stable.
pub fn unixfs(data: &[u8]) {
    if let Ok(meta) = UnixFsData::decode(data, 4096) {
        let mut meta = meta;
        // An empty data field is written as absent; compare in that normal form.
        if meta.data.as_ref().is_some_and(Vec::is_empty) {
            meta.data = None;
        }
        let again = UnixFsData::decode(&meta.encode(), 4096).expect("re-encoded metadata decodes");
        assert_eq!(again, meta);
    }
}

/// CAR: the first byte of the input picks how it is split into pushes; the items must not
/// depend on the split, and a UnixFS read from the first root must not panic.
pub fn car(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let limits = CarLimits { max_block: 1 << 16, max_header: 1 << 12, max_roots: 8 };
    let whole = decode_all(data, data.len().max(1), limits);
    let pieces = decode_all(data, usize::from(split) + 1, limits);
    assert_eq!(whole, pieces);
    let (items, _) = whole;
    let mut store = std::collections::HashMap::new();
    let mut root = None;
    for item in items {
        match item {
            CarItem::Header(h) => root = h.roots.first().copied(),
            CarItem::Block(b) => {
                store.insert(b.cid, b.data);
            }
        }
    }
    if let Some(root) = root {
        let mut total = 0usize;
        let limits = crate::walk::WalkLimits { max_visits: 1 << 16, ..Default::default() };
        let _ = export::read_file_within(root, 0, Some(1 << 20), 1 << 16, &store, |b| {
            total += b.len();
        });
        let _ = crate::walk::dfs(root, limits, &store, |_, _| {});
        let _ = crate::order::canonical(root, limits, &store, |_, _| {});
    }
}

type Decoded = (Vec<CarItem>, Option<String>);

fn decode_all(data: &[u8], step: usize, limits: CarLimits) -> Decoded {
    let mut decoder = CarDecoder::new(limits);
    let mut items = Vec::new();
    for piece in data.chunks(step) {
        decoder.push(piece);
        loop {
            match decoder.next_item() {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return (items, Some(e.to_string())),
            }
        }
    }
    let end = decoder.finish().err().map(|e| e.to_string());
    (items, end)
}

/// dag-cbor link extraction: never panics, and a link list is only returned for input that is
/// one complete CBOR item.
pub fn dag_cbor(data: &[u8]) {
    let cid = crate::block::sha256_cid(::cid::Version::V1, crate::block::DAG_CBOR, data);
    if let Ok(links) = crate::walk::links(&cid, data) {
        assert!(links.len() <= data.len());
    }
    // The one reader again, item by item: never panics, and reads no further than the input.
    let mut reader = crate::cbor::Reader::new(data);
    while !reader.is_empty() {
        if reader.skip(&mut |_| {}).is_err() {
            break;
        }
    }
}

/// Bitswap messages: decode → encode → decode is stable, and every block handed out hashes to
/// the CID it is given under.
pub fn bitswap(data: &[u8]) {
    if let Ok(msg) = crate::bitswap::Message::decode(data) {
        let again = crate::bitswap::Message::decode(&msg.encode()).expect("re-encoded message");
        assert_eq!(again, msg);
        for (cid, block) in msg.blocks() {
            assert_eq!(crate::bitswap::cid_for(&crate::bitswap::prefix_of(&cid), block), Some(cid));
        }
    }
}
