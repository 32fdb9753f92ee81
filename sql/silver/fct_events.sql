-- fct_events: the deduplicated events.
-- Grain: one row per event. Key: event_id.
-- Loaded: append, the events first staged by load $load_id (every event when $load_id is null:
--         silver_transforms.py --rebuild). Events are never updated: stg_events already dedupes.
-- Reads: stg_events.
-- columns:
--   event_id: the event's id: first 32 hex digits of the SHA-256 of its five identity fields
--   event_ts: event time (UTC), from event_timestamp
--   event_timestamp_us: event time in epoch microseconds, as sent
--   event_date: UTC date of event_ts
--   user_id: the user
--   platform: the platform (upper-cased: IOS, ANDROID, WEB, ...)
--   event_name: what happened (view_item_list, view_item, begin_checkout, purchase, ...)
--   item_count: item rows the event carried (0 for an event without items)
--   first_load_id: load metadata: the etl_batches load that first saw the row
--   first_batch_id: load metadata: the batch file that first carried the event
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
