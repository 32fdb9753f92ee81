-- silver_event_list_attribution: last-touch list attribution (metrics.md): each view_item,
-- begin_checkout or purchase item row for product P at time t goes to the list of the latest
-- impression of P in the same session with time in [t - window, t]; ties to the greatest
-- event_id, then the lowest item_index.
-- Grain: one row per attributed item row (unattributed rows have none). Key: (event_id, item_index).
-- Loaded: overwrite_from, per (user_id, platform) that load $load_id added events to: the item
--         rows from the pair's earliest new event on (recomputed_from_ts). An earlier row keeps its
--         session and the impressions before it, so its attribution cannot change. All when null.
-- Reads: fct_event_items, silver_event_sessions, silver_list_impressions, fct_events.
-- Params: $load_id, $attribution_window_us.
-- columns:
--   event_id: the attributed event (view_item, begin_checkout or purchase)
--   item_index: the attributed item row of that event
--   event_name: that event's name
--   event_ts: that event's time (UTC)
--   user_id: the user
--   platform: the platform (upper-cased: IOS, ANDROID, WEB, ...)
--   session_id: the session of the event and of the impression
--   item_id: the product
--   quantity: units of the attributed item row
--   line_revenue: line revenue of the attributed item row (MXN)
--   line_revenue_usd: the same in US dollars
--   item_list_id: the list that gets the credit ((not set) for null and (not set))
--   impression_event_id: the view_item_list event of the credited impression
--   impression_item_index: the item's position in that impression event
--   impression_ts: the credited impression's time (UTC)
--   impression_campaign_codes: the campaign codes the credited impression item carried
--   recomputed_from_ts: load metadata: from which time the last load recomputed this user and platform's rows
WITH touched AS (
    SELECT user_id, platform, min(event_timestamp_us) AS since_us
    FROM fct_events
    WHERE $load_id IS NULL OR first_load_id >= $load_id
    GROUP BY user_id, platform
),
targets AS (
    SELECT i.event_id, i.item_index, i.event_name, i.event_ts, i.event_timestamp_us, i.user_id, i.platform,
           i.item_id, i.quantity, i.line_revenue, i.line_revenue_usd, s.session_id, t.since_us
    FROM fct_event_items AS i
    JOIN touched AS t ON i.user_id = t.user_id AND i.platform = t.platform AND i.event_timestamp_us >= t.since_us
    -- the touched pairs' sessions only: joining the whole table would cost the whole history
    JOIN (SELECT s.event_id, s.session_id FROM silver_event_sessions AS s
          SEMI JOIN touched AS t ON s.user_id = t.user_id AND s.platform = t.platform
                                AND s.event_timestamp_us >= t.since_us) AS s USING (event_id)
    WHERE i.event_name IN ('view_item', 'begin_checkout', 'purchase') AND i.item_id IS NOT NULL
),
impressions AS (
    -- what a target from since_us on can see: impressions from one window before it
    SELECT m.* FROM silver_list_impressions AS m
    SEMI JOIN touched AS t ON m.user_id = t.user_id AND m.platform = t.platform
                          AND m.event_timestamp_us >= t.since_us - $attribution_window_us
)
SELECT
    t.event_id,
    t.item_index,
    t.event_name,
    t.event_ts,
    t.user_id,
    t.platform,
    t.session_id,
    t.item_id,
    t.quantity,
    t.line_revenue,
    t.line_revenue_usd,
    m.item_list_id,
    m.event_id          AS impression_event_id,
    m.item_index        AS impression_item_index,
    m.event_ts          AS impression_ts,
    m.campaign_codes    AS impression_campaign_codes,
    make_timestamp(t.since_us) AS recomputed_from_ts      -- load metadata
FROM targets AS t
JOIN impressions AS m
  ON m.session_id = t.session_id
 AND m.item_id = t.item_id
 AND m.event_timestamp_us BETWEEN t.event_timestamp_us - $attribution_window_us AND t.event_timestamp_us
QUALIFY row_number() OVER (PARTITION BY t.event_id, t.item_index
                           ORDER BY m.event_timestamp_us DESC, m.event_id DESC, m.item_index ASC) = 1
