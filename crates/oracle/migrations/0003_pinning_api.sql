-- The IPFS Pinning Service API: who may call it, and the pins made through it.

-- Bearer tokens; only a SHA-256 of each secret is kept.
CREATE TABLE api_tokens (
    name           TEXT    PRIMARY KEY,   -- the account the token acts for; owns its pins
    secret_sha256  TEXT    NOT NULL UNIQUE,
    scope          TEXT    NOT NULL,      -- 'read' or 'write' (write includes read)
    created_ms     INTEGER NOT NULL
);

-- One row per live pin object. Its job is the pin_requests row with chain_id 0,
-- contract 'api' and request_id = requestid; deleting the pin cancels the job.
CREATE TABLE api_pins (
    requestid   TEXT    PRIMARY KEY,
    owner       TEXT    NOT NULL,
    cid         TEXT    NOT NULL,         -- as the client sent it
    name        TEXT,
    origins     TEXT    NOT NULL,         -- JSON array of multiaddrs
    meta        TEXT    NOT NULL,         -- JSON object of strings
    created_ms  INTEGER NOT NULL UNIQUE   -- unique, so pages by `before` never skip a pin
);
CREATE INDEX api_pins_owner_created ON api_pins (owner, created_ms);

-- Where a request's content may be fetched from first (JSON array of multiaddrs).
ALTER TABLE pin_requests ADD COLUMN origins TEXT;
