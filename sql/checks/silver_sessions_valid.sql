-- check silver_sessions_valid: every event is in exactly one session, and the sessions of a
-- (user_id, platform) never overlap. Scope: the pairs load $load_id touched (all when null).
WITH touched AS (
    SELECT DISTINCT user_id, platform FROM fct_events WHERE $load_id IS NULL OR first_load_id >= $load_id
),
assigned AS (
    SELECT e.event_id, count(s.session_id) AS sessions
    FROM fct_events AS e
    SEMI JOIN touched AS t ON e.user_id = t.user_id AND e.platform = t.platform
    LEFT JOIN silver_event_sessions AS s USING (event_id)
    GROUP BY e.event_id
),
ordered AS (
    SELECT s.session_id, s.user_id, s.platform, s.session_start_ts, s.session_end_ts,
           lead(s.session_start_ts) OVER (PARTITION BY s.user_id, s.platform ORDER BY s.session_start_ts) AS next_start
    FROM silver_user_sessions AS s
    SEMI JOIN touched AS t ON s.user_id = t.user_id AND s.platform = t.platform
)
SELECT 'event not in exactly one session' AS problem, event_id AS id, sessions::VARCHAR AS detail
FROM assigned WHERE sessions <> 1
UNION ALL
SELECT 'overlapping sessions', session_id, next_start::VARCHAR
FROM ordered WHERE next_start <= session_end_ts
