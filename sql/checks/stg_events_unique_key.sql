-- check stg_events_unique_key: (event_id, item_index) is unique in stg_events (an event is staged once).
-- Returns offending keys among the events of this load. Params: $load_id.
SELECT event_id, item_index, count(*) AS copies
FROM stg_events
WHERE event_id IN (SELECT event_id FROM stg_events WHERE load_id >= $load_id)
GROUP BY event_id, item_index
HAVING count(*) > 1
