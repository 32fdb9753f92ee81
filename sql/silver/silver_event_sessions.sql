-- silver_event_sessions: which session each event belongs to (metrics.md: Session).
-- Grain: one row per event. Key: event_id.
-- Loaded: overwrite the (user_id, platform) partitions that load $load_id touched (all when null):
--         a late event can merge two sessions or split one, so a touched pair is recomputed whole.
-- Reads: fct_events. Params: $load_id, $session_timeout_us.
WITH touched AS (
    SELECT DISTINCT user_id, platform
    FROM fct_events
    WHERE $load_id IS NULL OR first_load_id = $load_id
),
events AS (
    SELECT e.event_id, e.user_id, e.platform, e.event_name, e.event_ts, e.event_timestamp_us
    FROM fct_events AS e
    SEMI JOIN touched AS t ON e.user_id = t.user_id AND e.platform = t.platform
),
gaps AS (
    SELECT *,
           event_timestamp_us - lag(event_timestamp_us) OVER (
               PARTITION BY user_id, platform ORDER BY event_timestamp_us, event_id) AS gap_us
    FROM events
),
numbered AS (
    -- a gap of more than the timeout starts a session; exactly the timeout continues it
    SELECT *,
           sum(CASE WHEN gap_us IS NULL OR gap_us > $session_timeout_us THEN 1 ELSE 0 END) OVER (
               PARTITION BY user_id, platform ORDER BY event_timestamp_us, event_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_number
    FROM gaps
),
starts AS (
    SELECT *, min(event_timestamp_us) OVER (PARTITION BY user_id, platform, session_number) AS session_start_us
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
    make_timestamp(session_start_us)       AS session_start_ts
FROM starts
