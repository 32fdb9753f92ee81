-- dim_item_lists: the lists, named by their latest non-null item_list_name over all history by
-- event time (ties: greatest event_id, then lowest item_index) (metrics.md: List impression).
-- Grain: one row per list. Key: item_list_id ('(not set)' stands for null and (not set)).
-- Loaded: merge by item_list_id: the batch's best name competes with the one kept so far.
-- Reads: silver_list_impressions (this load's events, all when $load_id is null), fct_events,
--        dim_item_lists (itself).
-- columns:
--   item_list_id: the list ('(not set)' stands for null and (not set))
--   item_list_name: the list's latest non-null name over all history
--   name_event_ts: event time (UTC) of the impression that gave the name
--   name_event_id: the event that gave the name
--   name_item_index: the item row of that event
--   first_impression_ts: the list's first impression (UTC)
--   last_impression_ts: the list's last impression (UTC)
WITH batch_impressions AS (
    SELECT m.*
    FROM silver_list_impressions AS m
    -- an impression has its event's time: matching it too lets the scan skip older row groups
    SEMI JOIN (SELECT event_id, event_timestamp_us FROM fct_events
               WHERE $load_id IS NULL OR first_load_id >= $load_id) AS e
        ON m.event_id = e.event_id AND m.event_timestamp_us = e.event_timestamp_us
),
batch_lists AS (
    SELECT item_list_id, min(event_ts) AS first_impression_ts, max(event_ts) AS last_impression_ts
    FROM batch_impressions
    GROUP BY item_list_id
),
candidates AS (
    SELECT item_list_id, item_list_name, event_ts AS name_event_ts, event_id AS name_event_id,
           item_index AS name_item_index
    FROM batch_impressions
    WHERE item_list_name IS NOT NULL
    UNION ALL
    SELECT item_list_id, item_list_name, name_event_ts, name_event_id, name_item_index
    FROM dim_item_lists
    WHERE item_list_name IS NOT NULL AND item_list_id IN (SELECT item_list_id FROM batch_lists)
),
best_name AS (
    -- the columns by name: QUALIFY on SELECT * leaks a helper column when transpiled to Spark
    SELECT item_list_id, item_list_name, name_event_ts, name_event_id, name_item_index
    FROM candidates
    QUALIFY row_number() OVER (PARTITION BY item_list_id
                               ORDER BY name_event_ts DESC, name_event_id DESC, name_item_index ASC) = 1
)
SELECT
    b.item_list_id,
    n.item_list_name,
    n.name_event_ts,
    n.name_event_id,
    n.name_item_index,
    least(b.first_impression_ts, d.first_impression_ts)   AS first_impression_ts,
    greatest(b.last_impression_ts, d.last_impression_ts)  AS last_impression_ts
FROM batch_lists AS b
LEFT JOIN best_name AS n USING (item_list_id)
LEFT JOIN dim_item_lists AS d USING (item_list_id)
