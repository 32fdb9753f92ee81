-- check silver_attribution_valid: an attributed impression is in the same session as the item
-- row it takes credit for, is of the same product, and lies inside [t - window, t].
-- Scope: what load $load_id rewrote (all when null): per pair it touched, the item rows from its
-- earliest new event on. Params: $load_id, $attribution_window_us.
WITH touched AS (
    SELECT user_id, platform, min(event_timestamp_us) AS since_us
    FROM fct_events
    WHERE $load_id IS NULL OR first_load_id >= $load_id
    GROUP BY user_id, platform
),
scoped AS (
    SELECT a.* FROM silver_event_list_attribution AS a
    SEMI JOIN touched AS t ON a.user_id = t.user_id AND a.platform = t.platform
                          AND a.event_ts >= make_timestamp(t.since_us)
)
SELECT a.event_id, a.item_index, a.impression_event_id, a.impression_item_index
FROM scoped AS a
-- the impression's time is copied beside its id: matching it too lets the scan skip older row groups
LEFT JOIN silver_list_impressions AS m
  ON m.event_id = a.impression_event_id AND m.item_index = a.impression_item_index AND m.event_ts = a.impression_ts
WHERE m.event_id IS NULL
   OR m.session_id <> a.session_id
   OR m.item_id <> a.item_id
   OR epoch_us(a.event_ts) - m.event_timestamp_us NOT BETWEEN 0 AND $attribution_window_us
