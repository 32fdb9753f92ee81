-- vw_product_campaign_discounts: discounts by product and campaign.
-- Grain: one row per (item_id, campaign_id). Loaded: view. Reads: fct_product_campaigns.
-- columns:
--   item_id: the product
--   campaign_id: the campaign code
--   units: quantity of the product's purchased lines carrying the code
--   gross_revenue: their price * quantity (MXN)
--   discount_value: their discount (MXN)
--   discount_rate: discount_value / gross_revenue
--   first_seen: first event time at which an item of the product carried the code (any event type)
--   last_seen: last such event time
SELECT
    item_id,
    campaign_id,
    units,
    gross_revenue,
    discount_value,
    discount_value / nullif(gross_revenue, 0)    AS discount_rate,
    first_seen_ts                                AS first_seen,
    last_seen_ts                                 AS last_seen
FROM fct_product_campaigns
