//! Bitswap messages (`/ipfs/bitswap/1.0.0`, `1.1.0` and `1.2.0`): the protobuf body that peers
//! exchange on their streams, each framed by a varint length.
//!
//! Hand-written like [`pb`](crate::pb) (no code generator, no I/O): decoding is lenient the way
//! protobuf must be (fields in any order, unknown fields skipped) but bounded — a frame over
//! [`MAX_MESSAGE`] is refused before it is read, and every length is checked. A block is only
//! ever accepted by the hash of its bytes: [`Message::blocks`] turns each payload back into the
//! CID its prefix names, hashing the data, so a peer cannot hand out bytes under another CID.

use cid::{Cid, Version};
use multihash::Multihash;

use crate::varint;

/// Largest message accepted or sent: 4 MiB, the limit of the Bitswap spec.
pub const MAX_MESSAGE: usize = 4 << 20;

/// Why bytes are not a Bitswap message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The input ends inside a field or a length.
    #[error("truncated message")]
    Truncated,
    /// A varint is malformed.
    #[error(transparent)]
    Varint(#[from] varint::VarintError),
    /// A field uses a wire type protobuf does not have (groups are not used by Bitswap).
    #[error("unsupported wire type {0}")]
    WireType(u64),
    /// A field has the wrong wire type for its number.
    #[error("field {field} has wire type {wire_type}")]
    UnexpectedField {
        /// Field number.
        field: u64,
        /// Wire type found.
        wire_type: u64,
    },
    /// A CID in a want list or presence is malformed.
    #[error("bad CID: {0}")]
    BadCid(String),
    /// A frame is larger than [`MAX_MESSAGE`].
    #[error("message of {0} bytes is over the 4 MiB limit")]
    TooLarge(u64),
}

/// What a want list entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantType {
    /// The block itself.
    Block,
    /// Only whether the peer has it.
    Have,
}

/// One entry of a want list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantEntry {
    /// The block wanted.
    pub cid: Cid,
    /// Higher first.
    pub priority: i32,
    /// Removes an earlier want for this CID.
    pub cancel: bool,
    /// Block or have.
    pub want_type: WantType,
    /// Ask for a "don't have" answer rather than silence.
    pub send_dont_have: bool,
}

impl WantEntry {
    /// A want for the block itself, with a "don't have" answer if the peer lacks it.
    pub fn block(cid: Cid) -> Self {
        Self { cid, priority: 1, cancel: false, want_type: WantType::Block, send_dont_have: true }
    }
}

/// Whether a peer has a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// It has it.
    Have,
    /// It does not.
    DontHave,
}

/// A block as sent in a 1.1+ message: the CID prefix (version, codec, hash function, digest
/// length) and the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// CID prefix.
    pub prefix: Vec<u8>,
    /// Block data.
    pub data: Vec<u8>,
}

/// One Bitswap message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Want list entries.
    pub wants: Vec<WantEntry>,
    /// Whether the want list replaces the previous one.
    pub full: bool,
    /// Blocks in the 1.0.0 form (CIDv0 dag-pb sha2-256 implied).
    pub raw_blocks: Vec<Vec<u8>>,
    /// Blocks with their CID prefixes (1.1.0+).
    pub payload: Vec<Payload>,
    /// Have / don't-have answers.
    pub presences: Vec<(Cid, Presence)>,
    /// Bytes the sender still has queued for us.
    pub pending_bytes: i32,
}

impl Message {
    /// Whether the message carries nothing.
    pub fn is_empty(&self) -> bool {
        self.wants.is_empty()
            && self.raw_blocks.is_empty()
            && self.payload.is_empty()
            && self.presences.is_empty()
    }

    /// A message carrying `data` as the block `cid` (1.1+ form).
    pub fn push_block(&mut self, cid: &Cid, data: Vec<u8>) {
        self.payload.push(Payload { prefix: prefix_of(cid), data });
    }

