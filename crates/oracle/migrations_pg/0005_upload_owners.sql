-- The same as the SQLite migration 0007 (hardening issue): every upload has an owner account, a length, an
-- expiry and, when finished, the root it imported. Pre-signed upload URLs, Sign-In with Ethereum
-- nonces and sessions, and per-account quota overrides live beside them.

CREATE TABLE uploads (
    id            TEXT    PRIMARY KEY,   -- 32 hex digits, the last part of /uploads/{id}
    account       TEXT    NOT NULL,      -- owner: a token's account, or a 0x address
    length        BIGINT NOT NULL,      -- Upload-Length
    metadata      TEXT,                  -- Upload-Metadata as sent (tus creation)
    request_key   TEXT,                  -- the on-chain request it is tied to (job key)
    grant_sha256  TEXT,                  -- the pre-signed URL it was made with
    state         TEXT    NOT NULL,      -- 'open' (receiving) | 'done' (imported)
    root          TEXT,                  -- the CAR's root, once imported
    blocks        BIGINT,
    created_ms    BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,      -- an open upload is deleted after this
    finished_ms   BIGINT
);
CREATE INDEX uploads_account ON uploads (account, state);
CREATE INDEX uploads_expiry ON uploads (state, expires_ms);
CREATE INDEX uploads_request ON uploads (request_key);

-- Pre-signed upload URLs: one upload of at most max_bytes, until expires_ms.
CREATE TABLE upload_grants (
    secret_sha256 TEXT    PRIMARY KEY,
    account       TEXT    NOT NULL,
    max_bytes     BIGINT NOT NULL,
    created_ms    BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    upload_id     TEXT                   -- set when the URL is used
);
CREATE INDEX upload_grants_expiry ON upload_grants (expires_ms);

-- Sign-In with Ethereum: nonces handed out and not yet used.
CREATE TABLE auth_nonces (
    nonce       TEXT    PRIMARY KEY,
    expires_ms  BIGINT NOT NULL
);
CREATE INDEX auth_nonces_expiry ON auth_nonces (expires_ms);

-- Sessions made by Sign-In with Ethereum: a scoped token bound to an address.
CREATE TABLE api_sessions (
    secret_sha256 TEXT    PRIMARY KEY,
    account       TEXT    NOT NULL,      -- the checksummed address
    scope         TEXT    NOT NULL,      -- 'upload'
    created_ms    BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL
);
CREATE INDEX api_sessions_expiry ON api_sessions (expires_ms);

-- Quotas set for one account (NULL: the oracle's default).
CREATE TABLE account_quotas (
    account      TEXT    PRIMARY KEY,
    max_bytes    BIGINT,
    max_uploads  BIGINT,
    max_pins     BIGINT
);

-- The request's size hint (`PinRequestOptions.sizeHint`) is `jobs.size_hint`, added by the
-- data-hardening migration: an upload tied to the request may be at most this large.
