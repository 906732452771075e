-- The same as the SQLite migration 0022.
-- An order's replica target as its client last set it (`ReplicaTargetChanged`, kind 'target'):
-- the keeper raises the target of the operator's orders by one per replica being renewed ahead
-- of its term's end, and lowers it back once the ended replica's slot is reopened.
ALTER TABLE deal_events ADD COLUMN replicas BIGINT;