    /// The protobuf body (without the length frame).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.wants.is_empty() || self.full {
            let mut wantlist = Vec::new();
            for entry in &self.wants {
                let mut e = Vec::new();
                put_bytes(1, &entry.cid.to_bytes(), &mut e);
                put_varint(2, i64::from(entry.priority) as u64, &mut e);
                if entry.cancel {
                    put_varint(3, 1, &mut e);
                }
                if entry.want_type == WantType::Have {
                    put_varint(4, 1, &mut e);
                }
                if entry.send_dont_have {
                    put_varint(5, 1, &mut e);
                }
                put_bytes(1, &e, &mut wantlist);
            }
            if self.full {
                put_varint(2, 1, &mut wantlist);
            }
            put_bytes(1, &wantlist, &mut out);
        }
        for block in &self.raw_blocks {
            put_bytes(2, block, &mut out);
        }
        for p in &self.payload {
            let mut b = Vec::new();
            put_bytes(1, &p.prefix, &mut b);
            put_bytes(2, &p.data, &mut b);
            put_bytes(3, &b, &mut out);
        }
        for (cid, presence) in &self.presences {
            let mut b = Vec::new();
            put_bytes(1, &cid.to_bytes(), &mut b);
            if *presence == Presence::DontHave {
                put_varint(2, 1, &mut b);
            }
            put_bytes(4, &b, &mut out);
        }
        if self.pending_bytes != 0 {
            put_varint(5, i64::from(self.pending_bytes) as u64, &mut out);
        }
        out
    }

    /// The body framed by its varint length, as written on a stream.
    pub fn encode_framed(&self) -> Vec<u8> {
        let body = self.encode();
        let mut out = Vec::with_capacity(body.len() + 5);
        varint::encode(body.len() as u64, &mut out);
        out.extend_from_slice(&body);
        out
    }

    /// Decodes a protobuf body.
    pub fn decode(mut input: &[u8]) -> Result<Self, MessageError> {
        let mut msg = Self::default();
        while !input.is_empty() {
            let (field, value, rest) = field(input)?;
            input = rest;
            match (field, value) {
                (1, Value::Bytes(b)) => decode_wantlist(b, &mut msg)?,
                (2, Value::Bytes(b)) => msg.raw_blocks.push(b.to_vec()),
                (3, Value::Bytes(b)) => msg.payload.push(decode_payload(b)?),
                (4, Value::Bytes(b)) => msg.presences.push(decode_presence(b)?),
                (5, Value::Varint(v)) => msg.pending_bytes = v as i32,
                (1..=5, v) => return Err(v.unexpected(field)),
                _ => {}
            }
        }
        Ok(msg)
    }

    /// Every block the message carries, each with the CID its bytes hash to under its prefix
    /// (1.0.0 blocks as CIDv0). Blocks whose prefix is malformed or names a hash function this
    /// crate does not compute (anything but sha2-256 and identity) are left out: they cannot be
    /// verified, so they are worth nothing.
    pub fn blocks(&self) -> impl Iterator<Item = (Cid, &[u8])> {
        let v0 = self.raw_blocks.iter().map(|data| {
            let cid = Cid::new_v0(crate::block::sha256_multihash(data)).ok();
            (cid, data.as_slice())
        });
        let v1 = self.payload.iter().map(|p| (cid_for(&p.prefix, &p.data), p.data.as_slice()));
        v0.chain(v1).filter_map(|(cid, data)| cid.map(|c| (c, data)))
    }
}

