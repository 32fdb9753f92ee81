-- dim_users: users over event time (SCD2): a new version starts when the user first buys and
-- when they first use installments (a purchase with any item of more than one installment).
-- Grain: one row per user version. Key: (user_id, valid_from).
-- Loaded: overwrite the user_id partitions that load $load_id touched (all when null): a late
--         event can move a first purchase earlier. A user's versions follow from three first
--         times and the platforms seen, which every version row holds for all history so far:
--         the batch's new events (new exactly once: staging drops known events) are combined
--         with the current row's (itself: this table), instead of reading the user's history.
-- Reads: fct_events, fct_event_items, dim_users (itself; shape in sql/ddl/).
-- columns:
--   user_id: the user
--   valid_from: when this version took effect (event time, UTC)
--   valid_to: when the next version took effect; null for the current version
--   is_current: whether this is the current version
--   is_buyer: the user had bought by valid_from
--   has_used_installments: the user had used installments by valid_from
--   first_seen_ts: the user's first event time (UTC)
--   first_purchase_ts: the user's first purchase (UTC); null if none
--   first_installment_ts: the user's first purchase with installments (UTC); null if none
--   platforms: sorted distinct platforms the user was seen on
WITH added AS (
    SELECT user_id,
           min(event_ts)                                             AS first_seen_ts,
           min(event_ts) FILTER (WHERE event_name = 'purchase')      AS first_purchase_ts,
           list(DISTINCT platform)                                   AS platforms
    FROM fct_events
    WHERE $load_id IS NULL OR first_load_id >= $load_id
    GROUP BY user_id
),
added_installments AS (
    SELECT user_id, min(event_ts) AS first_installment_ts
    FROM fct_event_items
    WHERE ($load_id IS NULL OR first_load_id >= $load_id) AND event_name = 'purchase' AND installments > 1
    GROUP BY user_id
),
known AS (
    SELECT d.user_id, d.first_seen_ts, d.first_purchase_ts, d.first_installment_ts, d.platforms
    FROM dim_users AS d
    SEMI JOIN added AS a USING (user_id)
    WHERE d.is_current
),
firsts AS (
    SELECT a.user_id,
           least(a.first_seen_ts, k.first_seen_ts)                   AS first_seen_ts,
           least(a.first_purchase_ts, k.first_purchase_ts)           AS first_purchase_ts,
           least(n.first_installment_ts, k.first_installment_ts)     AS first_installment_ts,
           list_sort(list_distinct(list_concat(a.platforms, coalesce(k.platforms, [])))) AS platforms
    FROM added AS a
    LEFT JOIN added_installments AS n USING (user_id)
    LEFT JOIN known AS k USING (user_id)
),
changes AS (
    SELECT f.*, unnest([f.first_seen_ts, f.first_purchase_ts, f.first_installment_ts]) AS change_ts
    FROM firsts AS f
),
versions AS (
    SELECT DISTINCT user_id, first_seen_ts, first_purchase_ts, first_installment_ts, platforms, change_ts
    FROM changes
    WHERE change_ts IS NOT NULL
)
SELECT
    user_id,
    change_ts                                                        AS valid_from,
    lead(change_ts) OVER w                                           AS valid_to,
    lead(change_ts) OVER w IS NULL                                   AS is_current,
    first_purchase_ts IS NOT NULL AND change_ts >= first_purchase_ts AS is_buyer,
    first_installment_ts IS NOT NULL AND change_ts >= first_installment_ts AS has_used_installments,
    first_seen_ts,
    first_purchase_ts,
    first_installment_ts,
    platforms                                                        -- every platform seen (all history)
FROM versions
WINDOW w AS (PARTITION BY user_id ORDER BY change_ts)
