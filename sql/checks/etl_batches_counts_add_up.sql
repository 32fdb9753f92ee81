-- check etl_batches_counts_add_up: every received message is loaded, a duplicate or dead-lettered,
-- and the ledger agrees with what each load wrote. Returns the offending ledger rows.
-- Scope: the loads of this transaction (from $load_id on; several when files load together).
-- Params: $load_id.
WITH staged AS (
    SELECT load_id, count(DISTINCT event_id) AS events FROM stg_events WHERE load_id >= $load_id GROUP BY load_id
), dead AS (
    SELECT load_id, count(*) AS lines FROM dead_letter_messages WHERE load_id >= $load_id GROUP BY load_id
)
SELECT b.load_id, b.received, b.loaded_events, b.duplicate_events, b.dead_lettered,
       coalesce(staged.events, 0) AS staged_events, coalesce(dead.lines, 0) AS dead_letter_rows
FROM etl_batches AS b
LEFT JOIN staged USING (load_id)
LEFT JOIN dead USING (load_id)
WHERE b.load_id >= $load_id AND b.status = 'committed'
  AND (b.received <> b.loaded_events + b.duplicate_events + b.dead_lettered
       OR b.loaded_events <> coalesce(staged.events, 0)
       OR b.dead_lettered <> coalesce(dead.lines, 0))
