-- vw_gold_product_campaign_price_change_events: price changes of products during campaigns they
-- carried: every version of a product that is not its first, where the product carried the code in
-- any event, with the change inside the campaign's window (bounds included).
-- Grain: one row per (campaign_id, item_id, change_ts). Loaded: view.
-- Reads: dim_products, dim_campaigns, fct_product_campaigns.
-- columns:
--   campaign_id: the campaign code
--   item_id: the product
--   change_ts: when the new price took effect (the new version's valid_from)
--   old_price: the price before (MXN)
--   new_price: the price after (MXN)
--   delta_pct: (new_price - old_price) / old_price, a fraction
--   is_current_campaign: the campaign's last event is within current_campaign_days of the as-of time
WITH changes AS (
    SELECT item_id, valid_from AS change_ts, price AS new_price,
           lag(price) OVER (PARTITION BY item_id ORDER BY valid_from) AS old_price,
           version_number
    FROM dim_products
)
SELECT
    c.campaign_id,
    ch.item_id,
    ch.change_ts,
    ch.old_price,
    ch.new_price,
    (ch.new_price - ch.old_price) / nullif(ch.old_price, 0)     AS delta_pct,
    c.is_current                                                AS is_current_campaign
FROM changes AS ch
JOIN fct_product_campaigns AS pc USING (item_id)
JOIN dim_campaigns AS c USING (campaign_id)
WHERE ch.version_number > 1
  AND ch.change_ts BETWEEN c.first_event_ts AND c.last_event_ts
