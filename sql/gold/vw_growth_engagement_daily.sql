-- vw_growth_engagement_daily: the list view's columns per (list, campaign code) of the impression
-- item rows: an impression carrying two campaign codes counts under both, one carrying none
-- (experiment arms are not campaign codes) under NONE. Attributed clicks, checkouts and purchases
-- count under the codes of the impression they are attributed to.
-- Grain: one row per (session_date, platform, campaign_id, item_list_id). Loaded: view.
-- Reads: silver_list_impressions, silver_event_list_attribution, silver_user_sessions, dim_item_lists.
-- columns:
--   session_date: UTC date of the session start
--   platform: the platform
--   campaign_id: a campaign code carried by the impression item, or NONE
--   item_list_id: the list; null and (not set) report as (not set)
--   item_list_name: the list's latest non-null name over all history
--   list_impressions: impression item rows of the list carrying the code
--   sessions_exposed: sessions with such an impression
--   sessions_with_click: sessions with a view_item attributed to such an impression
--   sessions_with_checkout: sessions with a begin_checkout item row attributed to such an impression
--   sessions_with_purchase: sessions with a purchase item row attributed to such an impression
--   ctr_sessions: sessions_with_click / sessions_exposed
--   purchase_rate_on_exposure: sessions_with_purchase / sessions_exposed
--   purchase_rate_on_click: sessions with both an attributed click and purchase / sessions_with_click
--   attributed_revenue: line revenue (MXN) of attributed purchase item rows
--   attributed_revenue_usd: the same in US dollars
WITH impressions AS (
    SELECT u.session_date, m.platform, code.campaign_id, m.item_list_id,
           count(*)                        AS list_impressions,
           count(DISTINCT m.session_id)    AS sessions_exposed
    FROM silver_list_impressions AS m
    JOIN silver_user_sessions AS u USING (session_id),
    LATERAL (SELECT unnest(CASE WHEN array_length(m.campaign_codes) = 0 THEN ['NONE'] ELSE m.campaign_codes END)
             AS campaign_id) AS code
    GROUP BY ALL
),
per_session AS (
    SELECT u.session_date, a.platform, code.campaign_id, a.item_list_id, a.session_id,
           bool_or(a.event_name = 'view_item')          AS clicked,
           bool_or(a.event_name = 'begin_checkout')     AS checked_out,
           bool_or(a.event_name = 'purchase')           AS purchased,
           sum(a.line_revenue) FILTER (WHERE a.event_name = 'purchase')     AS revenue,
           sum(a.line_revenue_usd) FILTER (WHERE a.event_name = 'purchase') AS revenue_usd
    FROM silver_event_list_attribution AS a
    JOIN silver_user_sessions AS u USING (session_id),
    LATERAL (SELECT unnest(CASE WHEN array_length(a.impression_campaign_codes) = 0 THEN ['NONE']
                                ELSE a.impression_campaign_codes END) AS campaign_id) AS code
    GROUP BY ALL
),
attributed AS (
    SELECT session_date, platform, campaign_id, item_list_id,
           count(*) FILTER (WHERE clicked)                  AS sessions_with_click,
           count(*) FILTER (WHERE checked_out)              AS sessions_with_checkout,
           count(*) FILTER (WHERE purchased)                AS sessions_with_purchase,
           count(*) FILTER (WHERE clicked AND purchased)    AS click_and_purchase,
           sum(revenue)::DOUBLE                             AS attributed_revenue,
           sum(revenue_usd)::DOUBLE                         AS attributed_revenue_usd
    FROM per_session
    GROUP BY ALL
)
SELECT
    i.session_date,
    i.platform,
    i.campaign_id,
    i.item_list_id,
    l.item_list_name,
    i.list_impressions,
    i.sessions_exposed,
    coalesce(a.sessions_with_click, 0)                                     AS sessions_with_click,
    coalesce(a.sessions_with_checkout, 0)                                  AS sessions_with_checkout,
    coalesce(a.sessions_with_purchase, 0)                                  AS sessions_with_purchase,
    coalesce(a.sessions_with_click, 0) / i.sessions_exposed                AS ctr_sessions,
    coalesce(a.sessions_with_purchase, 0) / i.sessions_exposed             AS purchase_rate_on_exposure,
    a.click_and_purchase / nullif(a.sessions_with_click, 0)                AS purchase_rate_on_click,
    coalesce(a.attributed_revenue, 0)                                      AS attributed_revenue,
    coalesce(a.attributed_revenue_usd, 0)                                  AS attributed_revenue_usd
FROM impressions AS i
LEFT JOIN attributed AS a USING (session_date, platform, campaign_id, item_list_id)
LEFT JOIN dim_item_lists AS l USING (item_list_id)