/// Reads the length of a frame from the start of `input`: `Ok(None)` when more bytes are
/// needed, otherwise (body length, bytes of the length prefix).
pub fn frame_length(input: &[u8]) -> Result<Option<(usize, usize)>, MessageError> {
    match varint::decode(input) {
        Ok((len, n)) => {
            if len > MAX_MESSAGE as u64 {
                return Err(MessageError::TooLarge(len));
            }
            Ok(Some((len as usize, n)))
        }
        Err(varint::VarintError::Truncated) if input.len() < 10 => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The CID prefix of `cid`: version, codec, hash function and digest length as varints.
pub fn prefix_of(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    varint::encode(u64::from(cid.version()), &mut out);
    varint::encode(cid.codec(), &mut out);
    varint::encode(cid.hash().code(), &mut out);
    varint::encode(u64::from(cid.hash().size()), &mut out);
    out
}

/// The CID that `data` has under `prefix`, if the prefix is well formed and its hash function is
/// one this crate computes.
pub fn cid_for(prefix: &[u8], data: &[u8]) -> Option<Cid> {
    let mut rest = prefix;
    let mut next = || -> Option<u64> {
        let (v, n) = varint::decode(rest).ok()?;
        rest = &rest[n..];
        Some(v)
    };
    let (version, codec, code, len) = (next()?, next()?, next()?, next()?);
    if !rest.is_empty() {
        return None;
    }
    let hash = match code {
        0x12 if len == 32 => crate::block::sha256_multihash(data),
        0x00 if len == data.len() as u64 && data.len() <= 64 => Multihash::wrap(0, data).ok()?,
        _ => return None,
    };
    match Version::try_from(version).ok()? {
        Version::V0 if codec == 0x70 && code == 0x12 => Cid::new_v0(hash).ok(),
        Version::V0 => None,
        Version::V1 => Some(Cid::new_v1(codec, hash)),
    }
}

fn put_key(field: u64, wire_type: u64, out: &mut Vec<u8>) {
    varint::encode(field << 3 | wire_type, out);
}

fn put_varint(field: u64, value: u64, out: &mut Vec<u8>) {
    put_key(field, 0, out);
    varint::encode(value, out);
}

fn put_bytes(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    put_key(field, 2, out);
    varint::encode(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl Value<'_> {
    fn unexpected(&self, field: u64) -> MessageError {
        let wire_type = match self {
            Value::Varint(_) => 0,
            Value::Bytes(_) => 2,
            Value::Fixed => 1,
        };
        MessageError::UnexpectedField { field, wire_type }
    }
}

/// Splits one field of any supported wire type off `input`.
fn field(input: &[u8]) -> Result<(u64, Value<'_>, &[u8]), MessageError> {
    let (key, n) = protobuf_varint(input)?;
    let input = &input[n..];
    let field = key >> 3;
    match key & 7 {
        0 => {
            let (v, n) = protobuf_varint(input)?;
            Ok((field, Value::Varint(v), &input[n..]))
        }
        1 | 5 => {
            let width = if key & 7 == 1 { 8 } else { 4 };
            let rest = input.get(width..).ok_or(MessageError::Truncated)?;
            Ok((field, Value::Fixed, rest))
        }
        2 => {
            let (len, n) = protobuf_varint(input)?;
            let input = &input[n..];
            let len = usize::try_from(len).map_err(|_| MessageError::Truncated)?;
            if len > input.len() {
                return Err(MessageError::Truncated);
            }
            Ok((field, Value::Bytes(&input[..len]), &input[len..]))
        }
        other => Err(MessageError::WireType(other)),
    }
}

/// Protobuf varints may be non-minimal (negative int32 values take ten bytes), unlike the
/// multiformats varints of [`varint`].
fn protobuf_varint(input: &[u8]) -> Result<(u64, usize), MessageError> {
    let mut value = 0u64;
    for (i, byte) in input.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(MessageError::Truncated)
}

fn read_cid(bytes: &[u8]) -> Result<Cid, MessageError> {
    let mut reader = bytes;
    let cid = Cid::read_bytes(&mut reader).map_err(|e| MessageError::BadCid(e.to_string()))?;
    if !reader.is_empty() {
        return Err(MessageError::BadCid("trailing bytes after the CID".into()));
    }
    Ok(cid)
}

fn decode_wantlist(mut input: &[u8], msg: &mut Message) -> Result<(), MessageError> {
    while !input.is_empty() {
        let (field, value, rest) = field(input)?;
        input = rest;
        match (field, value) {
            (1, Value::Bytes(b)) => msg.wants.push(decode_entry(b)?),
            (2, Value::Varint(v)) => msg.full = v != 0,
            (1 | 2, v) => return Err(v.unexpected(field)),
            _ => {}
        }
    }
    Ok(())
}

fn decode_entry(mut input: &[u8]) -> Result<WantEntry, MessageError> {
    let mut cid = None;
    let mut entry = WantEntry {
        cid: Cid::default(),
        priority: 0,
        cancel: false,
        want_type: WantType::Block,
        send_dont_have: false,
    };
    while !input.is_empty() {
        let (field, value, rest) = field(input)?;
        input = rest;
        match (field, value) {
            (1, Value::Bytes(b)) => cid = Some(read_cid(b)?),
            (2, Value::Varint(v)) => entry.priority = v as i32,
            (3, Value::Varint(v)) => entry.cancel = v != 0,
            (4, Value::Varint(v)) => {
                entry.want_type = if v == 1 { WantType::Have } else { WantType::Block };
            }
            (5, Value::Varint(v)) => entry.send_dont_have = v != 0,
            (1..=5, v) => return Err(v.unexpected(field)),
            _ => {}
        }
    }
    entry.cid = cid.ok_or_else(|| MessageError::BadCid("want list entry without a CID".into()))?;
    Ok(entry)
}

fn decode_payload(mut input: &[u8]) -> Result<Payload, MessageError> {
    let mut payload = Payload { prefix: Vec::new(), data: Vec::new() };
    while !input.is_empty() {
        let (field, value, rest) = field(input)?;
        input = rest;
        match (field, value) {
            (1, Value::Bytes(b)) => payload.prefix = b.to_vec(),
            (2, Value::Bytes(b)) => payload.data = b.to_vec(),
            (1 | 2, v) => return Err(v.unexpected(field)),
            _ => {}
        }
    }
    Ok(payload)
}

fn decode_presence(mut input: &[u8]) -> Result<(Cid, Presence), MessageError> {
    let mut cid = None;
    let mut presence = Presence::Have;
    while !input.is_empty() {
        let (field, value, rest) = field(input)?;
        input = rest;
        match (field, value) {
            (1, Value::Bytes(b)) => cid = Some(read_cid(b)?),
            (2, Value::Varint(v)) => {
                presence = if v == 1 { Presence::DontHave } else { Presence::Have };
            }
            (1 | 2, v) => return Err(v.unexpected(field)),
            _ => {}
        }
    }
    let cid = cid.ok_or_else(|| MessageError::BadCid("presence without a CID".into()))?;
    Ok((cid, presence))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::sha256_cid;

    #[test]
    fn round_trips_every_field() {
        let a = sha256_cid(Version::V1, 0x55, b"a");
        let b = Cid::new_v0(crate::block::sha256_multihash(b"b")).unwrap();
        let mut msg = Message {
            wants: vec![
                WantEntry::block(a),
                WantEntry {
                    cid: b,
                    priority: -3,
                    cancel: true,
                    want_type: WantType::Have,
                    send_dont_have: false,
                },
            ],
            full: true,
            raw_blocks: vec![b"b".to_vec()],
            presences: vec![(a, Presence::DontHave), (b, Presence::Have)],
            pending_bytes: 7,
            ..Message::default()
        };
        msg.push_block(&a, b"a".to_vec());
        let decoded = Message::decode(&msg.encode()).unwrap();
        assert_eq!(decoded, msg);
        let blocks: Vec<_> = decoded.blocks().collect();
        assert_eq!(blocks, vec![(b, &b"b"[..]), (a, &b"a"[..])]);
    }

    #[test]
    fn a_block_gets_the_cid_its_bytes_hash_to() {
        let a = sha256_cid(Version::V1, 0x71, b"real");
        let mut msg = Message::default();
        msg.push_block(&a, b"forged".to_vec());
        let (cid, _) = msg.blocks().next().unwrap();
        assert_ne!(cid, a);
        assert_eq!(cid, sha256_cid(Version::V1, 0x71, b"forged"));
        // Unknown hash functions and malformed prefixes give no block at all.
        assert_eq!(cid_for(&[1, 0x55, 0x1e, 32], b"x"), None);
        assert_eq!(cid_for(&[1, 0x55, 0x12], b"x"), None);
        assert_eq!(cid_for(&[0, 0x55, 0x12, 32], b"x"), None);
    }

    #[test]
    fn unknown_fields_are_skipped_and_bad_input_is_refused() {
        let mut body = Message { pending_bytes: 1, ..Message::default() }.encode();
        body.extend_from_slice(&[0x31, 1, 2, 3, 4, 5, 6, 7, 8]); // field 6, fixed64
        body.extend_from_slice(&[0x3d, 1, 2, 3, 4]); // field 7, fixed32
        assert_eq!(Message::decode(&body).unwrap().pending_bytes, 1);
        assert_eq!(Message::decode(&[0x0a, 5, 1]), Err(MessageError::Truncated));
        assert_eq!(Message::decode(&[0x0b]), Err(MessageError::WireType(3)));
        assert!(matches!(Message::decode(&[0x12, 0]), Ok(m) if m.raw_blocks == vec![Vec::new()]));
        assert!(matches!(Message::decode(&[0x10, 1]), Err(MessageError::UnexpectedField { .. })));
        let bad_cid = [0x0a, 4, 0x0a, 2, 0x0a, 0];
        assert!(matches!(Message::decode(&bad_cid), Err(MessageError::BadCid(_))));
    }

    proptest::proptest! {
        #[test]
        fn any_message_round_trips(
            wants in proptest::collection::vec((proptest::collection::vec(0u8.., 0..40), -5i32..5, 0u8..8), 0..6),
            blocks in proptest::collection::vec(proptest::collection::vec(0u8.., 0..300), 0..4),
            pending in proptest::prelude::any::<i32>(),
            full in proptest::prelude::any::<bool>(),
        ) {
            let mut msg = Message { full, pending_bytes: pending, ..Message::default() };
            for (seed, priority, flags) in wants {
                let cid = sha256_cid(Version::V1, 0x55, &seed);
                msg.wants.push(WantEntry {
                    cid,
                    priority,
                    cancel: flags & 1 != 0,
                    want_type: if flags & 2 != 0 { WantType::Have } else { WantType::Block },
                    send_dont_have: flags & 4 != 0,
                });
                msg.presences.push((cid, if flags & 1 != 0 { Presence::Have } else { Presence::DontHave }));
            }
            for data in &blocks {
                msg.push_block(&sha256_cid(Version::V1, 0x55, data), data.clone());
            }
            let decoded = Message::decode(&msg.encode()).unwrap();
            proptest::prop_assert_eq!(&decoded, &msg);
            let got: Vec<Cid> = decoded.blocks().map(|(c, _)| c).collect();
            let want: Vec<Cid> = blocks.iter().map(|d| sha256_cid(Version::V1, 0x55, d)).collect();
            proptest::prop_assert_eq!(got, want);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(0u8.., 0..512)) {
            crate::fuzzing::bitswap(&data);
        }
    }

    #[test]
    fn frames_are_bounded() {
        let msg = Message { pending_bytes: 1, ..Message::default() };
        let framed = msg.encode_framed();
        assert_eq!(frame_length(&framed), Ok(Some((framed.len() - 1, 1))));
        assert_eq!(frame_length(&[0x80]), Ok(None));
        let mut huge = Vec::new();
        varint::encode(MAX_MESSAGE as u64 + 1, &mut huge);
        assert_eq!(frame_length(&huge), Err(MessageError::TooLarge(MAX_MESSAGE as u64 + 1)));
    }
}
