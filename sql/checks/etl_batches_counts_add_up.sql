-- check etl_batches_counts_add_up: every received message is loaded, a duplicate or dead-lettered,
-- and the ledger agrees with what the load wrote. Returns the offending ledger row. Params: $load_id.
WITH staged AS (
    SELECT count(DISTINCT event_id) AS events FROM stg_events WHERE load_id = $load_id
), dead AS (
    SELECT count(*) AS lines FROM dead_letter_messages WHERE load_id = $load_id
)
SELECT b.load_id, b.received, b.loaded_events, b.duplicate_events, b.dead_lettered,
       staged.events AS staged_events, dead.lines AS dead_letter_rows
FROM etl_batches AS b, staged, dead
WHERE b.load_id = $load_id
  AND (b.received <> b.loaded_events + b.duplicate_events + b.dead_lettered
       OR b.loaded_events <> staged.events
       OR b.dead_lettered <> dead.lines)
