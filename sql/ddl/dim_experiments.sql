-- dim_experiments: the table behind sql/silver/dim_experiments.sql (which reads itself to widen
-- windows). Grain: one row per experiment arm. Key: (experiment_id, variant).
CREATE TABLE IF NOT EXISTS dim_experiments (
    experiment_id   VARCHAR NOT NULL,
    variant         VARCHAR NOT NULL,
    arm_code        VARCHAR,
    first_event_ts  TIMESTAMP,
    last_event_ts   TIMESTAMP
);
