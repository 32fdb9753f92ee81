-- fct_product_campaigns: product x campaign code: when the product carried the code in any
-- event, and what its purchased lines carrying the code sold (metrics.md:
-- vw_product_campaign_discounts). Money sums are exact (DECIMAL) so they never depend on the
-- order rows are added in.
-- Grain: one row per (item_id, campaign_id). Key: (item_id, campaign_id).
-- Loaded: merge by (item_id, campaign_id): each pair the item rows of load $load_id carry gets
--         its row so far (itself: this table) plus what those rows add. First/last times are a
--         min/max and the rest sums and counts, which add up in any order, and an item row is
--         new exactly once (staging drops known events), so a batch reads its own rows, not the
--         products' whole history. All rows when $load_id is null (the table is empty then).
-- Reads: fct_event_items, fct_product_campaigns (itself; shape in sql/ddl/).
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
WITH lines AS (
    SELECT i.item_id, unnest(i.campaign_codes) AS campaign_id, i.event_name, i.event_ts, i.quantity,
           i.price, i.discount_value, i.line_revenue
    FROM fct_event_items AS i
    WHERE ($load_id IS NULL OR i.first_load_id >= $load_id) AND i.item_id IS NOT NULL
      AND array_length(i.campaign_codes) > 0
),
added AS (
    SELECT
        item_id,
        campaign_id,
        min(event_ts)                                                               AS first_seen_ts,
        max(event_ts)                                                               AS last_seen_ts,
        coalesce(sum(quantity) FILTER (WHERE event_name = 'purchase'), 0)           AS units,
        coalesce(sum(price * quantity) FILTER (WHERE event_name = 'purchase'), 0)   AS gross_revenue,
        coalesce(sum(coalesce(discount_value, 0)) FILTER (WHERE event_name = 'purchase'), 0)
                                                                                    AS discount_value,
        coalesce(sum(line_revenue) FILTER (WHERE event_name = 'purchase'), 0)       AS net_revenue,
        count(*) FILTER (WHERE event_name = 'purchase')                             AS purchased_lines
    FROM lines
    GROUP BY item_id, campaign_id
)
SELECT
    a.item_id,
    a.campaign_id,
    least(a.first_seen_ts, p.first_seen_ts)                                         AS first_seen_ts,
    greatest(a.last_seen_ts, p.last_seen_ts)                                        AS last_seen_ts,
    CAST(a.units + coalesce(p.units, 0) AS BIGINT)                                  AS units,
    a.gross_revenue + coalesce(p.gross_revenue, 0)                                  AS gross_revenue,
    a.discount_value + coalesce(p.discount_value, 0)                                AS discount_value,
    a.net_revenue + coalesce(p.net_revenue, 0)                                      AS net_revenue,
    CAST(a.purchased_lines + coalesce(p.purchased_lines, 0) AS BIGINT)              AS purchased_lines
FROM added AS a
LEFT JOIN fct_product_campaigns AS p ON p.item_id = a.item_id AND p.campaign_id = a.campaign_id
