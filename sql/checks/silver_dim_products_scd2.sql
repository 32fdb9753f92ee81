-- check silver_dim_products_scd2: per product exactly one current version, versions that neither
-- overlap nor leave gaps (each valid_to is the next valid_from), and no two versions in a row
-- with the same price. Scope: the products load $load_id observed (all when null).
WITH touched AS (
    SELECT DISTINCT item_id FROM fct_event_items
    WHERE ($load_id IS NULL OR first_load_id >= $load_id) AND item_id IS NOT NULL AND price IS NOT NULL
),
versions AS (
    SELECT d.*,
           lead(valid_from) OVER (PARTITION BY d.item_id ORDER BY valid_from) AS next_from,
           lag(price) OVER (PARTITION BY d.item_id ORDER BY valid_from) AS previous_price
    FROM dim_products AS d
    SEMI JOIN touched AS t ON d.item_id = t.item_id
)
SELECT 'not exactly one current version' AS problem, item_id, count_if(is_current)::VARCHAR AS detail
FROM versions GROUP BY item_id HAVING count_if(is_current) <> 1
UNION ALL
SELECT 'gap or overlap', item_id, valid_from::VARCHAR
FROM versions WHERE valid_to IS DISTINCT FROM next_from OR (is_current <> (valid_to IS NULL))
UNION ALL
SELECT 'version without a price change', item_id, valid_from::VARCHAR
FROM versions WHERE price = previous_price
UNION ALL
SELECT 'observed product without versions', t.item_id, NULL
FROM touched AS t ANTI JOIN dim_products AS d USING (item_id)
