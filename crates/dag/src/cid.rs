//! Content identifiers (CIDs) from untrusted text or bytes.
//!
//! Parsing itself is the `cid` crate's; this module adds what callers across Estuary need:
//! one error type that says what was wrong, a bound on input size, the rule that binary input is
//! exactly one CID (no trailing bytes), and a plain description ([`CidInfo`]) for the browser and
//! the HTTP API.

use ::cid::Cid;

/// Longest CID accepted, in bytes of its binary form: the same bound the `EstuaryPinning`
/// contract enforces. Real CIDs with 64-byte digests are under 80 bytes.
pub const MAX_CID_BYTES: usize = 128;

/// Longest CID text accepted. Base-2 text of [`MAX_CID_BYTES`] bytes is the longest
/// multibase form (8 characters a byte plus the prefix).
pub const MAX_CID_TEXT: usize = MAX_CID_BYTES * 8 + 1;

/// Why a string or byte sequence is not a CID Estuary accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidError {
    /// The input was empty (or only whitespace).
    #[error("CID is empty")]
    Empty,
    /// The input is longer than any CID Estuary accepts.
    #[error("CID is too long: {len} bytes, the limit is {max}")]
    TooLong {
        /// Length of the input.
        len: usize,
        /// The limit that applied.
        max: usize,
    },
    /// Binary input held a CID followed by more bytes.
    #[error("CID has {0} unexpected trailing bytes")]
    TrailingBytes(usize),
    /// The multihash digest is empty or longer than 64 bytes.
    #[error("multihash digest length {0} is outside 1..=64")]
    BadDigestLength(usize),
    /// The `cid` decoder refused the input; the message says why.
    #[error("not a valid CID: {0}")]
    Malformed(String),
    /// The bytes decode, but not in their one canonical form (an over-long or overflowing
    /// varint, say): two different byte strings must never name the same CID.
    #[error("CID is not canonically encoded")]
    NonCanonical,
}

/// A parsed CID, described in plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct CidInfo {
    /// 0 or 1.
    pub version: u64,
    /// Multicodec code of the content (0x70 dag-pb, 0x55 raw, 0x71 dag-cbor, ...).
    pub codec: u64,
    /// Multihash function code (0x12 for sha2-256, ...).
    pub hash_code: u64,
    /// The multihash digest.
    pub digest: Vec<u8>,
    /// The whole binary CID.
    pub bytes: Vec<u8>,
    /// Canonical text: base58btc for CIDv0, base32 (lower case) for CIDv1.
    pub text: String,
}

impl CidInfo {
    /// Describes an already parsed CID.
    pub fn from_cid(cid: &Cid) -> Self {
        let hash = cid.hash();
        Self {
            version: cid.version() as u64,
            codec: cid.codec(),
            hash_code: hash.code(),
            digest: hash.digest().to_vec(),
            bytes: cid.to_bytes(),
            text: cid.to_string(),
        }
    }
}

/// Common name of a multicodec content type, where Estuary knows it.
pub fn codec_name(code: u64) -> Option<&'static str> {
    Some(match code {
        0x55 => "raw",
        0x70 => "dag-pb",
        0x71 => "dag-cbor",
        0x0129 => "dag-json",
        0x0200 => "json",
        0x51 => "cbor",
        0x72 => "libp2p-key",
        0x85 => "dag-jose",
        _ => return None,
    })
}

/// Parses a CID from its text form (base58btc CIDv0, or any multibase CIDv1).
///
/// Surrounding whitespace is ignored.
///
/// ```
/// let info = estuary_dag::parse_cid("bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy")?;
/// assert_eq!((info.version, info.codec, info.hash_code), (1, 0x55, 0x12));
/// # Ok::<(), estuary_dag::CidError>(())
/// ```
pub fn parse_cid(text: &str) -> Result<CidInfo, CidError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(CidError::Empty);
    }
    if text.len() > MAX_CID_TEXT {
        return Err(CidError::TooLong { len: text.len(), max: MAX_CID_TEXT });
    }
    // Decode the text to bytes first, so text goes through the same strict binary checks.
    let bytes = if text.len() == 46 && text.starts_with("Qm") {
        ::cid::multibase::Base::Base58Btc.decode(text)
    } else {
        ::cid::multibase::decode(text).map(|(_, bytes)| bytes)
    }
    .map_err(|e| CidError::Malformed(e.to_string()))?;
    parse_cid_bytes(&bytes)
}

