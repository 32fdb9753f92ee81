-- gold_segment_abandon_no_purchase_since_v: the targeting list: users whose latest abandoned
-- checkout session (any platform, latest by session_start_ts) was not followed by any purchase,
-- on any platform, strictly after its last begin_checkout.
-- Grain: one row per user. Loaded: view. Reads: silver_session_features, fct_orders.
-- columns:
--   user_id: the user
--   session_id: the user's latest abandoned session
--   platform: that session's platform
--   last_abandon_ts: the last begin_checkout of that session
--   cart_value: that session's cart value (MXN)
--   cart_value_usd: the same in US dollars
--   cart_products: that session's cart (sorted distinct item_ids)
WITH latest_abandon AS (
    SELECT user_id, session_id, platform, last_checkout_ts AS last_abandon_ts, cart_value, cart_value_usd,
           cart_products
    FROM silver_session_features
    WHERE is_abandoned_checkout
    QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY session_start_ts DESC, session_id DESC) = 1
)
SELECT a.*
FROM latest_abandon AS a
WHERE NOT EXISTS (SELECT 1 FROM fct_orders AS o WHERE o.user_id = a.user_id AND o.order_ts > a.last_abandon_ts)
