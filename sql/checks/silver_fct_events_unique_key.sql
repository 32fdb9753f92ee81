-- check silver_fct_events_unique_key: event_id is unique and not null in fct_events, and every
-- item row belongs to an event. Scope: the events of load $load_id (all when null).
WITH scope AS (
    SELECT event_id FROM fct_events WHERE $load_id IS NULL OR first_load_id >= $load_id
)
SELECT 'duplicate event' AS problem, event_id, count(*) AS n
FROM fct_events
WHERE event_id IN (SELECT event_id FROM scope) OR event_id IS NULL
GROUP BY event_id
HAVING count(*) > 1 OR event_id IS NULL
UNION ALL
SELECT 'item row without event', i.event_id, count(*)
FROM fct_event_items AS i
ANTI JOIN fct_events AS e USING (event_id)
WHERE $load_id IS NULL OR i.first_load_id >= $load_id
GROUP BY i.event_id