/// Parses a binary CID that must fill `bytes` exactly.
pub fn parse_cid_bytes(bytes: &[u8]) -> Result<CidInfo, CidError> {
    if bytes.is_empty() {
        return Err(CidError::Empty);
    }
    if bytes.len() > MAX_CID_BYTES {
        return Err(CidError::TooLong { len: bytes.len(), max: MAX_CID_BYTES });
    }
    let mut reader = bytes;
    let cid = Cid::read_bytes(&mut reader).map_err(|e| CidError::Malformed(e.to_string()))?;
    if !reader.is_empty() {
        return Err(CidError::TrailingBytes(reader.len()));
    }
    if cid.to_bytes() != bytes {
        return Err(CidError::NonCanonical);
    }
    checked(&cid)
}

fn checked(cid: &Cid) -> Result<CidInfo, CidError> {
    let digest_len = cid.hash().digest().len();
    if digest_len == 0 || digest_len > 64 {
        return Err(CidError::BadDigestLength(digest_len));
    }
    let info = CidInfo::from_cid(cid);
    if info.bytes.len() > MAX_CID_BYTES {
        return Err(CidError::TooLong { len: info.bytes.len(), max: MAX_CID_BYTES });
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const V1_RAW: &str = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    const V0: &str = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o";

    #[test]
    fn parses_v1_text() {
        let info = parse_cid(V1_RAW).unwrap();
        assert_eq!(info.version, 1);
        assert_eq!(info.codec, 0x55);
        assert_eq!(info.hash_code, 0x12);
        assert_eq!(info.digest.len(), 32);
        assert_eq!(info.text, V1_RAW);
        assert_eq!(&info.bytes[..4], &[0x01, 0x55, 0x12, 0x20]);
    }

    #[test]
    fn parses_v0_text_and_bytes() {
        let info = parse_cid(&format!("  {V0}\n")).unwrap();
        assert_eq!((info.version, info.codec), (0, 0x70));
        assert_eq!(info.text, V0);
        assert_eq!(parse_cid_bytes(&info.bytes).unwrap(), info);
    }

    #[test]
    fn upper_case_base32_is_canonicalised() {
        let upper = format!("B{}", V1_RAW[1..].to_uppercase());
        assert_eq!(parse_cid(&upper).unwrap().text, V1_RAW);
    }

    #[test]
    fn rejects_bad_input_with_typed_errors() {
        assert_eq!(parse_cid(""), Err(CidError::Empty));
        assert_eq!(parse_cid("   "), Err(CidError::Empty));
        assert!(matches!(parse_cid("not-a-cid"), Err(CidError::Malformed(_))));
        assert!(matches!(parse_cid(&V1_RAW[..20]), Err(CidError::Malformed(_))));
        assert!(matches!(parse_cid(&"b".repeat(5000)), Err(CidError::TooLong { .. })));
        assert_eq!(parse_cid_bytes(&[]), Err(CidError::Empty));
        let mut bytes = parse_cid(V1_RAW).unwrap().bytes;
        bytes.push(0);
        assert_eq!(parse_cid_bytes(&bytes), Err(CidError::TrailingBytes(1)));
        // identity multihash with an empty digest
        assert_eq!(parse_cid_bytes(&[0x01, 0x55, 0x00, 0x00]), Err(CidError::BadDigestLength(0)));
    }

    #[test]
    fn names_common_codecs() {
        assert_eq!(codec_name(0x70), Some("dag-pb"));
        assert_eq!(codec_name(0x55), Some("raw"));
        assert_eq!(codec_name(0xdead), None);
    }

    proptest! {
        /// Arbitrary bytes never panic, and whatever parses round-trips through text.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(info) = parse_cid_bytes(&bytes) {
                prop_assert_eq!(&info.bytes, &bytes);
                prop_assert_eq!(parse_cid(&info.text).unwrap(), info);
            }
        }

        /// Arbitrary text never panics.
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,120}") {
            let _ = parse_cid(&text);
        }

        /// Every well-formed CIDv1 with a 1..=64 byte digest parses back to its parts.
        #[test]
        fn well_formed_v1_parses(codec in 0u64..(1 << 40), code in 0u64..(1 << 40),
                                 digest in proptest::collection::vec(any::<u8>(), 1..=64)) {
            let hash = multihash::Multihash::<64>::wrap(code, &digest).unwrap();
            let cid = Cid::new_v1(codec, hash);
            let info = parse_cid_bytes(&cid.to_bytes()).unwrap();
            prop_assert_eq!((info.codec, info.hash_code, info.digest), (codec, code, digest));
        }
    }
}
