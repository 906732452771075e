//! Unsigned LEB128 varints, as protobuf and the multiformats use them.

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VarintError {
    /// The input ended inside the varint.
    #[error("varint is truncated")]
    Truncated,
    /// The varint does not fit in 64 bits.
    #[error("varint overflows 64 bits")]
    Overflow,
}

/// Appends `value` as a varint.
pub fn encode(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// How many bytes [`encode`] writes for `value`.
pub const fn encoded_len(value: u64) -> usize {
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Reads a varint from the start of `input`; returns it and the bytes it took.
///
/// Accepts up to 10 bytes (any `u64`); non-minimal encodings are accepted here, as protobuf
/// decoders do. Callers that need canonical bytes compare against a re-encoding.
pub fn decode(input: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate().take(10) {
        let low = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(VarintError::Overflow);
        }
        value |= low << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if input.len() >= 10 { Err(VarintError::Overflow) } else { Err(VarintError::Truncated) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        for (value, bytes) in [
            (0u64, &[0x00][..]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (u64::MAX, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ] {
            let mut out = Vec::new();
            encode(value, &mut out);
            assert_eq!(out, bytes);
            assert_eq!(encoded_len(value), bytes.len());
            assert_eq!(decode(bytes), Ok((value, bytes.len())));
        }
    }

    #[test]
    fn malformed() {
        assert_eq!(decode(&[]), Err(VarintError::Truncated));
        assert_eq!(decode(&[0x80]), Err(VarintError::Truncated));
        assert_eq!(decode(&[0xff; 10]), Err(VarintError::Overflow));
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            Err(VarintError::Overflow)
        );
        assert_eq!(decode(&[0xff; 20]), Err(VarintError::Overflow));
    }

    proptest! {
        #[test]
        fn round_trip(value: u64, tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut out = Vec::new();
            encode(value, &mut out);
            prop_assert_eq!(out.len(), encoded_len(value));
            out.extend(&tail);
            prop_assert_eq!(decode(&out), Ok((value, encoded_len(value))));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = decode(&bytes);
        }
    }
}
