-- check silver_attribution_valid: an attributed impression is in the same session as the item
-- row it takes credit for, is of the same product, and lies inside [t - window, t].
-- Scope: the pairs load $load_id touched (all when null). Params: $load_id, $attribution_window_us.
WITH touched AS (
    SELECT DISTINCT user_id, platform FROM fct_events WHERE $load_id IS NULL OR first_load_id >= $load_id
)
SELECT a.event_id, a.item_index, a.impression_event_id, a.impression_item_index
FROM silver_event_list_attribution AS a
SEMI JOIN touched AS t ON a.user_id = t.user_id AND a.platform = t.platform
LEFT JOIN silver_list_impressions AS m
  ON m.event_id = a.impression_event_id AND m.item_index = a.impression_item_index
WHERE m.event_id IS NULL
   OR m.session_id <> a.session_id
   OR m.item_id <> a.item_id
   OR epoch_us(a.event_ts) - m.event_timestamp_us NOT BETWEEN 0 AND $attribution_window_us
