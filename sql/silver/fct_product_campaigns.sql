-- fct_product_campaigns: product x campaign code: when the product carried the code in any
-- event, and what its purchased lines carrying the code sold (metrics.md:
-- vw_product_campaign_discounts). Money sums are exact (DECIMAL) so they never depend on the
-- order rows are added in.
-- Grain: one row per (item_id, campaign_id). Key: (item_id, campaign_id).
-- Loaded: overwrite the item_id partitions that load $load_id touched (all when null).
-- Reads: fct_event_items.
WITH touched AS (
    SELECT DISTINCT item_id FROM fct_event_items
    WHERE ($load_id IS NULL OR first_load_id = $load_id) AND item_id IS NOT NULL AND array_length(campaign_codes) > 0
),
lines AS (
    SELECT i.item_id, unnest(i.campaign_codes) AS campaign_id, i.event_name, i.event_ts, i.quantity,
           i.price, i.discount_value, i.line_revenue
    FROM fct_event_items AS i
    SEMI JOIN touched AS t ON i.item_id = t.item_id
)
SELECT
    item_id,
    campaign_id,
    min(event_ts)                                                                   AS first_seen_ts,
    max(event_ts)                                                                   AS last_seen_ts,
    coalesce(sum(quantity) FILTER (WHERE event_name = 'purchase'), 0)               AS units,
    coalesce(sum(CAST(price * quantity AS DECIMAL(38, 6))) FILTER (WHERE event_name = 'purchase'), 0)::DOUBLE
                                                                                    AS gross_revenue,
    coalesce(sum(CAST(coalesce(discount_value, 0) AS DECIMAL(38, 6))) FILTER (WHERE event_name = 'purchase'), 0)::DOUBLE
                                                                                    AS discount_value,
    coalesce(sum(CAST(line_revenue AS DECIMAL(38, 6))) FILTER (WHERE event_name = 'purchase'), 0)::DOUBLE
                                                                                    AS net_revenue,
    count(*) FILTER (WHERE event_name = 'purchase')                                 AS purchased_lines
FROM lines
GROUP BY item_id, campaign_id
