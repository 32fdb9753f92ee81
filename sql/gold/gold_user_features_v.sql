-- gold_user_features_v: one row of modelling features per user (the offline feature store):
-- recency, frequency and money over all time and over the last 30 days before the as-of time,
-- abandoned checkouts, installment use and platforms. The as-of time is the newest event time
-- in the warehouse (never the wall clock), so a reprocessed history gives the same features.
-- Grain: one row per user_id (across platforms). Key: user_id. Loaded: view.
-- Reads: fct_events, silver_session_features, fct_orders.
-- columns:
--   user_id: the user
--   first_seen_ts: time of the user's first event (UTC)
--   last_seen_ts: time of the user's last event (UTC)
--   recency_days: as-of time minus last_seen_ts, in days (fractional); the as-of time is the newest event in the warehouse
--   sessions: the user's sessions, on every platform
--   sessions_last_30_days: sessions whose session_start_ts is at or after the as-of time minus 30 days
--   purchases: the user's orders (purchase events), on every platform
--   purchases_last_30_days: orders whose purchase time is at or after the as-of time minus 30 days
--   revenue_usd: sum of the orders' order_value_usd; 0 without orders
--   avg_order_value_usd: revenue_usd / purchases; null without orders
--   abandoned_checkouts: abandoned-checkout sessions (a checkout and no purchase in the session)
--   has_used_installments: the user has an installment order (an item with installments > 1)
--   platforms: sorted distinct platforms of the user's sessions
--   last_platform: platform of the user's latest event (ties: greatest event_id)
WITH as_of AS (
    SELECT max(event_timestamp_us) AS as_of_us,
           max(event_ts)           AS as_of_ts
    FROM fct_events
),
seen AS (
    SELECT user_id,
           min(event_ts)                                            AS first_seen_ts,
           max(event_ts)                                            AS last_seen_ts,
           max(event_timestamp_us)                                  AS last_seen_us,
           arg_max(platform, (event_timestamp_us, event_id))        AS last_platform
    FROM fct_events
    GROUP BY user_id
),
sessions AS (
    SELECT s.user_id,
           count(*)                                                                AS sessions,
           count(*) FILTER (WHERE s.session_start_ts >= a.as_of_ts - INTERVAL 30 DAY) AS sessions_last_30_days,
           count(*) FILTER (WHERE s.is_abandoned_checkout)                         AS abandoned_checkouts,
           list_sort(list_distinct(list(s.platform)))                              AS platforms
    FROM silver_session_features AS s
    CROSS JOIN as_of AS a
    GROUP BY s.user_id
),
orders AS (
    SELECT o.user_id,
           count(*)                                                         AS purchases,
           count(*) FILTER (WHERE o.order_ts >= a.as_of_ts - INTERVAL 30 DAY)  AS purchases_last_30_days,
           -- exact sum: the same orders give the same figure whatever the row order
           sum(o.order_value_usd)                                            AS revenue_usd,
           bool_or(o.is_installment_order)                                  AS has_used_installments
    FROM fct_orders AS o
    CROSS JOIN as_of AS a
    GROUP BY o.user_id
)
SELECT
    e.user_id,
    e.first_seen_ts,
    e.last_seen_ts,
    (a.as_of_us - e.last_seen_us) / 86400000000.0                 AS recency_days,
    coalesce(s.sessions, 0)                                        AS sessions,
    coalesce(s.sessions_last_30_days, 0)                           AS sessions_last_30_days,
    coalesce(o.purchases, 0)                                       AS purchases,
    coalesce(o.purchases_last_30_days, 0)                          AS purchases_last_30_days,
    coalesce(o.revenue_usd, 0)::DOUBLE                             AS revenue_usd,
    (o.revenue_usd / o.purchases)::DOUBLE                          AS avg_order_value_usd,
    coalesce(s.abandoned_checkouts, 0)                             AS abandoned_checkouts,
    coalesce(o.has_used_installments, false)                       AS has_used_installments,
    coalesce(s.platforms, [])                                      AS platforms,
    e.last_platform
FROM seen AS e
CROSS JOIN as_of AS a
LEFT JOIN sessions AS s USING (user_id)
LEFT JOIN orders AS o USING (user_id)
