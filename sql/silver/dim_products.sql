-- dim_products: each product's price history over event time (metrics.md: Product price history, SCD2).
-- Grain: one row per product version. Key: (item_id, valid_from).
-- Loaded: overwrite_from, per product the load $load_id observed: its versions are recomputed
--         from the version before the one in force at the batch's earliest observation (a late
--         observation can split that one, or end it), and earlier versions stay as they are.
--         With $load_id null (--rebuild) every product is recomputed from its first observation.
-- Reads: fct_event_items (the touched products' observations since the batch's earliest one),
--        dim_products (itself: where to restart, and the kept versions as seeds).
-- columns:
--   product_version_id: item_id @ valid_from in epoch microseconds
--   item_id: the product
--   item_name: the product's name in this version
--   price: the price of this version (MXN)
--   price_in_usd: the same in US dollars, as sent
--   version_number: 1 for the product's first price, then 2, 3, ...
--   valid_from: when this price took effect (the first event time that showed it, UTC)
--   valid_to: when the next version took effect; null for the current version
--   is_current: whether this is the current version
--   recomputed_from_ts: load metadata: from which time the last load recomputed this user and platform's rows
WITH touched AS (
    SELECT item_id, min(event_timestamp_us) AS first_new_us
    FROM fct_event_items
    WHERE ($load_id IS NULL OR first_load_id >= $load_id) AND item_id IS NOT NULL AND price IS NOT NULL
    GROUP BY item_id
),
kept_versions AS (
    SELECT d.item_id, date_diff('microsecond', TIMESTAMP '1970-01-01', d.valid_from) AS from_us, t.first_new_us
    FROM dim_products AS d
    JOIN touched AS t USING (item_id)
    WHERE $load_id IS NOT NULL
),
in_force AS (
    SELECT item_id, max(from_us) AS in_force_us FROM kept_versions WHERE from_us <= first_new_us GROUP BY item_id
),
restart AS (
    -- restart at the version before the one in force (its start is older than anything new);
    -- no such version: recompute the product from its first observation
    SELECT t.item_id,
           coalesce(max(k.from_us), -9223372036854775808)      AS restart_us
    FROM touched AS t
    LEFT JOIN in_force AS f USING (item_id)
    LEFT JOIN kept_versions AS k ON k.item_id = t.item_id AND k.from_us < f.in_force_us
    GROUP BY t.item_id
),
kept_count AS (
    SELECT r.item_id, count(k.from_us) AS versions_before
    FROM restart AS r
    LEFT JOIN kept_versions AS k ON k.item_id = r.item_id AND k.from_us < r.restart_us
    GROUP BY r.item_id
),
seeds AS (
    -- the kept versions from the restart point up to the batch's earliest observation, one row
    -- each: every instant inside a version has its price, so its first instant stands for all
    -- of them (version starts only depend on where the price changes); this keeps the read of
    -- observations to the batch's time span instead of the versions' whole lives
    SELECT d.item_id, date_diff('microsecond', TIMESTAMP '1970-01-01', d.valid_from) AS event_timestamp_us, NULL::VARCHAR AS event_id,
           NULL::INTEGER AS item_index, d.price, d.price_in_usd, d.item_name
    FROM dim_products AS d
    JOIN restart AS r USING (item_id)
    JOIN touched AS t USING (item_id)
    WHERE $load_id IS NOT NULL
      AND date_diff('microsecond', TIMESTAMP '1970-01-01', d.valid_from) >= r.restart_us AND date_diff('microsecond', TIMESTAMP '1970-01-01', d.valid_from) < t.first_new_us
),
observations AS (
    SELECT * FROM seeds
    UNION ALL
    SELECT i.item_id, i.event_timestamp_us, i.event_id, i.item_index, i.price, i.price_in_usd, i.item_name
    FROM fct_event_items AS i
    JOIN touched AS t ON i.item_id = t.item_id AND i.event_timestamp_us >= t.first_new_us
    WHERE i.price IS NOT NULL
),
per_instant AS (
    -- one observation per instant: the greatest event_id, and within an event its last item
    -- the columns by name: QUALIFY on SELECT * leaks a helper column when transpiled to Spark
    SELECT item_id, event_timestamp_us, event_id, item_index, price, price_in_usd, item_name
    FROM observations
    QUALIFY row_number() OVER (PARTITION BY item_id, event_timestamp_us ORDER BY event_id DESC, item_index DESC) = 1
),
changes AS (
    SELECT *, lag(price) OVER (PARTITION BY item_id ORDER BY event_timestamp_us) AS previous_price
    FROM per_instant
),
versions AS (
    -- a new version starts where the price differs from the version in force (A -> B -> A is three)
    SELECT item_id, event_timestamp_us AS from_us, price, price_in_usd, item_name
    FROM changes
    WHERE previous_price IS NULL OR price <> previous_price
)
SELECT
    v.item_id || '@' || v.from_us::VARCHAR                         AS product_version_id,
    v.item_id,
    v.item_name,                                                   -- as named when the version began
    v.price,
    v.price_in_usd,
    c.versions_before + row_number() OVER w                        AS version_number,
    make_timestamp(v.from_us)                                      AS valid_from,
    make_timestamp(lead(v.from_us) OVER w)                         AS valid_to,
    lead(v.from_us) OVER w IS NULL                                 AS is_current,
    make_timestamp(greatest(r.restart_us, -62135596800000000))    AS recomputed_from_ts  -- load metadata
FROM versions AS v
JOIN restart AS r USING (item_id)
JOIN kept_count AS c USING (item_id)
WINDOW w AS (PARTITION BY v.item_id ORDER BY v.from_us)
