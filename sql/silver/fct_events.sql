-- fct_events: the deduplicated events.
-- Grain: one row per event. Key: event_id.
-- Loaded: append, the events first staged by load $load_id (every event when $load_id is null:
--         silver_transforms.py --rebuild). Events are never updated: stg_events already dedupes.
-- Reads: stg_events.
SELECT
    event_id,
    event_ts,
    event_timestamp_us,
    CAST(event_ts AS DATE)  AS event_date,
    user_id,
    platform,
    event_name,
    item_count,
    load_id                 AS first_load_id,     -- load metadata: which load first saw the event
    batch_id                AS first_batch_id
FROM stg_events
WHERE ($load_id IS NULL OR load_id >= $load_id)
  AND coalesce(item_index, 0) = 0
