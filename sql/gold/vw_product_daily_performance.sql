-- vw_product_daily_performance: product views and purchases, by session date.
-- Grain: one row per (session_date, platform, item_id) where the product had a view_item or
-- purchase item row in sessions of that date. Loaded: view.
-- Reads: fct_event_items, silver_event_sessions, silver_user_sessions.
-- columns:
--   session_date: UTC date of the session start
--   platform: the platform
--   item_id: the product
--   views: view_item item rows of the product
--   sessions_viewed: sessions with a view_item of the product
--   sessions_purchased: sessions in which the product was bought
--   sessions_viewed_and_purchased: sessions with both
--   view_to_purchase_rate: sessions_viewed_and_purchased / sessions_viewed
--   units: quantity bought (purchase item rows)
--   revenue: line revenue (MXN) of the purchase item rows
--   revenue_usd: the same in US dollars
WITH per_session AS (
    SELECT u.session_date, i.platform, i.item_id, s.session_id,
           count(*) FILTER (WHERE i.event_name = 'view_item')                           AS views,
           bool_or(i.event_name = 'view_item')                                          AS viewed,
           bool_or(i.event_name = 'purchase')                                           AS purchased,
           sum(i.quantity) FILTER (WHERE i.event_name = 'purchase')                     AS units,
           sum(i.line_revenue) FILTER (WHERE i.event_name = 'purchase')     AS revenue,
           sum(i.line_revenue_usd) FILTER (WHERE i.event_name = 'purchase') AS revenue_usd
    FROM fct_event_items AS i
    JOIN silver_event_sessions AS s USING (event_id)
    JOIN silver_user_sessions AS u USING (session_id)
    WHERE i.event_name IN ('view_item', 'purchase') AND i.item_id IS NOT NULL
    GROUP BY u.session_date, i.platform, i.item_id, s.session_id
)
SELECT
    session_date,
    platform,
    item_id,
    sum(views)                                                        AS views,
    count(*) FILTER (WHERE viewed)                                    AS sessions_viewed,
    count(*) FILTER (WHERE purchased)                                 AS sessions_purchased,
    count(*) FILTER (WHERE viewed AND purchased)                      AS sessions_viewed_and_purchased,
    count(*) FILTER (WHERE viewed AND purchased) / nullif(count(*) FILTER (WHERE viewed), 0) AS view_to_purchase_rate,
    coalesce(sum(units), 0)                                           AS units,
    coalesce(sum(revenue), 0)::DOUBLE                                 AS revenue,
    coalesce(sum(revenue_usd), 0)::DOUBLE                             AS revenue_usd
FROM per_session
GROUP BY session_date, platform, item_id
