-- dim_experiments: experiment arms (NELO_XP_<EXPERIMENT>_<VARIANT> codes) and their window.
-- Grain: one row per (experiment_id, variant). Key: (experiment_id, variant).
-- Loaded: merge by key; windows widen by the batch's items.
-- Reads: fct_event_items (this load's rows, all when $load_id is null), dim_experiments (itself).
-- columns:
--   experiment_id: the experiment (the EXPERIMENT of NELO_XP_<EXPERIMENT>_<VARIANT>)
--   variant: the arm: the last _ token of the code, (not set) without one
--   arm_code: the discount code of the arm
--   first_event_ts: first event time at which any item carried the arm (UTC)
--   last_event_ts: last such event time (UTC)
WITH batch AS (
    SELECT arm.experiment_id, arm.variant, min(arm.code) AS arm_code,
           min(event_ts) AS first_event_ts, max(event_ts) AS last_event_ts
    FROM (SELECT unnest(experiment_arms) AS arm, event_ts
          FROM fct_event_items
          WHERE $load_id IS NULL OR first_load_id >= $load_id)
    GROUP BY arm.experiment_id, arm.variant
)
SELECT
    b.experiment_id,
    b.variant,
    least(b.arm_code, d.arm_code)                    AS arm_code,
    least(b.first_event_ts, d.first_event_ts)        AS first_event_ts,
    greatest(b.last_event_ts, d.last_event_ts)       AS last_event_ts
FROM batch AS b
LEFT JOIN dim_experiments AS d USING (experiment_id, variant)
