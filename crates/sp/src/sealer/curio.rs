//! What a seal command needs to hand a `DealClient` proposal to Curio's `mk20` market as a
//! DDO deal (`docs/sealers/curio-ddo-deal.sh`), computed by the agent so that the command needs
//! no signing tool and never sees the agent's key.
//!
//! Each follows curio at `e0294b0` (2026-08) and the libraries it pins (go-address v1.2.0,
//! go-state-types v0.19, lotus v1.36.2):
//!
//! | value | what | source |
//! |---|---|---|
//! | [`f4_address`] | an Ethereum address as a Filecoin f4 (`f410f…`/`t410f…`) address: namespace 10 (the EAM), base32 of the address and a 4-byte blake2b checksum of the address bytes | go-address `address.go` (`NewDelegatedAddress`, `encode`, `Checksum`) |
//! | [`ulid`] | the deal's `identifier`: a ULID (Crockford base32 of 128 bits), here the first 16 bytes of the proposal id, so every run of the command names the same deal | curio `market/mk20/types.go` (`Identifier ulid.ULID`) |
//! | [`auth_header`] | `Authorization: CurioAuth delegated:<base64 address bytes>:<base64 signature>` | curio `market/mk20/auth.go` (`Auth`, `verifyFilSignature`) |
//!
//! The signature: the preimage is the address bytes, the upper-case method, the request's
//! escaped path (e.g. `/market/mk20/deal`) and the time truncated to the minute in RFC 3339
//! (`2026-12-07T23:56:00Z`), joined without separators; Curio verifies its SHA-256 digest with
//! lotus `sigs.Verify`, which for a delegated signature (lotus `lib/sigs/delegated`) recovers
//! the signer from `keccak256(digest)` and compares its f4 address. The signature is
//! `crypto.Signature.MarshalBinary`: the type byte 3 (`SigTypeDelegated`), then r, s and the
//! recovery id as 0 or 1 (go-crypto's `EcRecover` refuses 27 and 28). Curio accepts the minute
//! of the request and the one before and after, so a header is good for about a minute.

use std::time::SystemTime;

