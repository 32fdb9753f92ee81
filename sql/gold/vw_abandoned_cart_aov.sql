-- vw_abandoned_cart_aov: do cart abandoners spend differently? Users of a platform split into
-- abandoners (at least one abandoned checkout on that platform) and non-abandoners.
-- Grain: one row per (platform, cohort). Loaded: view. Reads: silver_session_features, fct_orders.
-- columns:
--   platform: the platform
--   cohort: abandoner or non_abandoner
--   users: users with a session on that platform, in the cohort
--   orders: their orders on that platform
--   aov: their revenue (order_value, MXN) / orders
--   aov_usd: the same in US dollars
--   abandoned_sessions: their abandoned-checkout sessions on that platform
--   avg_abandoned_cart_value: mean cart_value (MXN) of those sessions
--   avg_abandoned_cart_value_usd: mean cart_value_usd of those sessions
WITH users AS (
    SELECT user_id, platform,
           count(*) FILTER (WHERE is_abandoned_checkout)                                    AS abandoned_sessions,
           sum(cart_value) FILTER (WHERE is_abandoned_checkout)     AS cart_total,
           sum(cart_value_usd) FILTER (WHERE is_abandoned_checkout) AS cart_total_usd
    FROM silver_session_features
    GROUP BY user_id, platform
),
orders AS (
    SELECT user_id, platform, count(*) AS orders,
           sum(order_value) AS revenue,
           sum(order_value_usd) AS revenue_usd
    FROM fct_orders
    GROUP BY user_id, platform
)
SELECT
    u.platform,
    CASE WHEN u.abandoned_sessions > 0 THEN 'abandoner' ELSE 'non_abandoner' END     AS cohort,
    count(*)                                                                         AS users,
    coalesce(sum(o.orders), 0)                                                       AS orders,
    sum(o.revenue)::DOUBLE / nullif(sum(o.orders), 0)                                AS aov,
    sum(o.revenue_usd)::DOUBLE / nullif(sum(o.orders), 0)                            AS aov_usd,
    sum(u.abandoned_sessions)                                                        AS abandoned_sessions,
    sum(u.cart_total)::DOUBLE / nullif(sum(u.abandoned_sessions), 0)                 AS avg_abandoned_cart_value,
    sum(u.cart_total_usd)::DOUBLE / nullif(sum(u.abandoned_sessions), 0)             AS avg_abandoned_cart_value_usd
FROM users AS u
LEFT JOIN orders AS o USING (user_id, platform)
GROUP BY ALL
