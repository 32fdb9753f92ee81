-- check silver_sessions_valid: every event is in exactly one session, and the sessions of a
-- (user_id, platform) never overlap. Scope: what load $load_id rewrote (all when null): per pair
-- it touched, the events from its earliest new event on, the sessions ending at or after it (the
-- ones it rewrote), and every earlier session ending at or after the first of those starts: a
-- session that overlaps a rewritten one ends after that one's start, so none is missed, and the
-- rest did not change (the load that wrote them checked them).
-- Params: $load_id.
WITH touched AS (
    SELECT user_id, platform, min(event_timestamp_us) AS since_us
    FROM fct_events
    WHERE $load_id IS NULL OR first_load_id >= $load_id
    GROUP BY user_id, platform
),
assigned AS (
    SELECT e.event_id, count(s.session_id) AS sessions
    FROM fct_events AS e
    JOIN touched AS t ON e.user_id = t.user_id AND e.platform = t.platform AND e.event_timestamp_us >= t.since_us
    -- a session row carries its event's time: matching it too lets the scan skip older row groups
    LEFT JOIN silver_event_sessions AS s ON s.event_id = e.event_id AND s.event_timestamp_us = e.event_timestamp_us
    GROUP BY e.event_id
),
rewritten AS (
    SELECT s.user_id, s.platform, min(s.session_start_ts) AS from_ts
    FROM silver_user_sessions AS s
    JOIN touched AS t ON s.user_id = t.user_id AND s.platform = t.platform
                     AND s.session_end_ts >= make_timestamp(t.since_us)
    GROUP BY s.user_id, s.platform
),
ordered AS (
    SELECT s.session_id, s.user_id, s.platform, s.session_start_ts, s.session_end_ts,
           lead(s.session_start_ts) OVER (PARTITION BY s.user_id, s.platform ORDER BY s.session_start_ts) AS next_start
    FROM silver_user_sessions AS s
    JOIN rewritten AS r ON s.user_id = r.user_id AND s.platform = r.platform AND s.session_end_ts >= r.from_ts
)
SELECT 'event not in exactly one session' AS problem, event_id AS id, sessions::VARCHAR AS detail
FROM assigned WHERE sessions <> 1
UNION ALL
SELECT 'overlapping sessions', session_id, next_start::VARCHAR
FROM ordered WHERE next_start <= session_end_ts
