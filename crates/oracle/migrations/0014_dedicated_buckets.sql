-- Dedicated buckets (deal-engine issue): a pin may ask for a bucket of its own (the Pinning
-- Service API's meta "estuary.bucket": "own"), and an account or a contract may have its pins in
-- buckets of their own (--dedicated-bucket-for). A bucket's group says whose it is; the shared
-- bucket has none, and each group has at most one open bucket.
ALTER TABLE jobs ADD COLUMN bucket_group TEXT;        -- 'pin:<job key>': this pin's own bucket
CREATE TABLE dedicated_requesters (
    requester     TEXT    NOT NULL PRIMARY KEY       -- as jobs.requester
);
ALTER TABLE buckets ADD COLUMN grp TEXT;              -- 'pin:<key>' | 'requester:<requester>'
DROP INDEX buckets_one_open;
CREATE UNIQUE INDEX buckets_one_open ON buckets ((COALESCE(grp, ''))) WHERE state = 'open';
