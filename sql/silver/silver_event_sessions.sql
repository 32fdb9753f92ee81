-- silver_event_sessions: which session each event belongs to (metrics.md: Session).
-- Grain: one row per event. Key: event_id.
-- Loaded: overwrite_from, per (user_id, platform) that load $load_id added events to: the rows from
--         the pair's earliest new event on (recomputed_from_ts) are recomputed; earlier events keep
--         their sessions, since an event's session depends only on the events up to it (a late
--         event can merge the session before it with the ones after, never change an earlier
--         event's). With $load_id null (--rebuild) every pair is recomputed from its first event.
-- Reads: fct_events, silver_event_sessions (itself: the session in force before the new events).
-- Params: $load_id, $session_timeout_us.
-- columns:
--   event_id: the event's id: first 32 hex digits of the SHA-256 of its five identity fields
--   user_id: the user
--   platform: the platform (upper-cased: IOS, ANDROID, WEB, ...)
--   event_name: what happened (view_item_list, view_item, begin_checkout, purchase, ...)
--   event_ts: the event's time (UTC)
--   event_timestamp_us: event time in epoch microseconds, as sent
--   session_id: the session the event is in: sha256 of user_id, platform and the start in epoch microseconds, 32 hex
--   session_start_ts: the start of that session (UTC)
--   recomputed_from_ts: load metadata: from which time the last load recomputed this user and platform's rows
WITH touched AS (
    SELECT user_id, platform, min(event_timestamp_us) AS since_us
    FROM fct_events
    WHERE $load_id IS NULL OR first_load_id >= $load_id
    GROUP BY user_id, platform
),
seeds AS (
    -- the pair's last event before since_us, and the start of its session (events of one instant
    -- share a session, so the latest instant decides). Only one within the timeout can continue
    -- into since_us; an older one changes nothing (the first new event starts a session either
    -- way), and the bound lets the scan skip the row groups before the batch's earliest event
    SELECT s.user_id, s.platform, max(s.event_timestamp_us) AS event_timestamp_us,
           arg_max(date_diff('microsecond', TIMESTAMP '1970-01-01', s.session_start_ts), s.event_timestamp_us) AS seed_start_us
    FROM silver_event_sessions AS s
    JOIN touched AS t ON s.user_id = t.user_id AND s.platform = t.platform AND s.event_timestamp_us < t.since_us
                     AND s.event_timestamp_us >= t.since_us - $session_timeout_us
    WHERE $load_id IS NOT NULL
    GROUP BY s.user_id, s.platform
),
events AS (
    SELECT e.event_id, e.user_id, e.platform, e.event_name, e.event_ts, e.event_timestamp_us, t.since_us,
           NULL::BIGINT AS seed_start_us
    FROM fct_events AS e
    JOIN touched AS t ON e.user_id = t.user_id AND e.platform = t.platform AND e.event_timestamp_us >= t.since_us
    UNION ALL
    SELECT NULL, s.user_id, s.platform, NULL, NULL, s.event_timestamp_us, t.since_us, s.seed_start_us
    FROM seeds AS s
    JOIN touched AS t USING (user_id, platform)
),
gaps AS (
    SELECT *,
           event_timestamp_us - lag(event_timestamp_us) OVER (
               PARTITION BY user_id, platform ORDER BY event_timestamp_us, event_id NULLS FIRST) AS gap_us
    FROM events
),
numbered AS (
    -- a gap of more than the timeout starts a session; exactly the timeout continues it
    SELECT *,
           sum(CASE WHEN gap_us IS NULL OR gap_us > $session_timeout_us THEN 1 ELSE 0 END) OVER (
               PARTITION BY user_id, platform ORDER BY event_timestamp_us, event_id NULLS FIRST
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_number
    FROM gaps
),
starts AS (
    -- the seed's session keeps its start; any other starts at its first event
    SELECT *,
           coalesce(max(seed_start_us) OVER (PARTITION BY user_id, platform, session_number),
                    min(event_timestamp_us) OVER (PARTITION BY user_id, platform, session_number)) AS session_start_us
    FROM numbered
)
SELECT
    event_id,
    user_id,
    platform,
    event_name,
    event_ts,
    event_timestamp_us,
    substr(sha256(concat_ws(chr(31), user_id, platform, session_start_us::VARCHAR)), 1, 32) AS session_id,
    make_timestamp(session_start_us)       AS session_start_ts,
    make_timestamp(since_us)               AS recomputed_from_ts      -- load metadata
FROM starts
WHERE event_id IS NOT NULL
