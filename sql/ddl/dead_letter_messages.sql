-- dead_letter_messages: every message that could not be loaded, with its reason code.
-- Grain: one row per rejected batch-file line. Key: (source_file, line_number).
-- Loaded: merge by key, by process_staging.py from sql/staging/dead_letter_messages.sql
--         (reprocessing a file rewrites its rows, never doubles them). A row whose line a later
--         load of the same batch name loaded (the whole file after a truncated copy) is resolved
--         (resolution 'superseded'): open dead letters are those with resolved_ts null.
CREATE TABLE IF NOT EXISTS dead_letter_messages (
    load_id        BIGINT  NOT NULL,      -- the latest etl_batches load of the file
    batch_id       VARCHAR NOT NULL,
    source_file    VARCHAR NOT NULL,
    source_sha256  VARCHAR NOT NULL,
    line_number    INTEGER NOT NULL,
    message_id     VARCHAR,               -- null when the line itself was unreadable
    reason         VARCHAR NOT NULL,      -- stable code: invalid_json, missing_field:user_id, ...
    detail         VARCHAR,
    raw_body       VARCHAR,               -- invalid UTF-8 shown as U+FFFD; the archive has the bytes
    resolved_ts          TIMESTAMP,       -- when a later load resolved it (UTC); null while open
    resolved_by_load_id  BIGINT,
    resolution           VARCHAR          -- superseded | replayed
);
-- added after the first release: warehouses made before it get the columns here
ALTER TABLE dead_letter_messages ADD COLUMN IF NOT EXISTS resolved_ts TIMESTAMP;
ALTER TABLE dead_letter_messages ADD COLUMN IF NOT EXISTS resolved_by_load_id BIGINT;
ALTER TABLE dead_letter_messages ADD COLUMN IF NOT EXISTS resolution VARCHAR;
