-- vw_experiment_performance: experiment arms: exposure, conversion, orders and their value.
-- Grain: one row per (experiment_id, variant, platform). Loaded: view.
-- Reads: fct_event_items, silver_event_sessions, fct_orders.
-- columns:
--   experiment_id: the experiment (NELO_XP_<EXPERIMENT>_<VARIANT>)
--   variant: the arm (the last _ token of the code)
--   platform: the platform
--   users_exposed: distinct users with any item carrying the arm
--   sessions_exposed: sessions with any item carrying the arm
--   sessions_with_purchase: sessions with a purchased item carrying the arm
--   session_conversion_rate: sessions_with_purchase / sessions_exposed
--   orders: orders with an item carrying the arm
--   revenue: sum of those orders' order_value (MXN)
--   aov: revenue / orders (average order value, MXN)
--   aov_usd: sum of those orders' order_value_usd / orders
--   installment_adoption_rate: installment orders among those orders / orders
WITH arms AS (
    SELECT i.event_id, i.event_name, i.user_id, i.platform, s.session_id,
           unnest(i.experiment_arms) AS arm
    FROM fct_event_items AS i
    JOIN silver_event_sessions AS s USING (event_id)
    WHERE array_length(i.experiment_arms) > 0
),
exposure AS (
    SELECT arm.experiment_id, arm.variant, platform,
           count(DISTINCT user_id)                                               AS users_exposed,
           count(DISTINCT session_id)                                            AS sessions_exposed,
           count(DISTINCT session_id) FILTER (WHERE event_name = 'purchase')     AS sessions_with_purchase
    FROM arms
    GROUP BY ALL
),
arm_orders AS (
    SELECT DISTINCT a.arm.experiment_id AS experiment_id, a.arm.variant AS variant, o.platform, o.event_id,
           o.order_value, o.order_value_usd, o.is_installment_order
    FROM arms AS a
    JOIN fct_orders AS o USING (event_id)
    WHERE a.event_name = 'purchase'
),
sales AS (
    SELECT experiment_id, variant, platform,
           count(*)                                                 AS orders,
           sum(order_value)::DOUBLE         AS revenue,
           sum(order_value_usd)::DOUBLE     AS revenue_usd,
           count(*) FILTER (WHERE is_installment_order)             AS installment_orders
    FROM arm_orders
    GROUP BY ALL
)
SELECT
    e.experiment_id,
    e.variant,
    e.platform,
    e.users_exposed,
    e.sessions_exposed,
    e.sessions_with_purchase,
    e.sessions_with_purchase / e.sessions_exposed            AS session_conversion_rate,
    coalesce(s.orders, 0)                                    AS orders,
    coalesce(s.revenue, 0)                                   AS revenue,
    s.revenue / nullif(s.orders, 0)                          AS aov,
    s.revenue_usd / nullif(s.orders, 0)                      AS aov_usd,
    s.installment_orders / nullif(s.orders, 0)               AS installment_adoption_rate
FROM exposure AS e
LEFT JOIN sales AS s USING (experiment_id, variant, platform)
