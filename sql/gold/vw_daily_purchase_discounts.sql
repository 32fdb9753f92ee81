-- vw_daily_purchase_discounts: orders, gross and net revenue and discounts by order date.
-- Grain: one row per (order_date, platform). Loaded: view. Reads: fct_orders.
-- columns:
--   order_date: UTC date of the purchase event
--   platform: the platform
--   orders: purchase events
--   units: sum of the purchase lines' quantity
--   gross_revenue: sum of price * quantity (MXN)
--   discount_value: sum of the lines' discount (MXN, null counts as 0)
--   net_revenue: sum of line revenue (MXN)
--   orders_with_discount: orders with any line whose discount_value > 0
SELECT
    order_date,
    platform,
    count(*)                                                  AS orders,
    sum(units)                                                AS units,
    sum(gross_value)::DOUBLE          AS gross_revenue,
    sum(discount_value)::DOUBLE       AS discount_value,
    sum(order_value)::DOUBLE          AS net_revenue,
    count(*) FILTER (WHERE has_discount)                      AS orders_with_discount
FROM fct_orders
GROUP BY order_date, platform
