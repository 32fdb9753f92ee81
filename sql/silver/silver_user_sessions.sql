-- silver_user_sessions: the sessions (metrics.md: Session), with their span and size.
-- Grain: one row per session. Key: session_id.
-- Loaded: overwrite the (user_id, platform) partitions that load $load_id touched (all when null).
-- Reads: silver_event_sessions, fct_events.
WITH touched AS (
    SELECT DISTINCT user_id, platform
    FROM fct_events
    WHERE $load_id IS NULL OR first_load_id = $load_id
)
SELECT
    s.session_id,
    s.user_id,
    s.platform,
    min(s.event_ts)                        AS session_start_ts,
    max(s.event_ts)                        AS session_end_ts,
    CAST(min(s.event_ts) AS DATE)          AS session_date,   -- a session belongs to its start date
    count(*)                               AS events_in_session
FROM silver_event_sessions AS s
SEMI JOIN touched AS t ON s.user_id = t.user_id AND s.platform = t.platform
GROUP BY s.session_id, s.user_id, s.platform
