-- dim_campaigns: campaign codes with their window (first and last event time at which any item
-- carried the code) and whether they are current: last event at or after the as-of time (the
-- latest event time in the warehouse) minus current_campaign_days (metrics.md: Campaign).
-- Grain: one row per campaign code. Key: campaign_id.
-- Loaded: replace (a handful of rows): every batch can move the as-of time, so every row's
--         is_current is re-evaluated; windows widen by the batch's items.
-- Reads: fct_event_items (this load's rows, all when $load_id is null), dim_platforms (as-of time),
--        dim_campaigns (itself). Params: $load_id, $current_campaign_days.
-- columns:
--   campaign_id: the campaign code
--   first_event_ts: first event time at which any item carried the code (UTC)
--   last_event_ts: last such event time (UTC)
--   as_of_ts: the as-of time: the latest event time in the warehouse
--   is_current: last_event_ts is at or after as_of_ts minus current_campaign_days
WITH batch AS (
    SELECT code AS campaign_id, min(event_ts) AS first_event_ts, max(event_ts) AS last_event_ts
    FROM (SELECT unnest(campaign_codes) AS code, event_ts
          FROM fct_event_items
          WHERE $load_id IS NULL OR first_load_id >= $load_id)
    GROUP BY code
),
windows AS (
    SELECT coalesce(b.campaign_id, d.campaign_id)              AS campaign_id,
           least(b.first_event_ts, d.first_event_ts)          AS first_event_ts,
           greatest(b.last_event_ts, d.last_event_ts)         AS last_event_ts
    FROM batch AS b
    FULL OUTER JOIN dim_campaigns AS d USING (campaign_id)
),
as_of AS (
    SELECT max(last_event_ts) AS as_of_ts FROM dim_platforms
)
SELECT
    w.campaign_id,
    w.first_event_ts,
    w.last_event_ts,
    a.as_of_ts,
    date_diff('microsecond', w.last_event_ts, a.as_of_ts)
        <= CAST($current_campaign_days * 86400000000 AS BIGINT)                        AS is_current
FROM windows AS w, as_of AS a
