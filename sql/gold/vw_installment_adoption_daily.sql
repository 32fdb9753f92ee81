-- vw_installment_adoption_daily: how many orders use installments, by order date.
-- Grain: one row per (order_date, platform). Loaded: view. Reads: fct_orders.
-- columns:
--   order_date: UTC date of the purchase event
--   platform: the platform
--   orders: orders
--   installment_orders: orders with any item of more than one installment
--   installment_adoption_rate: installment_orders / orders
--   avg_installments: mean, over installment orders, of the order's largest installments
--   users_adopting: distinct users with an installment order that day
SELECT
    order_date,
    platform,
    count(*)                                                          AS orders,
    count(*) FILTER (WHERE is_installment_order)                      AS installment_orders,
    count(*) FILTER (WHERE is_installment_order) / count(*)           AS installment_adoption_rate,
    avg(max_installments) FILTER (WHERE is_installment_order)         AS avg_installments,
    count(DISTINCT user_id) FILTER (WHERE is_installment_order)       AS users_adopting
FROM fct_orders
GROUP BY order_date, platform
