//! dag-pb: the protobuf nodes UnixFS is built from (PBNode, PBLink), encoded and decoded exactly
//! as the dag-pb specification says.
//!
//! Encoding writes links before data (the canonical order) and each link's fields as Hash,
//! Name, Tsize. Decoding is strict: only the fields the spec defines, with the wire types it
//! defines, each link's fields in order, links before data, a hash on every link.
//!
//! Written here rather than taken from a crate: the maintained Rust dag-pb codecs pull in a
//! generic IPLD data model and an allocation per field, while the importer needs to write
//! byte-exact nodes straight into one buffer and the decoder needs hard limits.

use ::cid::Cid;

use crate::varint;

/// Why bytes are not a dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PbError {
    /// A varint (tag or length) is malformed.
    #[error("malformed varint: {0}")]
    Varint(#[from] varint::VarintError),
    /// A length runs past the end of the node.
    #[error("a field's length runs past the end of the node")]
    Truncated,
    /// A field number or wire type the spec does not define.
    #[error("unexpected field {field} with wire type {wire_type}")]
    UnexpectedField {
        /// The field number.
        field: u64,
        /// The wire type.
        wire_type: u64,
    },
    /// Fields out of the spec's order, or repeated where only one is allowed.
    #[error("fields out of order: {0}")]
    Order(&'static str),
    /// A link without a hash.
    #[error("link has no hash")]
    MissingHash,
    /// A link's hash is not a CID.
    #[error("link hash is not a CID: {0}")]
    BadCid(String),
    /// A link's name is not UTF-8.
    #[error("link name is not UTF-8")]
    BadName,
}

/// A link from one dag-pb node to another block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PbLink {
    /// The target.
    pub hash: Cid,
    /// The name (a directory entry's name; empty for file chunks).
    pub name: Option<String>,
    /// Cumulative size of the target's DAG, as the writer claimed it.
    pub tsize: Option<u64>,
}

/// A dag-pb node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PbNode {
    /// Links, in the order stored.
    pub links: Vec<PbLink>,
    /// The opaque payload (UnixFS metadata, for UnixFS).
    pub data: Option<Vec<u8>>,
}

fn put_bytes(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push(tag);
    varint::encode(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

impl PbLink {
    fn encoded_len(&self, hash_len: usize) -> usize {
        let mut n = 1 + varint::encoded_len(hash_len as u64) + hash_len;
        if let Some(name) = &self.name {
            n += 1 + varint::encoded_len(name.len() as u64) + name.len();
        }
        if let Some(tsize) = self.tsize {
            n += 1 + varint::encoded_len(tsize);
        }
        n
    }
}

impl PbNode {
    /// Encodes the node: links (in their order), then data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(64 * self.links.len() + self.data.as_ref().map_or(0, Vec::len) + 8);
        self.encode_into(&mut out);
        out
    }

    /// Appends the node's encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        for link in &self.links {
            let hash = link.hash.to_bytes();
            out.push(0x12);
            varint::encode(link.encoded_len(hash.len()) as u64, out);
            put_bytes(0x0a, &hash, out);
            if let Some(name) = &link.name {
                put_bytes(0x12, name.as_bytes(), out);
            }
            if let Some(tsize) = link.tsize {
                out.push(0x18);
                varint::encode(tsize, out);
            }
        }
        if let Some(data) = &self.data {
            put_bytes(0x0a, data, out);
        }
    }

    /// Decodes a node, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Self, PbError> {
        let mut node = PbNode::default();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (field, wire_type, body, next) = field(rest)?;
            rest = next;
            match (field, wire_type) {
                (1, 2) => {
                    if node.data.is_some() {
                        return Err(PbError::Order("more than one Data field"));
                    }
                    node.data = Some(body.to_vec());
                }
                (2, 2) => {
                    if node.data.is_some() {
                        return Err(PbError::Order("Links after Data"));
                    }
                    node.links.push(decode_link(body)?);
                }
                (field, wire_type) => return Err(PbError::UnexpectedField { field, wire_type }),
            }
        }
        Ok(node)
    }
}

/// One protobuf field: (field number, wire type, body, the input after it). For a varint field,
/// `body` holds the varint's bytes.
type Field<'a> = (u64, u64, &'a [u8], &'a [u8]);

