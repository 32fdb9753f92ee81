-- fct_product_campaigns: the table behind sql/silver/fct_product_campaigns.sql (which reads itself
-- to add a batch's item rows to what a pair already holds, so its shape is declared here).
-- Grain: one row per (item_id, campaign_id). Key: (item_id, campaign_id).
CREATE TABLE IF NOT EXISTS fct_product_campaigns (
    item_id          VARCHAR NOT NULL,
    campaign_id      VARCHAR,
    first_seen_ts    TIMESTAMP,
    last_seen_ts     TIMESTAMP,
    units            BIGINT,
    gross_revenue    DECIMAL(38, 6),
    discount_value   DECIMAL(38, 6),
    net_revenue      DECIMAL(38, 6),
    purchased_lines  BIGINT
);
