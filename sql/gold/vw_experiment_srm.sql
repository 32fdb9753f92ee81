-- vw_experiment_srm: sample-ratio mismatch check of each experiment: did the arms get an equal
-- share of users? A user counts in the arm of their first exposure to the experiment; users seen
-- in several arms are counted too, since they make the comparison of arms less clean. A flagged
-- experiment's AOV comparison cannot be trusted.
-- Grain: one row per (experiment_id, variant); the experiment-level columns repeat on each arm's row.
-- Key: (experiment_id, variant). Loaded: view. Reads: fct_event_items.
-- columns:
--   experiment_id: the experiment (NELO_XP_<EXPERIMENT>_<VARIANT>)
--   variant: the arm (the last _ token of the code)
--   users: users whose first exposure to the experiment was this arm (earliest event by event_timestamp, event_id; then lowest item_index; then the arm's position in discounts)
--   experiment_users: all users exposed to the experiment
--   arms: distinct arms of the experiment seen in any event
--   expected_share: 1 / arms (an equal split)
--   observed_share: users / experiment_users
--   users_in_several_arms: users of the experiment exposed to more than one of its arms (they still count in their first arm)
--   chi_square: sum over arms of (users - experiment_users / arms)^2 / (experiment_users / arms)
--   degrees_of_freedom: arms - 1
--   srm_flag: chi_square above the chi-square critical value at p = 0.001 for degrees_of_freedom (10.828, 13.816, 16.266, 18.467, 20.515 for 1-5, the table's values to 10, the Wilson-Hilferty approximation above); null when arms < 2
WITH exposures AS (
    SELECT user_id, event_timestamp_us, event_id, item_index,
           unnest(experiment_arms)                    AS arm,
           unnest(range(array_length(experiment_arms)))        AS arm_position     -- position among the item's arms
    FROM fct_event_items
    WHERE array_length(experiment_arms) > 0
),
flat AS (
    SELECT user_id, event_timestamp_us, event_id, item_index, arm_position,
           arm.experiment_id AS experiment_id, arm.variant AS variant
    FROM exposures
),
first_arm AS (
    SELECT experiment_id, user_id, variant
    FROM flat
    QUALIFY row_number() OVER (PARTITION BY experiment_id, user_id
                               ORDER BY event_timestamp_us, event_id, item_index, arm_position) = 1
),
arm_list AS (
    SELECT DISTINCT experiment_id, variant FROM flat
),
per_arm AS (
    SELECT a.experiment_id, a.variant, count(f.user_id) AS users
    FROM arm_list AS a
    LEFT JOIN first_arm AS f USING (experiment_id, variant)
    GROUP BY a.experiment_id, a.variant
),
mixed AS (
    SELECT experiment_id, count(*) FILTER (WHERE arms_seen > 1) AS users_in_several_arms
    FROM (SELECT experiment_id, user_id, count(DISTINCT variant) AS arms_seen FROM flat GROUP BY ALL)
    GROUP BY experiment_id
),
experiments AS (
    -- chi_square = sum((u - N/k)^2 / (N/k)) = (k * sum(u^2) - N^2) / N: integers until the one
    -- division, so the figure never depends on the order of the arms
    SELECT experiment_id,
           sum(users)                                                             AS experiment_users,
           count(*)                                                               AS arms,
           (count(*) * sum(CAST(users AS DECIMAL(38, 0)) * users) - CAST(sum(users) AS DECIMAL(38, 0)) * sum(users))::DOUBLE
               / sum(users)::DOUBLE                                               AS chi_square
    FROM per_arm
    GROUP BY experiment_id
),
tested AS (
    SELECT x.*, x.arms - 1 AS degrees_of_freedom,
           CASE x.arms - 1
               WHEN 1 THEN 10.828 WHEN 2 THEN 13.816 WHEN 3 THEN 16.266 WHEN 4 THEN 18.467 WHEN 5 THEN 20.515
               WHEN 6 THEN 22.458 WHEN 7 THEN 24.322 WHEN 8 THEN 26.124 WHEN 9 THEN 27.877 WHEN 10 THEN 29.588
               -- Wilson-Hilferty: k * (1 - 2/(9k) + z * sqrt(2/(9k)))^3, z = 3.090232 (p = 0.001)
               ELSE (x.arms - 1) * pow(1 - 2 / (9.0 * (x.arms - 1)) + 3.090232 * sqrt(2 / (9.0 * (x.arms - 1))), 3)
           END                                                                    AS critical_value
    FROM experiments AS x
)
SELECT
    p.experiment_id,
    p.variant,
    p.users,
    t.experiment_users,
    t.arms,
    1 / t.arms                                          AS expected_share,
    p.users / t.experiment_users                        AS observed_share,
    m.users_in_several_arms,
    t.chi_square,
    t.degrees_of_freedom,
    CASE WHEN t.arms >= 2 THEN t.chi_square > t.critical_value END AS srm_flag
FROM per_arm AS p
JOIN tested AS t USING (experiment_id)
JOIN mixed AS m USING (experiment_id)
