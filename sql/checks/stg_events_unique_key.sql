-- check stg_events_unique_key: (event_id, item_index) is unique in stg_events (an event is staged once).
-- Returns offending keys among the events of this load. Params: $load_id.
-- An event's time is part of its identity (event_id hashes it): a copy of one has its time, so
-- matching on it too finds every copy, and lets the scan skip the row groups outside the load's times.
WITH loaded AS (
    SELECT DISTINCT event_id, event_timestamp_us FROM stg_events WHERE load_id >= $load_id
)
SELECT s.event_id, s.item_index, count(*) AS copies
FROM stg_events AS s
SEMI JOIN loaded AS n ON s.event_id = n.event_id AND s.event_timestamp_us = n.event_timestamp_us
GROUP BY s.event_id, s.item_index
HAVING count(*) > 1
