-- The latest block the store knows (`Store::latest_known_block`, read whenever a fold meets a
-- direct deal: /deals, the scheduler, the probes) is the largest of three maxima. Indexed, each
-- is read from its index's end instead of a scan of every deal event and market read.
CREATE INDEX deal_events_block ON deal_events (block_number);
CREATE INDEX deal_market_epoch ON deal_market (epoch);
