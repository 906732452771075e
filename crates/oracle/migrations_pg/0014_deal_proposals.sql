-- The same as the SQLite migration 0016.
-- Contract deals (deal-engine issue, the DealClient backend): each proposal the oracle makes of
-- a piece to a storage provider it chose. A row is written (`sending`) with the proposal's exact
-- terms before its transaction is sent, and bound to the contract's proposal id from the
-- receipt, from the contract's DealClientDuplicate answer to the same terms sent again, or from
-- the DealProposalOffered event (same piece, provider and start). The piece's order is a
-- deal_orders row (backend 'contract', contract = the DealClient, order_id assigned here); its
-- replicas are deal_events rows folded as PerpetualStorage slots are (domain::deal::fold):
-- offered = claimed (deadline: the start epoch), DealPublished = published, DealActivated =
-- activated, a proposal withdrawn unpublished = reopened.
CREATE TABLE deal_proposals (
    client        TEXT    NOT NULL,      -- the DealClient, 0x lower case
    order_id      BIGINT  NOT NULL,      -- deal_orders.order_id
    provider      BIGINT  NOT NULL,      -- miner actor id
    attempt       BIGINT  NOT NULL,      -- 0, 1, … per provider and order
    piece_v1      TEXT    NOT NULL,      -- hex, as the events carry it
    state         TEXT    NOT NULL,      -- sending | offered | lapsed | failed
    proposal_id   TEXT,                  -- 0x bytes32, once known
    start_epoch   BIGINT  NOT NULL,
    end_epoch     BIGINT  NOT NULL,
    price         TEXT    NOT NULL,      -- attoFIL per epoch (decimal)
    collateral    TEXT    NOT NULL,      -- the provider's collateral (decimal)
    sent_block    BIGINT  NOT NULL,      -- the head before it was first sent
    tx_hash       TEXT,
    error         TEXT,                  -- the last refusal or failed send
    created_ms    BIGINT  NOT NULL,
    updated_ms    BIGINT  NOT NULL,
    PRIMARY KEY (client, order_id, provider, attempt)
);
CREATE UNIQUE INDEX deal_proposals_id ON deal_proposals (client, proposal_id);
CREATE INDEX deal_proposals_state ON deal_proposals (client, state);
-- A contract order's id is assigned by the oracle: one per client.
CREATE UNIQUE INDEX deal_orders_contract_id ON deal_orders (contract, order_id)
    WHERE backend = 'contract';
-- The proposal an event of a contract deal is about.
ALTER TABLE deal_events ADD COLUMN proposal TEXT;
