-- parsed_items (DuckDB path): the accepted lines of parsed_lines with their items, one row per item row.
-- Grain: one row per (line_number, item_index); item_index null for an event without items.
-- Key: (line_number, item_index).
-- Loaded: appended to the temp table parsed_items, which stg_events.sql reads; the lines not
--         accepted are parsed by nelo_etl.wire and appended to the same table.
-- Reads: parsed_lines and parsed_line_items (temp tables; parsed_lines.accepted is set by
--        process_staging.py: event_ok and every item item_ok).
SELECT
    p.line_number,
    p.message_id,
    p.sent_timestamp_ms,
    p.receive_count,
    p.event_id,
    p.event_timestamp_us,
    p.user_id,
    p.event_name,
    p.platform,
    p.replay_timestamp,
    coalesce(it.item_count, 0) AS item_count,
    it.item_index,
    it.item_id, it.item_name, it.item_brand, it.item_variant,
    it.item_category, it.item_category2, it.item_category3, it.item_category4, it.item_category5,
    it.coupon, it.affiliation, it.location_id, it.item_list_id, it.item_list_name, it.item_list_index,
    it.promotion_id, it.promotion_name, it.creative_name, it.creative_slot,
    it.item_refund, it.item_refund_in_usd, it.item_revenue, it.item_revenue_in_usd, it.price, it.price_in_usd,
    it.quantity,
    it.is_in_stock,
    it.discount_codes, it.campaign_codes, it.experiment_arms,
    it.discount_value, it.total_price, it.installments, it.installment_price,
    it.item_params_extra,
    NULL::VARCHAR AS extra_fields,              -- lines with extra body fields take the Python path
    CASE WHEN coalesce(it.item_index, 0) = 0 THEN p.raw_body END AS raw_body
FROM parsed_lines AS p
LEFT JOIN parsed_line_items AS it USING (line_number)
WHERE p.accepted
