-- silver_session_features: what each session did, and its cart (metrics.md: session features).
-- Grain: one row per session. Key: session_id.
-- Loaded: overwrite_from, per (user_id, platform) that load $load_id added events to: the sessions
--         from the one in force at the pair's earliest new event on (as silver_user_sessions: a
--         session's features depend on its own events only). All when $load_id is null.
-- Reads: silver_user_sessions, silver_event_sessions, fct_event_items, fct_events.
-- Params: $load_id, $high_value_cart_usd.
-- columns:
--   session_id: the session: sha256 of user_id, platform and the start in epoch microseconds, 32 hex
--   user_id: the user
--   platform: the platform (upper-cased: IOS, ANDROID, WEB, ...)
--   session_start_ts: the session's first event time (UTC)
--   session_end_ts: the session's last event time (UTC)
--   session_date: UTC date of the session start
--   events_in_session: events in the session
--   has_list_view: a view_item_list in the session
--   has_product_view: a view_item in the session
--   has_checkout: a begin_checkout in the session
--   has_purchase: a purchase in the session
--   is_bounce: exactly one event
--   is_abandoned_checkout: a checkout and no purchase
--   cart_value: sum of price * quantity of the last checkout's items (MXN); null without a checkout
--   cart_value_usd: the same with price_in_usd
--   cart_products: sorted distinct item_ids of the last checkout
--   last_checkout_ts: time of the session's last begin_checkout (UTC); null without one
--   is_high_value_abandon: abandoned with cart_value_usd above high_value_cart_usd
--   recomputed_from_ts: load metadata: from which time the last load recomputed this user and platform's rows
WITH touched AS (
    SELECT user_id, platform, min(event_timestamp_us) AS since_us
    FROM fct_events
    WHERE $load_id IS NULL OR first_load_id >= $load_id
    GROUP BY user_id, platform
),
since AS (
    SELECT s.user_id, s.platform, min(s.session_start_ts) AS since_ts
    FROM silver_event_sessions AS s
    JOIN touched AS t ON s.user_id = t.user_id AND s.platform = t.platform AND s.event_timestamp_us >= t.since_us
    GROUP BY s.user_id, s.platform
),
sessions AS (
    SELECT s.*, c.since_ts FROM silver_user_sessions AS s
    JOIN since AS c ON s.user_id = c.user_id AND s.platform = c.platform AND s.session_start_ts >= c.since_ts
),
session_events AS (
    SELECT e.* FROM silver_event_sessions AS e
    SEMI JOIN since AS c ON e.user_id = c.user_id AND e.platform = c.platform AND e.session_start_ts >= c.since_ts
),
flags AS (
    SELECT session_id,
           bool_or(event_name = 'view_item_list')  AS has_list_view,
           bool_or(event_name = 'view_item')       AS has_product_view,
           bool_or(event_name = 'begin_checkout')  AS has_checkout,
           bool_or(event_name = 'purchase')        AS has_purchase
    FROM session_events
    GROUP BY session_id
),
last_checkout AS (
    -- the cart is the last begin_checkout: latest time, ties to the greatest event_id
    SELECT session_id, event_id, event_ts, event_timestamp_us
    FROM session_events
    WHERE event_name = 'begin_checkout'
    QUALIFY row_number() OVER (PARTITION BY session_id ORDER BY event_timestamp_us DESC, event_id DESC) = 1
),
carts AS (
    SELECT c.session_id,
           any_value(c.event_ts)                  AS last_checkout_ts,
           -- exact sums: the same cart gives the same value whatever the row order
           sum(i.price * i.quantity)        AS cart_value,
           sum(i.price_in_usd * i.quantity) AS cart_value_usd,
           list_sort(list_distinct(list(i.item_id))) AS cart_products
    FROM last_checkout AS c
    -- an item has its event's time: matching it too changes nothing, and lets the scan of
    -- fct_event_items skip the row groups outside the checkouts' times
    LEFT JOIN fct_event_items AS i ON i.event_id = c.event_id AND i.event_timestamp_us = c.event_timestamp_us
    GROUP BY c.session_id
)
SELECT
    s.session_id,
    s.user_id,
    s.platform,
    s.session_start_ts,
    s.session_end_ts,
    s.session_date,
    s.events_in_session,
    f.has_list_view,
    f.has_product_view,
    f.has_checkout,
    f.has_purchase,
    s.events_in_session = 1                              AS is_bounce,
    f.has_checkout AND NOT f.has_purchase                AS is_abandoned_checkout,
    CASE WHEN f.has_checkout THEN coalesce(c.cart_value, 0) END        AS cart_value,
    CASE WHEN f.has_checkout THEN coalesce(c.cart_value_usd, 0) END    AS cart_value_usd,
    CASE WHEN f.has_checkout THEN list_filter(coalesce(c.cart_products, []), lambda p: p IS NOT NULL) END
                                                         AS cart_products,
    c.last_checkout_ts,
    f.has_checkout AND NOT f.has_purchase
        AND coalesce(c.cart_value_usd, 0) > $high_value_cart_usd    AS is_high_value_abandon,
    s.since_ts                                           AS recomputed_from_ts      -- load metadata
FROM sessions AS s
JOIN flags AS f USING (session_id)
LEFT JOIN carts AS c USING (session_id)
