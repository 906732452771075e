//! Every contract on a real anvil chain, deployed by the Foundry script as `estuary dev` does,
//! driven through the Rust bindings — with the simulated market actor answering the
//! `call_actor_id` precompile.

use alloy::{
    network::EthereumWallet,
    primitives::{Bytes, U256},
    providers::{Provider, ProviderBuilder},
};
use estuary_contracts::{
    DealClient, EstuaryPinning, MARKET_ACTOR, MarketSimulator, MinerActorSimulator,
    PerpetualStorage, masked_id_address,
};

use crate::support::{Chain, cid};

/// A v1 piece CID with digest `n` repeated.
fn piece(n: u8) -> Vec<u8> {
    let mut v = vec![0x01, 0x81, 0xe2, 0x03, 0x92, 0x20, 0x20];
    v.extend([n; 32]);
    v
}

#[tokio::test]
async fn every_contract_is_deployed_and_a_replica_is_paid_through_the_simulated_market() {
    let chain = Chain::start().await;
    for name in ["EstuaryPinning", "PerpetualStorage", "DealClient", "EstuaryOracle", "DataDAO"] {
        assert!(chain.deployment.contracts.contains_key(name), "{name} missing");
    }
    let client = ProviderBuilder::new()
        .wallet(EthereumWallet::from(chain.signer(1)))
        .connect_http(chain.anvil.endpoint_url());
    let sp = ProviderBuilder::new()
        .wallet(EthereumWallet::from(chain.signer(2)))
        .connect_http(chain.anvil.endpoint_url());
    assert!(!client.get_code_at(MARKET_ACTOR).await.unwrap().is_empty(), "simulator installed");

    // A client orders two replicas of a piece.
    let perpetual_address = chain.deployment.contracts["PerpetualStorage"];
    let perpetual = PerpetualStorage::new(perpetual_address, &client);
    let bounty = U256::from(10u64).pow(U256::from(18u64));
    let params = PerpetualStorage::OrderParams {
        pieceCid: Bytes::from(piece(7)),
        payloadCid: Bytes::from(cid(7)),
        paddedSize: 1 << 20,
        carSize: 1_000_000,
        replicas: 2,
        bounty: bounty.to(),
        term: 3600,
        verified: false,
        origins: vec!["https://origin.example/piece.car".into()],
    };
    mined!(perpetual.createOrder(params).value(bounty * U256::from(3u64)));

    // Miner f01001 (the deploy script's, controlled by anvil account 2) claims a slot: the
    // contract offers the slot's deal, as a contract client for Boost.
    let sp_perpetual = PerpetualStorage::new(perpetual_address, &sp);
    let market = MarketSimulator::new(MARKET_ACTOR, &sp);
    let collateral = market.minProviderCollateral(1 << 20).call().await.unwrap();
    // The bond rises with the bounty block by block: send some margin (the excess waits for
    // `withdraw`).
    let bond =
        U256::from(sp_perpetual.bondFor(U256::from(1u64)).call().await.unwrap()) * U256::from(2u64);
    let receipt = mined!(sp_perpetual.claim(U256::from(1u64), 1001, collateral).value(bond));
    let claimed = receipt.decoded_log::<PerpetualStorage::SlotClaimed>().expect("SlotClaimed");
    let proposal = sp_perpetual.getDealProposal(claimed.data.proposalId).call().await.unwrap();

    // Published as Boost publishes a contract deal (the market authenticates it with the
    // contract, read-only, and notifies it), then activated in a sector by the miner.
    let receipt = mined!(market.publishStorageDeals(vec![MarketSimulator::ClientDealProposal {
        proposal,
        clientSignature: Bytes::from_static(&[0xde, 0xad]),
    }]));
    let published = receipt.decoded_log::<MarketSimulator::DealPublished>().expect("published");
    let deal_id = published.data.id;
    let miner = MinerActorSimulator::new(masked_id_address(1001), &sp);
    mined!(miner.activateDeals(1, i64::MAX, vec![deal_id]));

    // The contract checks the deal with the (simulated) market actor and starts paying.
    let receipt = mined!(sp_perpetual.publish(U256::from(1u64), 1001));
    let activated = receipt.decoded_log::<PerpetualStorage::SlotActivated>().expect("activated");
    assert_eq!(activated.data.dealId, deal_id);
    let slot = sp_perpetual.getSlot(U256::from(1u64), 1001).call().await.unwrap();
    assert_eq!(slot.state, 3, "active");

    // Only a controlling address of a miner may claim for it.
    let err = sp_perpetual
        .claim(U256::from(1u64), 1002, collateral)
        .value(bond)
        .call()
        .await
        .unwrap_err();
    let decoded = err.as_decoded_interface_error::<PerpetualStorage::PerpetualStorageErrors>();
    assert!(
        matches!(
            decoded,
            Some(PerpetualStorage::PerpetualStorageErrors::PerpetualStorageNotController(_))
        ),
        "{err}"
    );

    // The operator (anvil's last account) may report on pins; anyone else may not.
    let pinning = EstuaryPinning::new(chain.deployment.pinning, &client);
    assert!(pinning.isOperator(*chain.anvil.addresses().last().unwrap()).call().await.unwrap());
    assert!(!pinning.isOperator(chain.address(1)).call().await.unwrap());

    // A contract deal proposal is announced as Boost expects.
    let operator = ProviderBuilder::new()
        .wallet(EthereumWallet::from(chain.signer(chain.anvil.addresses().len() - 1)))
        .connect_http(chain.anvil.endpoint_url());
    let deal_client = DealClient::new(chain.deployment.contracts["DealClient"], &operator);
    let policy = deal_client.dealPolicy().call().await.unwrap();
    let now = sp.get_block_number().await.unwrap() as i64;
    let start = now + policy.minStartDelay + 10;
    let request = DealClient::DealRequest {
        pieceCid: Bytes::from(piece(9)),
        pieceSize: 2048,
        verifiedDeal: false,
        label: "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy".into(),
        startEpoch: start,
        endEpoch: start + policy.minDuration,
        storagePricePerEpoch: U256::ZERO,
        providerCollateral: U256::from(2048u64) * policy.minProviderCollateralPerByte,
        clientCollateral: U256::ZERO,
        provider: 0,
        replicas: 1,
        locationRef: "http://127.0.0.1/car".into(),
        carSize: 2000,
        skipIpniAnnounce: false,
        removeUnsealedCopy: false,
    };
    let receipt = mined!(deal_client.makeDealProposal(request));
    let created =
        receipt.decoded_log::<DealClient::DealProposalCreate>().expect("DealProposalCreate");
    assert_eq!(created.data.size, 2048);
    let proposal = deal_client.getDealProposal(created.data.id).call().await.unwrap();
    assert_eq!(proposal[0], 0x8b, "a CBOR array of 11");
}
