-- vw_platform_daily_performance_sessions: the daily funnel per platform, by session date.
-- Grain: one row per (session_date, platform). Loaded: view (gold_transforms.py). Reads: silver_session_features, fct_orders.
-- columns:
--   session_date: UTC date of the session start; everything in a session counts under it
--   platform: IOS, ANDROID, ... (upper-cased)
--   users: distinct users with a session that day on the platform
--   sessions: sessions started that day
--   events: events in those sessions (events, not item rows)
--   bounced_sessions: sessions with exactly one event
--   bounce_rate: bounced_sessions / sessions
--   sessions_with_list_view: sessions with a view_item_list
--   sessions_with_product_view: sessions with a view_item
--   sessions_with_checkout: sessions with a begin_checkout
--   sessions_with_purchase: sessions with a purchase
--   view_to_checkout_rate: sessions with a product view and a checkout / sessions with a product view
--   checkout_to_purchase_rate: sessions with a checkout and a purchase / sessions with a checkout
--   view_to_purchase_rate: sessions with a product view and a purchase / sessions with a product view
--   orders: purchase events in those sessions
--   revenue: sum of order_value (MXN): line revenue is item_revenue, else price * quantity
--   revenue_usd: sum of order_value_usd
--   aov: revenue / orders (average order value, MXN)
--   aov_usd: revenue_usd / orders
--   installment_orders: orders with any item of more than one installment
--   installment_adoption_rate: installment_orders / orders
WITH sessions AS (
    SELECT session_date, platform,
           count(DISTINCT user_id)                                         AS users,
           count(*)                                                        AS sessions,
           sum(events_in_session)                                          AS events,
           count(*) FILTER (WHERE is_bounce)                               AS bounced_sessions,
           count(*) FILTER (WHERE has_list_view)                           AS sessions_with_list_view,
           count(*) FILTER (WHERE has_product_view)                        AS sessions_with_product_view,
           count(*) FILTER (WHERE has_checkout)                            AS sessions_with_checkout,
           count(*) FILTER (WHERE has_purchase)                            AS sessions_with_purchase,
           count(*) FILTER (WHERE has_product_view AND has_checkout)       AS view_and_checkout,
           count(*) FILTER (WHERE has_checkout AND has_purchase)           AS checkout_and_purchase,
           count(*) FILTER (WHERE has_product_view AND has_purchase)       AS view_and_purchase
    FROM silver_session_features
    GROUP BY session_date, platform
),
orders AS (
    SELECT session_date, platform,
           count(*)                                                        AS orders,
           sum(order_value)::DOUBLE                AS revenue,
           sum(order_value_usd)::DOUBLE            AS revenue_usd,
           count(*) FILTER (WHERE is_installment_order)                    AS installment_orders
    FROM fct_orders
    GROUP BY session_date, platform
)
SELECT
    s.session_date,
    s.platform,
    s.users,
    s.sessions,
    s.events,
    s.bounced_sessions,
    s.bounced_sessions / s.sessions                                        AS bounce_rate,
    s.sessions_with_list_view,
    s.sessions_with_product_view,
    s.sessions_with_checkout,
    s.sessions_with_purchase,
    s.view_and_checkout / nullif(s.sessions_with_product_view, 0)          AS view_to_checkout_rate,
    s.checkout_and_purchase / nullif(s.sessions_with_checkout, 0)          AS checkout_to_purchase_rate,
    s.view_and_purchase / nullif(s.sessions_with_product_view, 0)          AS view_to_purchase_rate,
    coalesce(o.orders, 0)                                                  AS orders,
    coalesce(o.revenue, 0)                                                 AS revenue,
    coalesce(o.revenue_usd, 0)                                             AS revenue_usd,
    o.revenue / nullif(o.orders, 0)                                        AS aov,
    o.revenue_usd / nullif(o.orders, 0)                                    AS aov_usd,
    coalesce(o.installment_orders, 0)                                      AS installment_orders,
    o.installment_orders / nullif(o.orders, 0)                             AS installment_adoption_rate
FROM sessions AS s
LEFT JOIN orders AS o USING (session_date, platform)
