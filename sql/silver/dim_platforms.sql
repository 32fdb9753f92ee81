-- dim_platforms: the platforms seen (an open set: IOS, ANDROID, WEB, ... as they appear).
-- Grain: one row per platform. Key: platform.
-- Loaded: merge by platform; a batch widens the first/last event window of the platforms it carries.
-- Reads: fct_events (this load's events, or all when $load_id is null), dim_platforms (itself).
-- columns:
--   platform: the platform (upper-cased), an open set
--   first_event_ts: first event time (UTC) at which it was seen
--   last_event_ts: last event time (UTC) at which it was seen
WITH batch AS (
    SELECT platform, min(event_ts) AS first_event_ts, max(event_ts) AS last_event_ts
    FROM fct_events
    WHERE $load_id IS NULL OR first_load_id >= $load_id
    GROUP BY platform
)
SELECT
    b.platform,
    least(b.first_event_ts, d.first_event_ts)    AS first_event_ts,
    greatest(b.last_event_ts, d.last_event_ts)   AS last_event_ts
FROM batch AS b
LEFT JOIN dim_platforms AS d USING (platform)
