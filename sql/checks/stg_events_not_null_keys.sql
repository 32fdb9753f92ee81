-- check stg_events_not_null_keys: an event's rows are complete: item_index is null only for an
-- event without items, and item rows number 0..item_count-1. Scope: this load. Params: $load_id.
SELECT event_id, item_count, count(*) AS rows_, count(item_index) AS indexed_rows,
       min(item_index) AS first_index, max(item_index) AS last_index
FROM stg_events
WHERE load_id >= $load_id
GROUP BY event_id, item_count
HAVING (item_count = 0 AND (count(*) <> 1 OR count(item_index) <> 0))
    OR (item_count > 0 AND (count(*) <> item_count OR count(DISTINCT item_index) <> item_count
                            OR min(item_index) <> 0 OR max(item_index) <> item_count - 1))
