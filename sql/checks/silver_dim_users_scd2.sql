-- check silver_dim_users_scd2: per user exactly one current version and versions that neither
-- overlap nor leave gaps. Scope: the users load $load_id touched (all when null).
WITH touched AS (
    SELECT DISTINCT user_id FROM fct_events WHERE $load_id IS NULL OR first_load_id >= $load_id
),
versions AS (
    SELECT d.*, lead(valid_from) OVER (PARTITION BY d.user_id ORDER BY valid_from) AS next_from
    FROM dim_users AS d
    SEMI JOIN touched AS t USING (user_id)
)
SELECT 'not exactly one current version' AS problem, user_id, NULL::TIMESTAMP AS valid_from
FROM versions GROUP BY user_id HAVING count_if(is_current) <> 1
UNION ALL
SELECT 'gap or overlap', user_id, valid_from
FROM versions WHERE valid_to IS DISTINCT FROM next_from OR (is_current <> (valid_to IS NULL))
UNION ALL
SELECT 'user without versions', t.user_id, NULL
FROM touched AS t ANTI JOIN dim_users AS d USING (user_id)
