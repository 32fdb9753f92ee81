-- etl_batches: the ledger of every load of a batch file.
-- Grain: one row per load attempt that reached the database. Key: load_id.
-- Loaded: one insert per load, inside the load's transaction (a failed load is recorded
--         afterwards in a transaction of its own, with status 'failed').
-- received = loaded_events + duplicate_events + dead_lettered, always. Timestamps are UTC.
CREATE SEQUENCE IF NOT EXISTS etl_load_id_seq;
CREATE TABLE IF NOT EXISTS etl_batches (
    load_id           BIGINT  NOT NULL PRIMARY KEY,
    batch_id          VARCHAR NOT NULL,
    file_name         VARCHAR NOT NULL,
    sha256            VARCHAR NOT NULL,
    received          INTEGER NOT NULL,   -- messages (lines) in the file
    loaded_events     INTEGER NOT NULL,   -- messages whose event was new
    duplicate_events  INTEGER NOT NULL,   -- messages whose event was already loaded (or earlier in the file)
    dead_lettered     INTEGER NOT NULL,
    started_ts        TIMESTAMP NOT NULL,
    finished_ts       TIMESTAMP,
    status            VARCHAR NOT NULL,   -- committed | failed
    is_reprocess      BOOLEAN NOT NULL,
    error             VARCHAR,
    file_bytes        BIGINT              -- the size of the file loaded (a cut copy completed later is allowed)
);
-- added after the first release: warehouses made before it get the column here
ALTER TABLE etl_batches ADD COLUMN IF NOT EXISTS file_bytes BIGINT;
