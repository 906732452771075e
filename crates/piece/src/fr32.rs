//! Fr32 padding: 127 bytes become 128, as four 254-bit field elements each stored in 32 bytes
//! with its two top bits clear.
//!
//! Bit for bit: the input is a little-endian bit stream; every 254 bits are followed by two zero
//! bits. In bytes, the four 31.75-byte groups shift by 0, 2, 4 and 6 bits.

/// Bytes of payload per quad.
pub const QUAD_PAYLOAD: usize = 127;
/// Bytes of Fr32 output per quad.
pub const QUAD: usize = 128;

/// Expands one 127-byte quad into 128 bytes.
pub fn pad_quad(input: &[u8; QUAD_PAYLOAD], out: &mut [u8; QUAD]) {
    out[..32].copy_from_slice(&input[..32]);
    out[31] &= 0x3f;
    for i in 31..63 {
        out[i + 1] = (input[i + 1] << 2) | (input[i] >> 6);
    }
    out[63] &= 0x3f;
    for i in 63..95 {
        out[i + 1] = (input[i + 1] << 4) | (input[i] >> 4);
    }
    out[95] &= 0x3f;
    for i in 95..126 {
        out[i + 1] = (input[i + 1] << 6) | (input[i] >> 2);
    }
    out[127] = input[126] >> 2;
}

/// The inverse of [`pad_quad`] (the two zero bits per 32 bytes are dropped).
pub fn unpad_quad(input: &[u8; QUAD], out: &mut [u8; QUAD_PAYLOAD]) {
    // Gather the 4 × 254 payload bits in order.
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut o = 0;
    for chunk in input.chunks_exact(32) {
        for (i, &byte) in chunk.iter().enumerate() {
            let keep = if i == 31 { 6 } else { 8 };
            acc |= u32::from(byte & ((1u16 << keep) - 1) as u8) << bits;
            bits += keep;
            while bits >= 8 && o < QUAD_PAYLOAD {
                out[o] = acc as u8;
                acc >>= 8;
                bits -= 8;
                o += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn top_bits_are_clear_and_ones_pack() {
        let mut out = [0u8; QUAD];
        pad_quad(&[0xff; QUAD_PAYLOAD], &mut out);
        for word in out.chunks_exact(32) {
            assert_eq!(word[31] & 0xc0, 0);
        }
        // 1016 one bits: every byte full but the four tops, which hold 6 bits.
        assert_eq!(out.iter().map(|b| b.count_ones()).sum::<u32>(), 1016);
    }

    proptest! {
        #[test]
        fn unpad_inverts_pad(input in proptest::collection::vec(any::<u8>(), QUAD_PAYLOAD)) {
            let input: [u8; QUAD_PAYLOAD] = input.try_into().unwrap();
            let mut padded = [0u8; QUAD];
            pad_quad(&input, &mut padded);
            let mut back = [0u8; QUAD_PAYLOAD];
            unpad_quad(&padded, &mut back);
            prop_assert_eq!(back, input);
        }
    }
}
