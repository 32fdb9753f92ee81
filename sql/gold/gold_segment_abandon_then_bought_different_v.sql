-- gold_segment_abandon_then_bought_different_v: abandoned sessions after which the user (on any
-- platform) bought something else: at least one purchase after the session's last begin_checkout
-- has no product in that cart.
-- Grain: one row per (user, abandoned session). Loaded: view. Reads: silver_session_features, fct_orders.
-- columns:
--   user_id: the user
--   platform: the abandoned session's platform
--   session_id: the abandoned session
--   abandoned_products: the cart (sorted distinct item_ids of the last checkout)
--   later_purchased_products: sorted distinct products of the later purchases that share no product with the cart
WITH abandoned AS (
    SELECT user_id, platform, session_id, last_checkout_ts, cart_products
    FROM silver_session_features
    WHERE is_abandoned_checkout
),
qualifying AS (
    SELECT a.user_id, a.platform, a.session_id, a.cart_products, o.products
    FROM abandoned AS a
    JOIN fct_orders AS o ON o.user_id = a.user_id AND o.order_ts > a.last_checkout_ts
    WHERE array_length(array_intersect(o.products, a.cart_products)) = 0
)
SELECT
    user_id,
    platform,
    session_id,
    any_value(cart_products)                                      AS abandoned_products,
    list_sort(list_distinct(flatten(list(products))))             AS later_purchased_products
FROM qualifying
GROUP BY user_id, platform, session_id
