-- The operator's unsettled report transactions (nonce, hash, what they report): nonces continue
-- past the ones still in the mempool after a restart, and a report already sent is waited for
-- rather than sent again.
CREATE TABLE report_txs (
    request_key TEXT    NOT NULL,         -- what it reports: pinned|failed|fulfill/<contract>/<id>
    tx_hash     TEXT    NOT NULL,
    operator    TEXT    NOT NULL,
    nonce       BIGINT NOT NULL,
    sent_ms     BIGINT NOT NULL,
    PRIMARY KEY (request_key, tx_hash)
);
CREATE INDEX report_txs_by_operator ON report_txs (operator, nonce);
