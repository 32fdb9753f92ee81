-- warehouse_meta: who this warehouse is, so the analysts' copy can tell it from a restored,
-- recreated or rebuilt one.
-- Grain: one row (the warehouse). Key: warehouse_id (a UUID made when the schema is created).
-- Loaded: created with the schema; nelo_etl.gold.publish sets publication_token to the last
--         publication's UUID and adds 1 to publication_generation in the transaction that trims
--         publish_journal (publish_gens says which generation holds which token).
CREATE TABLE IF NOT EXISTS warehouse_meta (
    warehouse_id            VARCHAR   NOT NULL,
    created_ts              TIMESTAMP NOT NULL,
    publication_generation  BIGINT    NOT NULL,   -- publications made from this warehouse
    publication_token       VARCHAR               -- the last publication's token (null: none yet)
);
INSERT INTO warehouse_meta
SELECT uuid()::VARCHAR, now()::TIMESTAMP, 0, NULL
WHERE NOT EXISTS (SELECT 1 FROM warehouse_meta);
