-- dim_platforms: the table behind sql/silver/dim_platforms.sql (which reads itself to merge, so
-- its shape is declared here). Grain: one row per platform. Key: platform.
CREATE TABLE IF NOT EXISTS dim_platforms (
    platform        VARCHAR NOT NULL,
    first_event_ts  TIMESTAMP,
    last_event_ts   TIMESTAMP
);