use alloy::{
    primitives::{Address, B256, keccak256},
    signers::{SignerSync, local::PrivateKeySigner},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use blake2::{
    Blake2bVar,
    digest::{Update, VariableOutput},
};
use estuary_contracts::delegated_address;
use sha2::{Digest, Sha256};

/// An Ethereum address as a Filecoin f4 address: `f410f…` on mainnet, `t410f…` elsewhere.
pub fn f4_address(address: Address, mainnet: bool) -> String {
    let mut checksum = [0u8; 4];
    let mut hasher = Blake2bVar::new(4).expect("4 is a valid blake2b output size");
    hasher.update(&delegated_address(address));
    hasher.finalize_variable(&mut checksum).expect("the output is 4 bytes");
    let mut payload = address.to_vec();
    payload.extend_from_slice(&checksum);
    let network = if mainnet { 'f' } else { 't' };
    format!("{network}410f{}", data_encoding::BASE32_NOPAD.encode(&payload).to_lowercase())
}

/// The ULID a proposal's Curio deal is named by: the first 16 bytes of its id.
pub fn ulid(proposal_id: B256) -> String {
    const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut first = [0u8; 16];
    first.copy_from_slice(&proposal_id[..16]);
    let n = u128::from_be_bytes(first);
    // 26 characters of 5 bits: 130 bits, the top two zero.
    (0..26)
        .map(|i| {
            let shift = 125 - 5 * i;
            char::from(CROCKFORD[((n >> shift) & 31) as usize])
        })
        .collect()
}

/// The time Curio signs over: `at` truncated to the minute, RFC 3339 in UTC (a time before
/// 1970 as 1970's first minute).
pub fn minute(at: SystemTime) -> String {
    use jiff::Timestamp;
    let secs = Timestamp::try_from(at).map_or(0, |t| t.as_second()).max(0);
    Timestamp::from_second(secs - secs % 60).unwrap_or(Timestamp::UNIX_EPOCH).to_string()
}

/// The digest Curio verifies for a request of `method` to `path` at `at` by `address`.
pub fn auth_digest(address: Address, method: &str, path: &str, at: SystemTime) -> [u8; 32] {
    let mut h = Sha256::new();
    sha2::Digest::update(&mut h, delegated_address(address));
    sha2::Digest::update(&mut h, method.to_uppercase().as_bytes());
    sha2::Digest::update(&mut h, if path.is_empty() { "/" } else { path }.as_bytes());
    sha2::Digest::update(&mut h, minute(at).as_bytes());
    h.finalize().into()
}

/// The `Authorization` header value for a request of `method` to `path` at `at`, signed by
/// `signer` as its f4 address.
pub fn auth_header(
    signer: &PrivateKeySigner,
    method: &str,
    path: &str,
    at: SystemTime,
) -> Result<String, alloy::signers::Error> {
    let digest = auth_digest(signer.address(), method, path, at);
    let sig = signer.sign_hash_sync(&keccak256(digest))?;
    let mut bytes = Vec::with_capacity(66);
    bytes.push(3); // SigTypeDelegated
    bytes.extend_from_slice(&sig.r().to_be_bytes::<32>());
    bytes.extend_from_slice(&sig.s().to_be_bytes::<32>());
    bytes.push(u8::from(sig.v()));
    Ok(format!(
        "CurioAuth delegated:{}:{}",
        STANDARD.encode(delegated_address(signer.address())),
        STANDARD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use alloy::primitives::{Signature, U256, address};

    use super::*;

    #[test]
    fn f4_addresses_match_the_filecoin_docs() {
        // The example of docs.filecoin.io, "Ethereum address manager" / address conversion.
        let eth = address!("d388ab098ed3e84c0d808776440b48f685198498");
        assert_eq!(f4_address(eth, true), "f410f2oekwcmo2pueydmaq53eic2i62crtbeyuzx2gmy");
        assert_eq!(f4_address(eth, false), "t410f2oekwcmo2pueydmaq53eic2i62crtbeyuzx2gmy");
    }

    #[test]
    fn ulids_are_crockford_base32_of_128_bits() {
        assert_eq!(ulid(B256::ZERO), "00000000000000000000000000");
        assert_eq!(ulid(B256::repeat_byte(0xff)), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        let mut id = B256::ZERO;
        id[15] = 32;
        assert_eq!(ulid(id), "00000000000000000000000010");
    }

    #[test]
    fn minutes_are_rfc3339_utc() {
        assert_eq!(minute(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let at = UNIX_EPOCH + Duration::from_secs(1_796_687_819); // 2026-12-07T23:56:59Z
        assert_eq!(minute(at), "2026-12-07T23:56:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_825_600); // 2000-02-29T12:00:00Z
        assert_eq!(minute(leap), "2000-02-29T12:00:00Z");
    }

    #[test]
    fn the_header_recovers_to_the_signer() {
        let signer = PrivateKeySigner::random();
        let at = UNIX_EPOCH + Duration::from_secs(1_796_687_819);
        let header = auth_header(&signer, "post", "/market/mk20/deal", at).unwrap();
        let rest = header.strip_prefix("CurioAuth delegated:").unwrap();
        let (addr, sig) = rest.split_once(':').unwrap();
        assert_eq!(STANDARD.decode(addr).unwrap(), delegated_address(signer.address()));
        let sig = STANDARD.decode(sig).unwrap();
        assert_eq!((sig.len(), sig[0]), (66, 3));
        assert!(sig[65] <= 1, "recovery id 0 or 1");
        let parsed = Signature::new(
            U256::from_be_slice(&sig[1..33]),
            U256::from_be_slice(&sig[33..65]),
            sig[65] == 1,
        );
        let digest = auth_digest(signer.address(), "POST", "/market/mk20/deal", at);
        let recovered = parsed.recover_address_from_prehash(&keccak256(digest)).unwrap();
        assert_eq!(recovered, signer.address());
        let later =
            auth_digest(signer.address(), "POST", "/market/mk20/deal", at + Duration::from_secs(1));
        assert_ne!(digest, later, "the next minute signs another digest");
    }
}
