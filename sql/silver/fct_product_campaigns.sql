-- fct_product_campaigns: product x campaign code: when the product carried the code in any
-- event, and what its purchased lines carrying the code sold (metrics.md:
-- vw_product_campaign_discounts). Money sums are exact (DECIMAL) so they never depend on the
-- order rows are added in.
-- Grain: one row per (item_id, campaign_id). Key: (item_id, campaign_id).
-- Loaded: overwrite the item_id partitions that load $load_id touched (all when null).
-- Reads: fct_event_items.
-- columns:
--   item_id: the product
--   campaign_id: the campaign code
--   first_seen_ts: first event time at which an item of the product carried the code (any event type, UTC)
--   last_seen_ts: last such event time (UTC)
--   units: quantity of the product's purchased lines carrying the code
--   gross_revenue: their price * quantity (MXN)
--   discount_value: their discount (MXN, null counts as 0)
--   net_revenue: their line revenue (MXN)
--   purchased_lines: purchase item rows of the product carrying the code
WITH touched AS (
    SELECT DISTINCT item_id FROM fct_event_items
    WHERE ($load_id IS NULL OR first_load_id >= $load_id) AND item_id IS NOT NULL AND array_length(campaign_codes) > 0
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
    coalesce(sum(price * quantity) FILTER (WHERE event_name = 'purchase'), 0)
                                                                                    AS gross_revenue,
    coalesce(sum(coalesce(discount_value, 0)) FILTER (WHERE event_name = 'purchase'), 0)
                                                                                    AS discount_value,
    coalesce(sum(line_revenue) FILTER (WHERE event_name = 'purchase'), 0)
                                                                                    AS net_revenue,
    count(*) FILTER (WHERE event_name = 'purchase')                                 AS purchased_lines
FROM lines
GROUP BY item_id, campaign_id
