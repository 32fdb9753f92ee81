-- silver_list_impressions: list impressions (metrics.md): item rows of view_item_list events.
-- Grain: one row per impression item row. Key: (event_id, item_index).
-- Loaded: overwrite the (user_id, platform) partitions that load $load_id touched (all when null):
--         a late event can move an impression into another session.
-- Reads: fct_event_items, silver_event_sessions, fct_events.
WITH touched AS (
    SELECT DISTINCT user_id, platform FROM fct_events WHERE $load_id IS NULL OR first_load_id = $load_id
)
SELECT
    i.event_id,
    i.item_index,
    i.user_id,
    i.platform,
    s.session_id,
    i.event_ts,
    i.event_timestamp_us,
    i.item_id,
    coalesce(i.item_list_id, '(not set)')  AS item_list_id,   -- null and (not set) report as (not set)
    i.item_list_name,
    i.campaign_codes,
    i.experiment_arms
FROM fct_event_items AS i
SEMI JOIN touched AS t ON i.user_id = t.user_id AND i.platform = t.platform
-- the touched pairs' sessions only: joining the whole table would cost the whole history
JOIN (SELECT s.event_id, s.session_id FROM silver_event_sessions AS s
      SEMI JOIN touched AS t ON s.user_id = t.user_id AND s.platform = t.platform) AS s USING (event_id)
WHERE i.event_name = 'view_item_list'
