//! Rust bindings for Estuary's contracts.
//!
//! Generated at compile time by alloy's `sol!` from the ABI and bytecode exported to
//! `contracts/artifacts/` (see `scripts/export-artifacts.mjs`); the test command rebuilds the
//! contracts and fails if that copy is stale, so these bindings always match the Solidity.

#![allow(missing_docs)]
// generated items carry the contracts' NatSpec where they have any
// Generated from ABIs: events and calls with many parameters (e.g. `SlotActivated`) become
// functions with as many arguments.
#![allow(clippy::too_many_arguments)]

/// `EstuaryPinning`'s bindings (their own module: each ABI brings its own library types).
pub mod pinning {
    use alloy::sol;

    sol!(
        /// `EstuaryPinning`: pin requests (`pinToEstuary`, overloaded: `pinToEstuary_0(cid)` and
        /// `pinToEstuary_1(cid, options)`), the operators' reports (deals with their FRC-0058
        /// proofs: `reportDeal(DealReport)`, `PoDSI::InclusionProof`) and the requests' status.
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        EstuaryPinning,
        "../../contracts/artifacts/EstuaryPinning.json"
    );
}
pub use pinning::EstuaryPinning;

/// `PerpetualStorage`'s bindings (their own module: each ABI brings its own library types).
pub mod perpetual {
    use alloy::sol;

    sol!(
        /// `PerpetualStorage`: orders keeping N replicas of a piece, claims, deals and bounties.
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        PerpetualStorage,
        "../../contracts/artifacts/PerpetualStorage.json"
    );
}
pub use perpetual::PerpetualStorage;

/// `DealClient`'s bindings (their own module: each ABI brings its own library types).
pub mod deal_client {
    use alloy::sol;

    sol!(
        /// `DealClient`: FRC-0068 contract deals that Boost picks up.
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        DealClient,
        "../../contracts/artifacts/DealClient.json"
    );
}
pub use deal_client::DealClient;

/// `EstuaryOracle`'s bindings (their own module: each ABI brings its own library types).
pub mod oracle {
    use alloy::sol;

    sol!(
        /// `EstuaryOracle`: jobs other contracts request, with callbacks. A store job's result
        /// is `EstuaryResults::StoreResult` ABI-encoded (`decodeStoreResult` brings the type).
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        EstuaryOracle,
        "../../contracts/artifacts/EstuaryOracle.json"
    );
}
pub use oracle::EstuaryOracle;

/// `DataDAO`'s bindings (their own module: each ABI brings its own library types).
pub mod data_dao {
    use alloy::sol;

    sol!(
        /// `DataDAO`: members vote on CIDs to keep.
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        DataDAO,
        "../../contracts/artifacts/DataDAO.json"
    );
}
pub use data_dao::DataDAO;

/// `DealStateView`'s bindings (their own module: each ABI brings its own library types).
pub mod deal_state_view {
    use alloy::sol;

    sol!(
        /// `DealStateView`: what the storage market actor says of many deals (state, exit code,
        /// piece, provider, term, activation, sector), in one `eth_call` through `call_actor_id`;
        /// at most `MAX_DEALS` (200) per call.
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        DealStateView,
        "../../contracts/artifacts/DealStateView.json"
    );
}
pub use deal_state_view::DealStateView;

/// `ProviderRegistry`'s bindings (their own module: each ABI brings its own library types).
pub mod provider_registry {
    use alloy::sol;

    sol!(
        /// `ProviderRegistry`: the retrieval URL each miner's controlling address registered
        /// (`setUrl`), read by the oracle for providers the operator did not list with `url=`
        /// (`urlsOf`, at most `MAX_BATCH` a call).
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        ProviderRegistry,
        "../../contracts/artifacts/ProviderRegistry.json"
    );
}
pub use provider_registry::ProviderRegistry;

/// `MarketSimulator`'s bindings (their own module: each ABI brings its own library types).
pub mod market_simulator {
    use alloy::sol;

    sol!(
        /// `MarketSimulator`: the local chain's stand-in for the market actor (PublishStorageDeals,
        /// deal queries, escrow), following builtin-actors (see `docs/filecoin-model.md`).
        /// Never on a real network.
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        MarketSimulator,
        "../../contracts/artifacts/MarketSimulator.json"
    );
}
pub use market_simulator::MarketSimulator;

/// `MinerActorSimulator`'s bindings (their own module: each ABI brings its own library types).
pub mod miner_simulator {
    use alloy::sol;

    sol!(
        /// `MinerActorSimulator`: the local chain's stand-in for a miner actor, at the miner's
        /// masked ID address (`0xff` + zeros + its id): sectors activating and terminating deals,
        /// control addresses. Never on a real network.
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        MinerActorSimulator,
        "../../contracts/artifacts/MinerActorSimulator.json"
    );
}
pub use miner_simulator::MinerActorSimulator;

/// `DealCodec`'s bindings (their own module: each ABI brings its own library types).
pub mod deal_codec {
    use alloy::sol;

