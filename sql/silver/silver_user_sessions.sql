-- silver_user_sessions: the sessions (metrics.md: Session), with their span and size.
-- Grain: one row per session. Key: session_id.
-- Loaded: overwrite_from, per (user_id, platform) that load $load_id added events to: the sessions
--         from the one in force at the pair's earliest new event on (recomputed_from_ts is that
--         session's start). Sessions only ever merge as events arrive, so an earlier session
--         holds only earlier events and cannot change. All when $load_id is null.
-- Reads: silver_event_sessions, fct_events.
-- columns:
--   session_id: the session: sha256 of user_id, platform and the start in epoch microseconds, 32 hex
--   user_id: the user
--   platform: the platform (upper-cased: IOS, ANDROID, WEB, ...)
--   session_start_ts: the session's first event time (UTC)
--   session_end_ts: the session's last event time (UTC)
--   session_date: UTC date of the session start
--   events_in_session: events in the session
--   recomputed_from_ts: load metadata: from which time the last load recomputed this user and platform's rows
WITH touched AS (
    SELECT user_id, platform, min(event_timestamp_us) AS since_us
    FROM fct_events
    WHERE $load_id IS NULL OR first_load_id >= $load_id
    GROUP BY user_id, platform
),
since AS (
    SELECT s.user_id, s.platform, min(s.session_start_ts) AS since_ts
    FROM silver_event_sessions AS s
    JOIN touched AS t ON s.user_id = t.user_id AND s.platform = t.platform AND s.event_timestamp_us >= t.since_us
    GROUP BY s.user_id, s.platform
)
SELECT
    s.session_id,
    s.user_id,
    s.platform,
    min(s.event_ts)                        AS session_start_ts,
    max(s.event_ts)                        AS session_end_ts,
    CAST(min(s.event_ts) AS DATE)          AS session_date,   -- a session belongs to its start date
    count(*)                               AS events_in_session,
    any_value(c.since_ts)                  AS recomputed_from_ts      -- load metadata
FROM silver_event_sessions AS s
JOIN since AS c ON s.user_id = c.user_id AND s.platform = c.platform AND s.session_start_ts >= c.since_ts
GROUP BY s.session_id, s.user_id, s.platform
