-- The same as the SQLite migration 0015.
-- The client of an order, on its `created` event (0x lower case): since a DataDAO's orders are
-- followed too, an order the operator left `sending` is bound only to an order it created.
ALTER TABLE deal_events ADD COLUMN client TEXT;
