-- dead_letter_resolutions: dead letters that a replay (process_staging.py --replay-dead-letters)
-- loaded after a parser fix.
-- Grain: one row per resolved dead letter. Key: (source_sha256, line_number), the dead letter's key.
-- Loaded: by nelo_etl.replay, inside the replay batch's load transaction (INSERT OR REPLACE by key);
--         reads nothing. A dead letter without a row here is unresolved.
CREATE TABLE IF NOT EXISTS dead_letter_resolutions (
    source_sha256  VARCHAR   NOT NULL,
    line_number    INTEGER   NOT NULL,
    load_id        BIGINT    NOT NULL,   -- the etl_batches load of the replay file
    resolved_ts    TIMESTAMP NOT NULL,   -- UTC
    PRIMARY KEY (source_sha256, line_number)
);
