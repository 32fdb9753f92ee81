-- vw_gold_product_campaign_current_status: for each current campaign and product that carried it
-- in any event: the product's current price, whether it was discounted under the code on the
-- as-of date (the UTC date of the latest event), and whether its price changed during the campaign.
-- Grain: one row per (campaign_id, item_id). Loaded: view.
-- Reads: dim_campaigns, fct_product_campaigns, dim_products, fct_event_items.
-- columns:
--   campaign_id: a current campaign code
--   item_id: a product that carried the code in any event
--   current_price: the price of the product's current version (MXN)
--   has_discount_on_as_of_date: an item row of any event type, of the product, carrying the code, with discount_value > 0, on the as-of UTC date
--   max_discount_rate_on_as_of_date: max of discount_value / (price * quantity) over those rows; null when none
--   price_changed_during_campaign: the pair has a row in vw_gold_product_campaign_price_change_events
WITH current_pairs AS (
    SELECT c.campaign_id, pc.item_id, c.as_of_ts, c.first_event_ts, c.last_event_ts
    FROM dim_campaigns AS c
    JOIN fct_product_campaigns AS pc USING (campaign_id)
    WHERE c.is_current
),
as_of_rows AS (
    SELECT p.campaign_id, p.item_id,
           max(i.discount_value / nullif(i.price * i.quantity, 0)) AS max_rate
    FROM current_pairs AS p
    JOIN fct_event_items AS i
      ON i.item_id = p.item_id
     AND list_contains(i.campaign_codes, p.campaign_id)
     AND i.event_date = CAST(p.as_of_ts AS DATE)
     AND i.discount_value > 0
    GROUP BY p.campaign_id, p.item_id
),
changed AS (
    SELECT DISTINCT p.campaign_id, p.item_id
    FROM current_pairs AS p
    JOIN dim_products AS d
      ON d.item_id = p.item_id AND d.version_number > 1
     AND d.valid_from BETWEEN p.first_event_ts AND p.last_event_ts
)
SELECT
    p.campaign_id,
    p.item_id,
    d.price                                  AS current_price,
    r.item_id IS NOT NULL                    AS has_discount_on_as_of_date,
    r.max_rate                               AS max_discount_rate_on_as_of_date,
    ch.item_id IS NOT NULL                   AS price_changed_during_campaign
FROM current_pairs AS p
LEFT JOIN dim_products AS d ON d.item_id = p.item_id AND d.is_current
LEFT JOIN as_of_rows AS r ON r.campaign_id = p.campaign_id AND r.item_id = p.item_id
LEFT JOIN changed AS ch ON ch.campaign_id = p.campaign_id AND ch.item_id = p.item_id
