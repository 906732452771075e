//! Rust bindings for Estuary's contracts.
//!
//! Generated at compile time by alloy's `sol!` from the ABI and bytecode exported to
//! `contracts/artifacts/` (see `scripts/export-artifacts.mjs`); the test command rebuilds the
//! contracts and fails if that copy is stale, so these bindings always match the Solidity.

#![allow(missing_docs)] // generated items carry the contracts' NatSpec where they have any

use alloy::sol;

sol!(
    /// `EstuaryPinning`: `pinToEstuary(bytes cid)` and the `PinRequested` event.
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    EstuaryPinning,
    "../../contracts/artifacts/EstuaryPinning.json"
);

pub use EstuaryPinning::PinRequested;

/// Names of `CidLib.CidError` values, as the contract reports them in
/// `EstuaryPinningInvalidCid(reason)`.
pub fn cid_error_name(reason: u8) -> &'static str {
    match reason {
        0 => "None",
        1 => "Empty",
        2 => "TooLong",
        3 => "MalformedVarint",
        4 => "UnsupportedVersion",
        5 => "BadDigestLength",
        6 => "LengthMismatch",
        _ => "Unknown",
    }
}
