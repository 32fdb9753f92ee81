-- gold_segment_bounce_v: the bounced sessions (exactly one event), with their features, for targeting.
-- Grain: one row per session. Loaded: view. Reads: silver_session_features.
-- columns:
--   session_id: sha256 of user_id, platform and the start in epoch microseconds, 32 hex
--   user_id: the user
--   platform: the platform
--   session_start_ts: the session's first event time (UTC)
--   session_end_ts: the session's last event time (UTC)
--   session_date: UTC date of the start
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
--   is_high_value_abandon: abandoned with cart_value_usd above high_value_cart_usd
SELECT
    session_id, user_id, platform, session_start_ts, session_end_ts, session_date, events_in_session,
    has_list_view, has_product_view, has_checkout, has_purchase, is_bounce, is_abandoned_checkout,
    cart_value, cart_value_usd, cart_products, is_high_value_abandon
FROM silver_session_features
WHERE is_bounce
