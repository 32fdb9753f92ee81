-- fct_event_items: the item rows of the deduplicated events, with line money worked out.
-- Grain: one row per item row. Key: (event_id, item_index).
-- Loaded: append, the item rows first staged by load $load_id (all when null).
-- Reads: stg_events.
SELECT
    event_id,
    item_index,
    event_ts,
    event_timestamp_us,
    CAST(event_ts AS DATE)                              AS event_date,
    user_id,
    platform,
    event_name,
    item_id,
    item_name,
    item_brand,
    item_category,
    price,                                              -- local currency (MXN)
    price_in_usd,
    quantity,
    item_revenue,
    item_revenue_in_usd,
    price * quantity                                    AS gross_value,
    price_in_usd * quantity                             AS gross_value_usd,
    coalesce(item_revenue, price * quantity)            AS line_revenue,     -- metrics.md: line revenue
    coalesce(item_revenue_in_usd, price_in_usd * quantity) AS line_revenue_usd,
    discount_value,
    total_price,
    installments,
    installment_price,
    is_in_stock,
    coupon,
    item_list_id,
    item_list_name,
    item_list_index,
    discount_codes,
    campaign_codes,
    experiment_arms,
    load_id                                             AS first_load_id
FROM stg_events
WHERE ($load_id IS NULL OR load_id >= $load_id)
  AND item_index IS NOT NULL
