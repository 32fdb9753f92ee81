-- publish_journal: which Silver rows each load rewrote, for the incremental analytics publication.
-- Grain: one row per (journal_id): a table and one key (JSON of the key columns) a load rewrote;
--        key_json '*' means "the whole table" (a replace, or --rebuild).
-- Key: journal_id. Loaded: appended by nelo_etl.silver inside the batch's transaction (so it is
--      exactly as durable as the rows it names); rows up to the last publication are deleted by
--      nelo_etl.gold.publish afterwards.
CREATE SEQUENCE IF NOT EXISTS publish_journal_seq;
CREATE TABLE IF NOT EXISTS publish_journal (
    journal_id  BIGINT  NOT NULL DEFAULT nextval('publish_journal_seq'),
    load_id     BIGINT,               -- null for --rebuild
    table_name  VARCHAR NOT NULL,
    key_json    VARCHAR NOT NULL
);
