-- publish_gens: how far each of the two generations of the analytics file got
-- (nelo_etl.gold.gen_paths), so a generation made from another state of the warehouse is told
-- apart from a current one.
-- Grain: one row per generation. Key: gen_name (.analytics_a.duckdb or .analytics_b.duckdb).
-- Loaded: nelo_etl.gold.update_generation replaces a generation's row after the generation's own
--         commit, in the transaction that trims publish_journal to the older row's journal_id.
--         A generation whose (journal_id, token) is not here (a backup restored, a new or rebuilt
--         warehouse, a crash between the two commits) is built again.
CREATE TABLE IF NOT EXISTS publish_gens (
    gen_name           VARCHAR NOT NULL,
    journal_id         BIGINT  NOT NULL,   -- the generation holds every journal row up to this one
    publication_token  VARCHAR NOT NULL    -- a UUID made for that publication
);
