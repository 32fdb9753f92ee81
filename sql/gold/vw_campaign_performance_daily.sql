-- vw_campaign_performance_daily: campaign exposure and sales, by session date.
-- A session is exposed to a code when any item of any of its events carries it.
-- Grain: one row per (session_date, platform, campaign_id). Loaded: view.
-- Reads: fct_event_items, silver_event_sessions, silver_user_sessions.
-- columns:
--   session_date: UTC date of the session start
--   platform: the platform
--   campaign_id: the campaign code (experiment arms are not campaigns)
--   sessions_exposed: sessions with any item carrying the code
--   users_exposed: distinct users of those sessions
--   sessions_with_purchase: exposed sessions with a purchased item carrying the code
--   session_conversion_rate: sessions_with_purchase / sessions_exposed
--   orders: purchase events with a line carrying the code
--   units: quantity of the purchased lines carrying the code
--   revenue: line revenue (MXN) of the purchased lines carrying the code
--   revenue_usd: the same in US dollars
--   discount_value: discount (MXN) of the purchased lines carrying the code (null counts as 0)
WITH lines AS (
    SELECT u.session_date, i.platform, s.session_id, i.user_id, i.event_id, i.event_name,
           i.quantity, i.line_revenue, i.line_revenue_usd, i.discount_value,
           unnest(i.campaign_codes) AS campaign_id
    FROM fct_event_items AS i
    JOIN silver_event_sessions AS s USING (event_id)
    JOIN silver_user_sessions AS u USING (session_id)
    WHERE array_length(i.campaign_codes) > 0
)
SELECT
    session_date,
    platform,
    campaign_id,
    count(DISTINCT session_id)                                                         AS sessions_exposed,
    count(DISTINCT user_id)                                                            AS users_exposed,
    count(DISTINCT session_id) FILTER (WHERE event_name = 'purchase')                  AS sessions_with_purchase,
    count(DISTINCT session_id) FILTER (WHERE event_name = 'purchase') / count(DISTINCT session_id)
                                                                                       AS session_conversion_rate,
    count(DISTINCT event_id) FILTER (WHERE event_name = 'purchase')                    AS orders,
    coalesce(sum(quantity) FILTER (WHERE event_name = 'purchase'), 0)                  AS units,
    coalesce(sum(line_revenue) FILTER (WHERE event_name = 'purchase'), 0)::DOUBLE
                                                                                       AS revenue,
    coalesce(sum(line_revenue_usd) FILTER (WHERE event_name = 'purchase'), 0)::DOUBLE
                                                                                       AS revenue_usd,
    coalesce(sum(coalesce(discount_value, 0)) FILTER (WHERE event_name = 'purchase'), 0)::DOUBLE
                                                                                       AS discount_value
FROM lines
GROUP BY session_date, platform, campaign_id
