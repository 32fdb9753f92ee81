-- dim_campaigns: the table behind sql/silver/dim_campaigns.sql (which reads itself to widen
-- windows). Grain: one row per campaign code. Key: campaign_id.
CREATE TABLE IF NOT EXISTS dim_campaigns (
    campaign_id      VARCHAR NOT NULL,
    first_event_ts   TIMESTAMP,
    last_event_ts    TIMESTAMP,
    as_of_ts         TIMESTAMP,
    is_current       BOOLEAN
);
