-- silver_list_impressions: list impressions (metrics.md): item rows of view_item_list events.
-- Grain: one row per impression item row. Key: (event_id, item_index).
-- Loaded: overwrite_from, per (user_id, platform) that load $load_id added events to: the
--         impressions from the pair's earliest new event on (recomputed_from_ts); a late event can
--         move only those into another session (see silver_event_sessions). All when null.
-- Reads: fct_event_items, silver_event_sessions, fct_events.
-- columns:
--   event_id: the view_item_list event
--   item_index: the item's position in that event
--   user_id: the user
--   platform: the platform (upper-cased: IOS, ANDROID, WEB, ...)
--   session_id: the session of the impression
--   event_ts: the impression's event time (UTC)
--   event_timestamp_us: event time in epoch microseconds, as sent
--   item_id: the product shown
--   item_list_id: the list that showed it; null and (not set) are kept as sent
--   item_list_name: the list's name as sent
--   campaign_codes: the campaign codes the impression item carried
--   experiment_arms: the experiment arms the impression item carried
--   recomputed_from_ts: load metadata: from which time the last load recomputed this user and platform's rows
WITH touched AS (
    SELECT user_id, platform, min(event_timestamp_us) AS since_us
    FROM fct_events
    WHERE $load_id IS NULL OR first_load_id >= $load_id
    GROUP BY user_id, platform
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
    i.experiment_arms,
    make_timestamp(t.since_us)             AS recomputed_from_ts      -- load metadata
FROM fct_event_items AS i
JOIN touched AS t ON i.user_id = t.user_id AND i.platform = t.platform AND i.event_timestamp_us >= t.since_us
-- the touched pairs' recent sessions only: joining the whole table would cost the whole history
JOIN (SELECT s.event_id, s.session_id FROM silver_event_sessions AS s
      SEMI JOIN touched AS t ON s.user_id = t.user_id AND s.platform = t.platform
                            AND s.event_timestamp_us >= t.since_us) AS s USING (event_id)
WHERE i.event_name = 'view_item_list'
