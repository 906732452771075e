-- Each request is also a job: where it is in its lifecycle, how often it failed, who holds it.
ALTER TABLE pin_requests ADD COLUMN attempts     INTEGER NOT NULL DEFAULT 0;
ALTER TABLE pin_requests ADD COLUMN lease_until  INTEGER NOT NULL DEFAULT 0;  -- unix ms; a worker holds the job until then
ALTER TABLE pin_requests ADD COLUMN dag_blocks   INTEGER;
ALTER TABLE pin_requests ADD COLUMN dag_bytes    INTEGER;
ALTER TABLE pin_requests ADD COLUMN piece_cid    TEXT;                         -- v2 text
ALTER TABLE pin_requests ADD COLUMN padded_size  INTEGER;
ALTER TABLE pin_requests ADD COLUMN car_size     INTEGER;
ALTER TABLE pin_requests ADD COLUMN report_tx    TEXT;
ALTER TABLE pin_requests ADD COLUMN updated_at   INTEGER NOT NULL DEFAULT 0;  -- unix ms
CREATE INDEX pin_requests_work ON pin_requests (status, lease_until);
CREATE INDEX pin_requests_piece ON pin_requests (piece_cid);
