//! Who may upload, pure: Sign-In with Ethereum (EIP-4361) messages checked, and the signature
//! that ties an upload to an on-chain pin request.
//!
//! **Sign-In with Ethereum** (<https://eips.ethereum.org/EIPS/eip-4361>): the oracle hands out
//! a nonce; the wallet signs a message naming this oracle's domain, the chain, the nonce and an
//! expiry; the oracle parses it (the `siwe` crate, Spruce's implementation of the EIP's ABNF),
//! checks every field against its own settings and the time, recovers the signer from the
//! EIP-191 signature of the exact text signed (alloy), and — once the store has consumed the
//! nonce — issues a session token bound to the address, with the `upload` scope only. Contract
//! wallets (EIP-1271) are not accepted: the signature must recover to the message's address.
//!
//! **An upload tied to a request**: the requester signs (EIP-191) the text of
//! [`request_upload_message`], naming the chain, the `EstuaryPinning` contract and the request
//! id; the oracle recovers the signer and compares it with the request's requester as read from
//! the chain.

use alloy::primitives::{Address, Signature, U256};

/// Longest Sign-In with Ethereum message read (bytes).
pub const MAX_SIWE_MESSAGE: usize = 8 * 1024;
/// How far a message's `Issued At` and `Not Before` may be ahead of this oracle's clock.
pub const CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// What a sign-in must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiwePolicy {
    /// The domains (RFC 3986 authorities, `host[:port]`) a message may name: the dapps'.
    pub domains: Vec<String>,
    /// The chain this oracle serves.
    pub chain_id: u64,
    /// The longest session given, whatever the message's `Expiration Time` says.
    pub max_session_ms: u64,
}

/// A sign-in that passed every check but the nonce (the store consumes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The signer.
    pub address: Address,
    /// The nonce the message names.
    pub nonce: String,
    /// When the session ends (unix ms).
    pub expires_ms: u64,
}

/// Why a sign-in or a request signature was refused (all 401 but the malformed, 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Not an EIP-4361 message.
    #[error("not a Sign-In with Ethereum message: {0}")]
    Malformed(String),
    /// The message names another site.
    #[error("the message is for {0:?}, not a site this oracle serves")]
    Domain(String),
    /// The message names another chain.
    #[error("the message is for chain {got}; this oracle serves chain {want}")]
    Chain {
        /// The message's.
        got: u64,
        /// This oracle's.
        want: u64,
    },
    /// The message's `Expiration Time` has passed.
    #[error("the message has expired")]
    Expired,
    /// The message's `Not Before` or `Issued At` is in the future.
    #[error("the message is not valid yet")]
    NotYetValid,
    /// The signature is not 65 bytes of hex, or recovers to no key.
    #[error("the signature is not a valid Ethereum signature")]
    BadSignature,
    /// The signature recovers to someone else.
    #[error("the signature is not {0}'s")]
    WrongSigner(Address),
    /// The nonce was not given out by this oracle, or was used, or expired.
    #[error("the nonce is unknown, used or expired: ask for a new one")]
    Nonce,
}

