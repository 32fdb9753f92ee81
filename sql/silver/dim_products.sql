-- dim_products: each product's price history over event time (metrics.md: Product price history, SCD2).
-- Grain: one row per product version. Key: (item_id, valid_from).
-- Loaded: overwrite the item_id partitions that load $load_id observed (all when null): a late
--         observation can split an old version, so a touched product's history is rebuilt whole.
-- Reads: fct_event_items.
WITH touched AS (
    SELECT DISTINCT item_id
    FROM fct_event_items
    WHERE ($load_id IS NULL OR first_load_id = $load_id) AND item_id IS NOT NULL
),
observations AS (
    SELECT i.item_id, i.event_timestamp_us, i.event_id, i.item_index, i.price, i.price_in_usd, i.item_name
    FROM fct_event_items AS i
    SEMI JOIN touched AS t ON i.item_id = t.item_id
    WHERE i.price IS NOT NULL
),
per_instant AS (
    -- one observation per instant: the greatest event_id, and within an event its last item
    SELECT *
    FROM observations
    QUALIFY row_number() OVER (PARTITION BY item_id, event_timestamp_us ORDER BY event_id DESC, item_index DESC) = 1
),
changes AS (
    SELECT *, lag(price) OVER (PARTITION BY item_id ORDER BY event_timestamp_us) AS previous_price
    FROM per_instant
),
versions AS (
    -- a new version starts where the price differs from the version in force (A -> B -> A is three)
    SELECT item_id, event_timestamp_us AS from_us, price, price_in_usd
    FROM changes
    WHERE previous_price IS NULL OR price <> previous_price
),
latest_name AS (
    SELECT item_id, item_name
    FROM observations
    WHERE item_name IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY event_timestamp_us DESC, event_id DESC, item_index) = 1
)
SELECT
    v.item_id || '@' || v.from_us::VARCHAR                         AS product_version_id,
    v.item_id,
    n.item_name,
    v.price,
    v.price_in_usd,
    row_number() OVER w                                            AS version_number,
    make_timestamp(v.from_us)                                      AS valid_from,
    make_timestamp(lead(v.from_us) OVER w)                         AS valid_to,
    lead(v.from_us) OVER w IS NULL                                 AS is_current
FROM versions AS v
LEFT JOIN latest_name AS n USING (item_id)
WINDOW w AS (PARTITION BY v.item_id ORDER BY v.from_us)
