-- fct_orders: orders (metrics.md: Order): one purchase event, with its value and traits.
-- Grain: one row per purchase event. Key: event_id.
-- order_value = sum of line revenue (item_revenue, else price * quantity), likewise in USD;
-- exact (DECIMAL) sums so a value never depends on row order. An order without items is worth 0.
-- Loaded: overwrite_from, per (user_id, platform) that load $load_id added events to: the orders
--         from the start of the session in force at the pair's earliest new event on
--         (recomputed_from_ts). An earlier order keeps its session (earlier sessions do not
--         change) and its items (an event's items never do). All when $load_id is null.
-- Reads: fct_events, fct_event_items, silver_event_sessions, silver_user_sessions.
-- Params: $load_id.
-- columns:
--   event_id: the purchase event
--   user_id: the user
--   platform: the platform (upper-cased: IOS, ANDROID, WEB, ...)
--   session_id: the session of the purchase
--   session_date: UTC date of that session's start
--   order_ts: the purchase's event time (UTC)
--   order_date: UTC date of order_ts
--   order_value: sum of line revenue (MXN); 0 for an order without items
--   order_value_usd: sum of line revenue in US dollars
--   gross_value: sum of price * quantity (MXN)
--   discount_value: sum of the lines' discount (MXN, null counts as 0)
--   units: sum of the lines' quantity
--   is_installment_order: any item of more than one installment
--   max_installments: the largest installments of its items
--   has_coupon: any item carries a coupon
--   has_discount: any item with discount_value > 0
--   products: sorted distinct item_ids of the order
--   recomputed_from_ts: load metadata: from which time the last load recomputed this user and platform's rows
WITH touched AS (
    SELECT user_id, platform, min(event_timestamp_us) AS since_us
    FROM fct_events
    WHERE $load_id IS NULL OR first_load_id >= $load_id
    GROUP BY user_id, platform
),
since AS (
    -- the start of the session holding the pair's earliest new event (as silver_session_features)
    SELECT s.user_id, s.platform, min(s.session_start_ts) AS since_ts
    FROM silver_event_sessions AS s
    JOIN touched AS t ON s.user_id = t.user_id AND s.platform = t.platform AND s.event_timestamp_us >= t.since_us
    GROUP BY s.user_id, s.platform
),
purchases AS (
    SELECT s.event_id, s.user_id, s.platform, s.event_ts, s.event_timestamp_us, s.session_id,
           s.session_start_ts, c.since_ts
    FROM silver_event_sessions AS s
    JOIN since AS c ON s.user_id = c.user_id AND s.platform = c.platform AND s.event_ts >= c.since_ts
    WHERE s.event_name = 'purchase'
),
lines AS (
    SELECT i.event_id,
           sum(i.line_revenue)                    AS order_value,
           sum(i.line_revenue_usd)                AS order_value_usd,
           sum(i.gross_value)                     AS gross_value,
           sum(coalesce(i.discount_value, 0))     AS discount_value,
           sum(i.quantity)                                                AS units,
           bool_or(i.installments > 1)                                    AS is_installment_order,
           max(i.installments)                                            AS max_installments,
           bool_or(i.coupon IS NOT NULL)                                  AS has_coupon,
           bool_or(i.discount_value > 0)                                  AS has_discount,
           list_sort(list_distinct(list(i.item_id) FILTER (WHERE i.item_id IS NOT NULL))) AS products
    FROM fct_event_items AS i
    -- an item has its event's time: matching it too lets the scan skip older row groups
    SEMI JOIN purchases AS p ON i.event_id = p.event_id AND i.event_timestamp_us = p.event_timestamp_us
    GROUP BY i.event_id
)
SELECT
    p.event_id,
    p.user_id,
    p.platform,
    p.session_id,
    u.session_date,
    p.event_ts                                       AS order_ts,
    CAST(p.event_ts AS DATE)                         AS order_date,
    coalesce(l.order_value, 0)               AS order_value,
    coalesce(l.order_value_usd, 0)           AS order_value_usd,
    coalesce(l.gross_value, 0)               AS gross_value,
    coalesce(l.discount_value, 0)            AS discount_value,
    coalesce(l.units, 0)                             AS units,
    coalesce(l.is_installment_order, false)          AS is_installment_order,
    l.max_installments,
    coalesce(l.has_coupon, false)                    AS has_coupon,
    coalesce(l.has_discount, false)                  AS has_discount,
    coalesce(l.products, [])                         AS products,
    p.since_ts                                       AS recomputed_from_ts      -- load metadata
FROM purchases AS p
JOIN silver_user_sessions AS u ON u.session_id = p.session_id AND u.session_start_ts = p.session_start_ts
LEFT JOIN lines AS l USING (event_id)