fn ms_of(t: &time::OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// Recovers the EIP-191 (`personal_sign`) signer of `message` from `signature` (65 bytes,
/// hex, `0x` optional).
pub fn recover_signer(message: &[u8], signature: &str) -> Result<Address, AuthError> {
    let hex = signature.trim().strip_prefix("0x").unwrap_or(signature.trim());
    let bytes = alloy::hex::decode(hex).map_err(|_| AuthError::BadSignature)?;
    if bytes.len() != 65 {
        return Err(AuthError::BadSignature);
    }
    let signature = Signature::try_from(bytes.as_slice()).map_err(|_| AuthError::BadSignature)?;
    signature.recover_address_from_msg(message).map_err(|_| AuthError::BadSignature)
}

/// Checks a signed Sign-In with Ethereum `message` at `now_ms` against `policy`.
pub fn check_siwe(
    message: &str,
    signature: &str,
    policy: &SiwePolicy,
    now_ms: u64,
) -> Result<SignedIn, AuthError> {
    if message.len() > MAX_SIWE_MESSAGE {
        return Err(AuthError::Malformed(format!("longer than {MAX_SIWE_MESSAGE} bytes")));
    }
    let parsed: siwe::Message =
        message.parse().map_err(|e: siwe::ParseError| AuthError::Malformed(e.to_string()))?;
    let domain = parsed.domain.as_str().to_ascii_lowercase();
    if !policy.domains.iter().any(|d| d.eq_ignore_ascii_case(&domain)) {
        return Err(AuthError::Domain(domain));
    }
    if parsed.chain_id != policy.chain_id {
        return Err(AuthError::Chain { got: parsed.chain_id, want: policy.chain_id });
    }
    let ahead = now_ms.saturating_add(CLOCK_SKEW_MS);
    if ms_of(parsed.issued_at.as_ref()) > ahead
        || parsed.not_before.as_ref().is_some_and(|t| ms_of(t.as_ref()) > ahead)
    {
        return Err(AuthError::NotYetValid);
    }
    let longest = now_ms.saturating_add(policy.max_session_ms);
    let expires_ms = match &parsed.expiration_time {
        Some(t) if ms_of(t.as_ref()) <= now_ms => return Err(AuthError::Expired),
        Some(t) => ms_of(t.as_ref()).min(longest),
        None => longest,
    };
    let address = Address::from(parsed.address);
    let signer = recover_signer(message.as_bytes(), signature)?;
    if signer != address {
        return Err(AuthError::WrongSigner(address));
    }
    Ok(SignedIn { address, nonce: parsed.nonce, expires_ms })
}

/// The text a requester signs to upload the content of request `request_id` made to
/// `contract` on `chain_id`.
pub fn request_upload_message(chain_id: u64, contract: Address, request_id: U256) -> String {
    format!(
        "Upload to Estuary the content of pin request {request_id}\nChain ID: {chain_id}\nContract: {}",
        contract.to_checksum(None)
    )
}

/// A nonce for a sign-in: 16 random bytes, hex (EIP-4361 asks for at least 8 alphanumerics).
pub fn new_nonce() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Whether `text` can be a nonce this oracle gave out (32 lowercase hex digits).
pub fn valid_nonce(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::signers::{SignerSync, local::PrivateKeySigner};

    const NOW: u64 = 1_765_000_000_000; // 2025-12-06

    fn iso(ms: u64) -> String {
        jiff::Timestamp::from_millisecond(i64::try_from(ms).unwrap()).unwrap().to_string()
    }

    fn message(signer: &PrivateKeySigner, domain: &str, chain: u64, extra: &str) -> String {
        format!(
            "{domain} wants you to sign in with your Ethereum account:\n{}\n\nUpload to Estuary.\n\nURI: http://{domain}\nVersion: 1\nChain ID: {chain}\nNonce: 0123456789abcdef0123456789abcdef\nIssued At: {}{extra}",
            signer.address().to_checksum(None),
            iso(NOW - 1000),
        )
    }

    fn sign(signer: &PrivateKeySigner, text: &str) -> String {
        format!("0x{}", hex::encode(signer.sign_message_sync(text.as_bytes()).unwrap().as_bytes()))
    }

    fn policy() -> SiwePolicy {
        SiwePolicy {
            domains: vec!["dapp.example:5173".into()],
            chain_id: 314,
            max_session_ms: 3_600_000,
        }
    }

    #[test]
    fn a_signed_message_gives_its_address() {
        let key = PrivateKeySigner::random();
        let exp = format!("\nExpiration Time: {}", iso(NOW + 600_000));
        let text = message(&key, "dapp.example:5173", 314, &exp);
        let ok = check_siwe(&text, &sign(&key, &text), &policy(), NOW).unwrap();
        assert_eq!(ok.address, key.address());
        assert_eq!(ok.nonce, "0123456789abcdef0123456789abcdef");
        assert_eq!(ok.expires_ms, NOW + 600_000);
        // No expiry in the message: the longest session.
        let text = message(&key, "dapp.example:5173", 314, "");
        let ok = check_siwe(&text, &sign(&key, &text), &policy(), NOW).unwrap();
        assert_eq!(ok.expires_ms, NOW + 3_600_000);
    }

    #[test]
    fn every_field_is_checked() {
        let key = PrivateKeySigner::random();
        let other = PrivateKeySigner::random();
        let check = |text: &str, sig: &str| check_siwe(text, sig, &policy(), NOW);
        let text = message(&key, "evil.example", 314, "");
        assert!(matches!(check(&text, &sign(&key, &text)), Err(AuthError::Domain(_))));
        let text = message(&key, "dapp.example:5173", 1, "");
        assert!(matches!(
            check(&text, &sign(&key, &text)),
            Err(AuthError::Chain { got: 1, want: 314 })
        ));
        let text = message(
            &key,
            "dapp.example:5173",
            314,
            &format!("\nExpiration Time: {}", iso(NOW - 1)),
        );
        assert_eq!(check(&text, &sign(&key, &text)), Err(AuthError::Expired));
        let text = message(
            &key,
            "dapp.example:5173",
            314,
            &format!("\nNot Before: {}", iso(NOW + CLOCK_SKEW_MS + 1000)),
        );
        assert_eq!(check(&text, &sign(&key, &text)), Err(AuthError::NotYetValid));
        let text = message(&key, "dapp.example:5173", 314, "");
        assert_eq!(check(&text, &sign(&other, &text)), Err(AuthError::WrongSigner(key.address())));
        // A signature over other text recovers to someone else.
        assert!(matches!(
            check(&text, &sign(&key, "something else")),
            Err(AuthError::WrongSigner(_))
        ));
        for bad in ["", "0x", "zz", &"00".repeat(65), &"11".repeat(64)] {
            assert!(check(&text, bad).is_err(), "{bad}");
        }
        for bad in ["", "hello", &"x".repeat(MAX_SIWE_MESSAGE + 1)] {
            assert!(matches!(check(bad, "0x00"), Err(AuthError::Malformed(_))));
        }
    }

    #[test]
    fn request_signatures_recover_the_requester() {
        let key = PrivateKeySigner::random();
        let text = request_upload_message(314, Address::repeat_byte(7), U256::from(12));
        assert!(text.contains("pin request 12") && text.contains("Chain ID: 314"));
        assert_eq!(recover_signer(text.as_bytes(), &sign(&key, &text)), Ok(key.address()));
    }

    #[test]
    fn nonces_have_their_shape() {
        assert!(valid_nonce(&new_nonce()));
        assert_ne!(new_nonce(), new_nonce());
        assert!(!valid_nonce("0123"));
    }
}
