-- vw_coupon_impact: orders with and without a coupon (an order has one when any item has one).
-- Grain: one row per (platform, has_coupon). Loaded: view. Reads: fct_orders.
-- columns:
--   platform: the platform
--   has_coupon: whether any item of the order carries a coupon
--   orders: orders
--   revenue: sum of order_value (MXN)
--   aov: revenue / orders (average order value, MXN)
--   aov_usd: sum of order_value_usd / orders
SELECT
    platform,
    has_coupon,
    count(*)                                                                    AS orders,
    sum(order_value)::DOUBLE                            AS revenue,
    sum(order_value)::DOUBLE / count(*)                 AS aov,
    sum(order_value_usd)::DOUBLE / count(*)             AS aov_usd
FROM fct_orders
GROUP BY platform, has_coupon
