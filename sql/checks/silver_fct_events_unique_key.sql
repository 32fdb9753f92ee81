-- check silver_fct_events_unique_key: event_id is unique and not null in fct_events, and every
-- item row belongs to an event. Scope: the events of load $load_id (all when null).
-- An event's time is part of its identity (event_id hashes it), and an item row carries its
-- event's: matching on the time too finds the same rows and lets the scans skip the row groups
-- before the load's earliest event.
WITH scope AS (
    SELECT event_id, event_timestamp_us FROM fct_events WHERE $load_id IS NULL OR first_load_id >= $load_id
),
new_items AS (
    SELECT event_id, event_timestamp_us FROM fct_event_items WHERE $load_id IS NULL OR first_load_id >= $load_id
),
events_since AS (
    SELECT event_id, event_timestamp_us FROM fct_events
    WHERE event_timestamp_us >= (SELECT min(event_timestamp_us) FROM new_items)
)
SELECT 'duplicate event' AS problem, e.event_id, count(*) AS n
FROM fct_events AS e
SEMI JOIN scope AS s ON e.event_id = s.event_id AND e.event_timestamp_us = s.event_timestamp_us
GROUP BY e.event_id
HAVING count(*) > 1
UNION ALL
SELECT 'event without id', NULL, count(*)
FROM scope
WHERE event_id IS NULL
HAVING count(*) > 0
UNION ALL
SELECT 'item row without event', i.event_id, count(*)
FROM new_items AS i
ANTI JOIN events_since AS e ON e.event_id = i.event_id AND e.event_timestamp_us = i.event_timestamp_us
GROUP BY i.event_id
