-- fct_event_items: the item rows of the deduplicated events, with line money worked out.
-- Grain: one row per item row. Key: (event_id, item_index).
-- Loaded: append, the item rows first staged by load $load_id (all when null).
-- Reads: stg_events.
-- columns:
--   event_id: the event's id: first 32 hex digits of the SHA-256 of its five identity fields
--   item_index: position of the item in the event's items text, from 0
--   event_ts: event time (UTC) of the item's event
--   event_timestamp_us: event time in epoch microseconds, as sent
--   event_date: UTC date of event_ts
--   user_id: the user of the item's event
--   platform: the platform of the item's event
--   event_name: the item's event's name
--   item_id: the product
--   item_name: the product's name as sent
--   item_brand: the product's brand as sent
--   item_category: the product's category as sent
--   price: unit price (MXN)
--   price_in_usd: unit price in US dollars, as sent
--   quantity: units
--   item_revenue: line revenue as sent (MXN); null when not sent
--   item_revenue_in_usd: line revenue in US dollars as sent; null when not sent
--   gross_value: price * quantity (MXN)
--   gross_value_usd: price_in_usd * quantity
--   line_revenue: item_revenue, else price * quantity (MXN)
--   line_revenue_usd: item_revenue_in_usd, else price_in_usd * quantity
--   discount_value: discount of the line (MXN), from the item params; null when not sent
--   total_price: total price of the line (MXN), from the item params
--   installments: number of installments the line is paid in
--   installment_price: price of one installment (MXN)
--   is_in_stock: whether the product was in stock
--   coupon: the coupon code carried by the item, if any
--   item_list_id: the list the item was shown in; null and (not set) are kept as sent
--   item_list_name: the list's name as sent
--   item_list_index: the item's position in the list
--   discount_codes: every discount code of the item, trimmed and deduplicated
--   campaign_codes: the discount codes that are campaigns (not experiment arms)
--   experiment_arms: the discount codes that are experiment arms: code, experiment_id and variant
--   first_load_id: load metadata: the etl_batches load that first saw the row
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
