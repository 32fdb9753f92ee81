-- stg_events: the staging table of every valid event, deduplicated by event_id over all history.
-- Grain: one row per item row (event_id, item_index); an event without items has one row with a
--        null item_index.
-- Key: (event_id, item_index).
-- Loaded: append-only, by process_staging.py from sql/staging/stg_events.sql.
-- The message as received: line line_number of archive/<source_file> (immutable).
CREATE TABLE IF NOT EXISTS stg_events (
    load_id             BIGINT    NOT NULL,  -- the etl_batches load that staged the row
    batch_id            VARCHAR   NOT NULL,  -- the batch file (name without .jsonl) that first carried the event
    source_file         VARCHAR   NOT NULL,
    line_number         INTEGER   NOT NULL,  -- 1-based line of that file
    message_id          VARCHAR   NOT NULL,  -- the SQS MessageId of that line
    sent_ts             TIMESTAMP,           -- SentTimestamp (UTC)
    receive_count       INTEGER,             -- ApproximateReceiveCount
    event_id            VARCHAR   NOT NULL,  -- sha256 of the event's identity (sqs-messages.md), 32 hex
    event_timestamp_us  BIGINT    NOT NULL,  -- event time, microseconds since the epoch
    event_ts            TIMESTAMP NOT NULL,  -- event time (UTC)
    user_id             VARCHAR   NOT NULL,
    event_name          VARCHAR   NOT NULL,
    platform            VARCHAR   NOT NULL,  -- upper-cased
    replay_timestamp    VARCHAR,             -- as sent; not part of the identity
    item_count          INTEGER   NOT NULL,  -- items in the event
    item_index          INTEGER,             -- 0-based position in the items array; null when none
    item_id             VARCHAR,
    item_name           VARCHAR,
    item_brand          VARCHAR,
    item_variant        VARCHAR,
    item_category       VARCHAR,
    item_category2      VARCHAR,
    item_category3      VARCHAR,
    item_category4      VARCHAR,
    item_category5      VARCHAR,
    price_in_usd        DECIMAL(18, 6),
    price               DECIMAL(18, 6),              -- local currency (MXN)
    quantity            BIGINT,
    item_revenue_in_usd DECIMAL(18, 6),
    item_revenue        DECIMAL(18, 6),
    item_refund_in_usd  DECIMAL(18, 6),
    item_refund         DECIMAL(18, 6),
    coupon              VARCHAR,
    affiliation         VARCHAR,
    location_id         VARCHAR,
    item_list_id        VARCHAR,             -- '(not set)' kept as the list '(not set)'
    item_list_name      VARCHAR,
    item_list_index     VARCHAR,             -- GA4's list position, as text
    promotion_id        VARCHAR,
    promotion_name      VARCHAR,
    creative_name       VARCHAR,
    creative_slot       VARCHAR,
    is_in_stock         BOOLEAN,
    discount_codes      VARCHAR[],           -- every code of the discounts param, trimmed, deduplicated
    campaign_codes      VARCHAR[],           -- the codes that are not experiment arms
    experiment_arms     STRUCT(code VARCHAR, experiment_id VARCHAR, variant VARCHAR)[],
    discount_value      DECIMAL(18, 6),              -- discountt param, local currency
    total_price         DECIMAL(18, 6),              -- totalPrice param, local currency
    installments        BIGINT,              -- number_of_installments param
    installment_price   DECIMAL(18, 6),
    item_params_extra   MAP(VARCHAR, VARCHAR), -- params without a column (_el, error_value, ...), raw
    extra_fields        JSON                 -- unknown body fields, raw
    -- no raw body (since schema version 4): archive/<source_file> keeps the line, every byte
);