    sol!(
        /// `DealCodec`: the deal proposal CBOR and CID text codec `DealClient` and
        /// `PerpetualStorage` share.
        #[sol(rpc)]
        #[derive(Debug, PartialEq, Eq)]
        DealCodec,
        "../../contracts/artifacts/DealCodec.json"
    );
}
pub use deal_codec::DealCodec;

/// The masked ID address of actor `id` (`0xff`, 11 zero bytes, the id big-endian): where the
/// FEVM reaches a native actor such as a miner.
pub fn masked_id_address(id: u64) -> alloy::primitives::Address {
    let mut bytes = [0u8; 20];
    bytes[0] = 0xff;
    bytes[12..].copy_from_slice(&id.to_be_bytes());
    alloy::primitives::Address::from(bytes)
}

pub use EstuaryPinning::PinRequested;

/// `DealClient.NO_DEAL`: the deal ID it records for a deal made without the market (Curio's
/// DDO deals).
pub const NO_DEAL: u64 = u64::MAX;

/// The f4 address bytes of an EVM address (protocol 4, namespace 10 — the EAM — then the 20
/// bytes): how Filecoin's actors name an EVM account or contract, e.g. a notification's
/// receiver or a Curio client.
pub fn delegated_address(address: alloy::primitives::Address) -> Vec<u8> {
    let mut bytes = vec![0x04, 0x0a];
    bytes.extend_from_slice(address.as_slice());
    bytes
}

/// `DealClient.dealPolicy()`'s answer (`call_raw`), read leniently: a `DealClient` deployed
/// before `acceptDirect` answers five words, and took direct deals, so it reads as accepting
/// them.
pub fn decode_deal_policy(
    answer: &[u8],
) -> Result<DealClient::DealPolicy, alloy::sol_types::Error> {
    use alloy::sol_types::SolValue;
    let mut words = answer.to_vec();
    if words.len() == 5 * 32 {
        words.extend_from_slice(&[0u8; 31]);
        words.push(1);
    }
    // Every field is one static word, so the answer is the struct's own encoding.
    DealClient::DealPolicy::abi_decode(&words)
}

/// The market actor's masked ID address (f05), where the simulator lives on a local chain.
pub const MARKET_ACTOR: alloy::primitives::Address =
    alloy::primitives::address!("ff00000000000000000000000000000000000005");

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
        7 => "UnknownCodec",
        8 => "BadHash",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{B256, FixedBytes};
    use alloy::sol_types::SolValue;

    use crate::oracle::{EstuaryResults, PoDSI};

    /// `dealPolicy()` read from a `DealClient` of today (six words) and from one deployed
    /// before `acceptDirect` (five words: it took direct deals); anything else is refused.
    #[test]
    fn a_deal_policy_is_read_from_older_deal_clients_too() {
        use alloy::primitives::U256;
        let policy = crate::DealClient::DealPolicy {
            minDuration: 300,
            maxDuration: 3_680_640,
            minStartDelay: 10,
            maxEndDelay: 3_680_640,
            minProviderCollateralPerByte: U256::from(100_000u64),
            acceptDirect: false,
        };
        let words = policy.abi_encode();
        assert_eq!(words.len(), 6 * 32);
        assert_eq!(crate::decode_deal_policy(&words).unwrap(), policy);
        let older = crate::decode_deal_policy(&words[..5 * 32]).unwrap();
        assert_eq!(older, crate::DealClient::DealPolicy { acceptDirect: true, ..policy });
        assert!(crate::decode_deal_policy(&words[..4 * 32]).is_err());
        assert!(crate::decode_deal_policy(&[]).is_err());
    }

    /// A store job's result is `abi.encode(StoreResult)`: one dynamic tuple behind its offset,
    /// which `SolValue::abi_encode` produces and `EstuaryOracle.decodeStoreResult` reads (the
    /// Solidity side of the round trip: `EstuaryOracleStore.t.sol`).
    #[test]
    fn store_result_encodes_as_solidity_abi_encode() {
        let proof = |index: u64, n: u8| PoDSI::ProofData {
            index,
            path: (0..n).map(B256::repeat_byte).collect(),
        };
        let result = EstuaryResults::StoreResult {
            commP: FixedBytes([7; 32]),
            paddedSize: 1 << 20,
            deals: vec![EstuaryResults::StoredDeal {
                dealId: 42,
                provider: 1000,
                proof: PoDSI::InclusionProof { proofSubtree: proof(3, 2), proofIndex: proof(9, 3) },
            }],
        };
        let bytes = result.abi_encode();
        assert_eq!(bytes[..32], B256::with_last_byte(0x20)[..], "the tuple's offset comes first");
        assert_eq!(bytes[32..64], B256::repeat_byte(7)[..]);
        let back = EstuaryResults::StoreResult::abi_decode(&bytes).expect("decodes");
        assert_eq!(back, result);
    }
}