/// Splits one length-delimited or varint field off `input`.
fn field(input: &[u8]) -> Result<Field<'_>, PbError> {
    let (tag, n) = varint::decode(input)?;
    let input = &input[n..];
    let (field, wire_type) = (tag >> 3, tag & 7);
    match wire_type {
        0 => {
            let (_, n) = varint::decode(input)?;
            Ok((field, wire_type, &input[..n], &input[n..]))
        }
        2 => {
            let (len, n) = varint::decode(input)?;
            let input = &input[n..];
            let len = usize::try_from(len).map_err(|_| PbError::Truncated)?;
            if len > input.len() {
                return Err(PbError::Truncated);
            }
            Ok((field, wire_type, &input[..len], &input[len..]))
        }
        _ => Err(PbError::UnexpectedField { field, wire_type }),
    }
}

fn decode_link(bytes: &[u8]) -> Result<PbLink, PbError> {
    let mut hash = None;
    let mut name = None;
    let mut tsize = None;
    let mut last_field = 0;
    let mut rest = bytes;
    while !rest.is_empty() {
        let (field, wire_type, body, next) = field(rest)?;
        rest = next;
        if field <= last_field {
            return Err(PbError::Order("PBLink fields out of order or repeated"));
        }
        last_field = field;
        match (field, wire_type) {
            (1, 2) => {
                let mut reader = body;
                let cid =
                    Cid::read_bytes(&mut reader).map_err(|e| PbError::BadCid(e.to_string()))?;
                if !reader.is_empty() {
                    return Err(PbError::BadCid("trailing bytes after the CID".into()));
                }
                hash = Some(cid);
            }
            (2, 2) => name = Some(String::from_utf8(body.to_vec()).map_err(|_| PbError::BadName)?),
            (3, 0) => tsize = Some(varint::decode(body)?.0),
            (field, wire_type) => return Err(PbError::UnexpectedField { field, wire_type }),
        }
    }
    Ok(PbLink { hash: hash.ok_or(PbError::MissingHash)?, name, tsize })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid() -> Cid {
        "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".parse().unwrap()
    }

    #[test]
    fn encodes_links_then_data() {
        let node = PbNode {
            links: vec![PbLink { hash: cid(), name: Some(String::new()), tsize: Some(5) }],
            data: Some(vec![0x08, 0x02]),
        };
        let bytes = node.encode();
        let mut expected = vec![0x12, 0x2a, 0x0a, 0x24];
        expected.extend(cid().to_bytes());
        expected.extend([0x12, 0x00, 0x18, 0x05, 0x0a, 0x02, 0x08, 0x02]);
        assert_eq!(bytes, expected);
        assert_eq!(PbNode::decode(&bytes).unwrap(), node);
    }

    #[test]
    fn empty_node() {
        assert_eq!(PbNode::decode(&[]).unwrap(), PbNode::default());
        assert!(PbNode::default().encode().is_empty());
    }

    #[test]
    fn rejects_malformed() {
        // Data before Links.
        let mut bad = vec![0x0a, 0x00, 0x12, 0x26, 0x0a, 0x24];
        bad.extend(cid().to_bytes());
        assert_eq!(PbNode::decode(&bad), Err(PbError::Order("Links after Data")));
        // Unknown field 3.
        assert!(matches!(
            PbNode::decode(&[0x1a, 0x00]),
            Err(PbError::UnexpectedField { field: 3, .. })
        ));
        // Length past the end.
        assert_eq!(PbNode::decode(&[0x0a, 0x05, 0x01]), Err(PbError::Truncated));
        // Huge length prefix.
        assert_eq!(PbNode::decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), Err(PbError::Truncated));
        // Link without hash.
        assert_eq!(PbNode::decode(&[0x12, 0x02, 0x18, 0x01]), Err(PbError::MissingHash));
        // Link fields out of order (Tsize before Hash).
        let mut out_of_order = vec![0x12, 0x28, 0x18, 0x01, 0x0a, 0x24];
        out_of_order.extend(cid().to_bytes());
        assert!(matches!(PbNode::decode(&out_of_order), Err(PbError::Order(_))));
        // Two Data fields.
        assert!(matches!(PbNode::decode(&[0x0a, 0x00, 0x0a, 0x00]), Err(PbError::Order(_))));
        // Wire type 5 (fixed32).
        assert!(matches!(
            PbNode::decode(&[0x0d, 0, 0, 0, 0]),
            Err(PbError::UnexpectedField { .. })
        ));
    }
}
