-- silver_event_sessions: the table behind sql/silver/silver_event_sessions.sql (which reads itself
-- for the session in force before a batch's earliest event). Grain: one row per event.
-- Key: event_id.
CREATE TABLE IF NOT EXISTS silver_event_sessions (
    event_id            VARCHAR NOT NULL,
    user_id             VARCHAR NOT NULL,
    platform            VARCHAR NOT NULL,
    event_name          VARCHAR,
    event_ts            TIMESTAMP NOT NULL,
    event_timestamp_us  BIGINT NOT NULL,
    session_id          VARCHAR NOT NULL,
    session_start_ts    TIMESTAMP NOT NULL,
    recomputed_from_ts  TIMESTAMP
);
