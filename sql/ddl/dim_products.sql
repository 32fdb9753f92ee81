-- dim_products: the table behind sql/silver/dim_products.sql (which reads itself to know where a
-- product's history must be recomputed from). Grain: one row per product version.
-- Key: (item_id, valid_from).
CREATE TABLE IF NOT EXISTS dim_products (
    product_version_id  VARCHAR NOT NULL,
    item_id             VARCHAR NOT NULL,
    item_name           VARCHAR,
    price               DECIMAL(18, 6),
    price_in_usd        DECIMAL(18, 6),
    version_number      BIGINT,
    valid_from          TIMESTAMP NOT NULL,
    valid_to            TIMESTAMP,
    is_current          BOOLEAN,
    recomputed_from_ts  TIMESTAMP
);
