-- parsed_line_items: the items of the lines DuckDB parsed (parsed_lines.event_ok), typed.
-- Grain: one row per (line_number, item_index). Key: (line_number, item_index).
-- Loaded: appended to the parser's scratch table parsed_line_items by process_staging.py, one shard
--         of the lines (line_number % $shards = $shard) per core, before the batch's transaction; a
--         line with an item that is not item_ok goes to the Python parser whole.
-- Reads: parsed_lines (temp table from parsed_lines.sql).
-- Params: $shards, $shard, $experiment_pattern, $max_quantity, $max_installments, $max_items (wire.py's limits).
--
-- Flat on purpose: item fields are taken by position (the producer's order; any other order goes
-- to nelo_etl.wire), params are cut into rows and pivoted back by key, and every value is
-- converted by a macro of sql/staging/macros.sql over a flat column, which DuckDB vectorises (the
-- same logic as lambdas and maps over nested lists ran about 30 times slower). As in
-- parsed_lines.sql an item is item_ok only when its meaning is certain; nelo_etl.wire has the last
-- word on everything else.
WITH item_lists AS (
    SELECT line_number,
           -- [{item_id=..}, {item_id=..}]: cut between items on the literal "}, {item_id="; a list
           -- of another shape gives one null item, which is not ok, so its line goes to nelo_etl.wire
           CASE WHEN items_raw = '[]' THEN []::VARCHAR[]
                WHEN starts_with(items_raw, '[{item_id=') AND ends_with(items_raw, '}]')
                    THEN string_split(items_raw[11:-3], '}, {item_id=')
                ELSE [NULL]::VARCHAR[]
           END AS bodies
    FROM parsed_lines
    WHERE event_ok AND line_number % $shards = $shard
),
item_bodies AS (
    SELECT line_number,
           unnest(bodies) AS body,          -- the item without its leading "item_id="
           unnest(range(len(bodies)))::INTEGER AS item_index,
           len(bodies)::INTEGER AS item_count
    FROM item_lists
),
-- item_params comes last, as a [..] list; the scalar fields before it hold no bracket
item_parts AS (
    SELECT line_number, item_index, item_count, body,
           strpos(body, ', item_params=[') AS params_at
    FROM item_bodies
),
scalar_parts AS (
    SELECT line_number, item_index, item_count,
           CASE WHEN params_at > 0 THEN body[:params_at - 1] END AS scalars,
           CASE WHEN params_at > 0 THEN body[params_at + 14:] END AS item_params
    FROM item_parts
),
-- The fast path takes an item whose 27 keys stand in the producer's order, each once; any other
-- item (keys missing, moved, repeated, unknown) sends its line to nelo_etl.wire, which reads any
-- order. Fields are cut on "=" (a literal split, some 10 times faster than a regular expression
-- over the keys). A key is never followed by a space, so an "=" after a space is a value's own and
-- is shielded with chr(30) first (restored in every value). With no other "=" inside a value,
-- piece k is "<value k>, <key k+1>", so 26 pieces that each end with the expected next key are
-- exactly the contract's split on ", <key>=", in order. A value holding any other "=", a bracket
-- or chr(30) is left to nelo_etl.wire.
fields AS (
    SELECT line_number, item_index, item_count, item_params,
           coalesce(strpos(scalars, '{') = 0 AND strpos(scalars, '}') = 0 AND strpos(scalars, '[') = 0
                    AND strpos(scalars, ']') = 0 AND strpos(scalars, chr(30)) = 0, false) AS plain,
           string_split(replace(scalars, ' =', ' ' || chr(30)), '=') AS t
    FROM scalar_parts
),
raw_items AS (
    SELECT line_number, item_index, item_count, item_params,
           coalesce(plain AND len(t) = 26
               AND ends_with(t[1], ', item_name') AND ends_with(t[2], ', item_brand') AND ends_with(t[3], ', item_variant')
               AND ends_with(t[4], ', item_category') AND ends_with(t[5], ', item_category2') AND ends_with(t[6], ', item_category3')
               AND ends_with(t[7], ', item_category4') AND ends_with(t[8], ', item_category5') AND ends_with(t[9], ', price_in_usd')
               AND ends_with(t[10], ', price') AND ends_with(t[11], ', quantity') AND ends_with(t[12], ', item_revenue_in_usd')
               AND ends_with(t[13], ', item_revenue') AND ends_with(t[14], ', item_refund_in_usd') AND ends_with(t[15], ', item_refund')
               AND ends_with(t[16], ', coupon') AND ends_with(t[17], ', affiliation') AND ends_with(t[18], ', location_id')
               AND ends_with(t[19], ', item_list_id') AND ends_with(t[20], ', item_list_name') AND ends_with(t[21], ', item_list_index')
               AND ends_with(t[22], ', promotion_id') AND ends_with(t[23], ', promotion_name') AND ends_with(t[24], ', creative_name')
               AND ends_with(t[25], ', creative_slot'), false) AS in_order,
           -- piece k without its trailing ", <key k+1>", its shielded "=" restored
           replace(t[1][:-12], chr(30), '=') AS item_id,
           replace(t[2][:-13], chr(30), '=') AS item_name,
           replace(t[3][:-15], chr(30), '=') AS item_brand,
           replace(t[4][:-16], chr(30), '=') AS item_variant,
           replace(t[5][:-17], chr(30), '=') AS item_category,
           replace(t[6][:-17], chr(30), '=') AS item_category2,
           replace(t[7][:-17], chr(30), '=') AS item_category3,
           replace(t[8][:-17], chr(30), '=') AS item_category4,
           replace(t[9][:-15], chr(30), '=') AS item_category5,
           replace(t[10][:-8], chr(30), '=') AS price_in_usd,
           replace(t[11][:-11], chr(30), '=') AS price,
           replace(t[12][:-22], chr(30), '=') AS quantity,
           replace(t[13][:-15], chr(30), '=') AS item_revenue_in_usd,
           replace(t[14][:-21], chr(30), '=') AS item_revenue,
           replace(t[15][:-14], chr(30), '=') AS item_refund_in_usd,
           replace(t[16][:-9], chr(30), '=') AS item_refund,
           replace(t[17][:-14], chr(30), '=') AS coupon,
           replace(t[18][:-14], chr(30), '=') AS affiliation,
           replace(t[19][:-15], chr(30), '=') AS location_id,
           replace(t[20][:-17], chr(30), '=') AS item_list_id,
           replace(t[21][:-18], chr(30), '=') AS item_list_name,
           replace(t[22][:-15], chr(30), '=') AS item_list_index,
           replace(t[23][:-17], chr(30), '=') AS promotion_id,
           replace(t[24][:-16], chr(30), '=') AS promotion_name,
           replace(t[25][:-16], chr(30), '=') AS creative_name,
           replace(t[26], chr(30), '=') AS creative_slot
    FROM fields
),
items AS MATERIALIZED (  -- read twice below: materialised, so the fields are split once
    SELECT line_number, item_index, item_count,
           in_order
             AND ga4_money_ok(price_in_usd)
             AND ga4_money_ok(price)
             AND ga4_money_ok(item_revenue_in_usd)
             AND ga4_money_ok(item_revenue)
             AND ga4_money_ok(item_refund_in_usd)
             AND ga4_money_ok(item_refund)
             AND ga4_integer_ok(quantity, $max_quantity)
             AND item_count <= $max_items AS fields_ok,
           ga4_text(item_id) AS item_id,
           ga4_text(item_name) AS item_name,
           ga4_text(item_brand) AS item_brand,
           ga4_text(item_variant) AS item_variant,
           ga4_text(item_category) AS item_category,
           ga4_text(item_category2) AS item_category2,
           ga4_text(item_category3) AS item_category3,
           ga4_text(item_category4) AS item_category4,
           ga4_text(item_category5) AS item_category5,
           ga4_text(coupon) AS coupon,
           ga4_text(affiliation) AS affiliation,
           ga4_text(location_id) AS location_id,
           ga4_text(item_list_name) AS item_list_name,
           ga4_text(item_list_index) AS item_list_index,
           ga4_text(promotion_id) AS promotion_id,
           ga4_text(promotion_name) AS promotion_name,
           ga4_text(creative_name) AS creative_name,
           ga4_text(creative_slot) AS creative_slot,
           -- a list id of (not set) is reported as the list (not set)
           CASE WHEN item_list_id IN ('null', '') THEN NULL ELSE item_list_id END AS item_list_id,
           ga4_money(price_in_usd) AS price_in_usd,
           ga4_money(price) AS price,
           ga4_money(item_revenue_in_usd) AS item_revenue_in_usd,
           ga4_money(item_revenue) AS item_revenue,
           ga4_money(item_refund_in_usd) AS item_refund_in_usd,
           ga4_money(item_refund) AS item_refund,
           ga4_integer(quantity, $max_quantity) AS quantity,
           item_params
    FROM raw_items
),
-- item_params: [{key=K, value={string_value=.., int_value=.., float_value=.., double_value=..}}, ...]
params_lists AS (
    SELECT line_number, item_index,
           -- the grammar leaves "}}, {key=" only between params: split on plain text
           string_split(item_params[7:-4], '}}, {key=') AS params
    FROM items
    WHERE item_params IS NOT NULL AND item_params <> '[]'
      AND regexp_full_match(item_params,
          '\[\{key=[^{}\[\]]*?, value=\{[^{}\[\]]*\}\}(, \{key=[^{}\[\]]*?, value=\{[^{}\[\]]*\}\})*\]')
),
param_rows AS (
    SELECT line_number, item_index,
           unnest(params) AS param,
           unnest(range(len(params))) AS param_index
    FROM params_lists
),
param_values AS (
    SELECT line_number, item_index, param_index,
           param[:strpos(param, ', value={') - 1] AS k,
           param[strpos(param, ', value={') + 9:] AS slots_text
    FROM param_rows
),
param_slots AS (
    SELECT line_number, item_index, param_index, k,
           string_split(slots_text, ', ') AS slot
    FROM param_values
),
param_typed AS MATERIALIZED (
    SELECT line_number, item_index, param_index, k,
           -- the fast path takes the four slots in order with no ", " inside a value (then nothing
           -- can be misread as a slot); the rest is left to nelo_etl.wire
           len(slot) = 4 AND starts_with(slot[1], 'string_value=') AND starts_with(slot[2], 'int_value=')
             AND starts_with(slot[3], 'float_value=') AND starts_with(slot[4], 'double_value=') AS slots_ok,
           -- the one set value of the four
           CASE WHEN slot[1][14:] <> 'null' THEN slot[1][14:] WHEN slot[2][11:] <> 'null' THEN slot[2][11:]
                WHEN slot[3][13:] <> 'null' THEN slot[3][13:] WHEN slot[4][14:] <> 'null' THEN slot[4][14:] END AS v
    FROM param_slots
),
params AS (
    SELECT line_number, item_index,
           count(*) = count(DISTINCT k) AND bool_and(slots_ok)
             AND bool_and(k NOT IN ('discountt', 'totalPrice', 'installment_price') OR ga4_money_ok(v))
             AND bool_and(k <> 'number_of_installments' OR ga4_integer_ok(v, $max_installments))
             AND bool_and(k <> 'in_stock' OR v IS NULL OR v IN ('0', '1', '(not set)', ''))
             AND bool_and(k <> 'discounts' OR v IS NULL OR regexp_full_match(v, '[ -~]*'))
             -- bool_and skips nulls: every test above is a non-null boolean
             AS params_ok,
           any_value(v) FILTER (WHERE k = 'in_stock') AS in_stock,
           any_value(v) FILTER (WHERE k = 'discounts') AS discounts,
           any_value(ga4_money(v)) FILTER (WHERE k = 'discountt') AS discount_value,
           any_value(ga4_money(v)) FILTER (WHERE k = 'totalPrice') AS total_price,
           any_value(ga4_integer(v, $max_installments)) FILTER (WHERE k = 'number_of_installments') AS installments,
           any_value(ga4_money(v)) FILTER (WHERE k = 'installment_price') AS installment_price,
           -- every other param is kept raw, in the order it came
           map_from_entries(list({'key': k, 'value': v} ORDER BY param_index)
               FILTER (WHERE k NOT IN ('in_stock', 'discounts', 'discountt', 'totalPrice',
                                       'number_of_installments', 'installment_price'))) AS item_params_extra
    FROM param_typed
    GROUP BY line_number, item_index
),
split_codes AS (
    SELECT i.*, p.params_ok, p.in_stock, p.discount_value, p.total_price, p.installments, p.installment_price,
           p.item_params_extra,
           -- pipe-separated, trimmed, empty ones dropped (the lambdas run only where there are codes)
           CASE WHEN p.discounts IS NULL OR p.discounts IN ('(not set)', '') THEN []::VARCHAR[]
                ELSE list_filter(list_transform(string_split(p.discounts, '|'), lambda c: trim(c)),
                                 lambda c: c <> '') END AS all_codes,
           coalesce(strpos(p.discounts, $experiment_pattern) > 0, false) AS has_arms
    FROM items AS i
    LEFT JOIN params AS p USING (line_number, item_index)
),
codes AS (
    SELECT * EXCLUDE (all_codes),
           -- repeats kept once, at the first position
           CASE WHEN len(all_codes) <= 1 THEN all_codes
                ELSE list_filter(all_codes, lambda c, i: list_position(all_codes, c) = i) END AS discount_codes
    FROM split_codes
)
SELECT line_number, item_index, item_count,
       fields_ok
         AND (item_params IS NULL OR item_params = '[]' OR params_ok IS NOT NULL)
         AND coalesce(params_ok, true) AS item_ok,
       item_id, item_name, item_brand, item_variant,
       item_category, item_category2, item_category3, item_category4, item_category5,
       coupon, affiliation, location_id, item_list_id, item_list_name, item_list_index,
       promotion_id, promotion_name, creative_name, creative_slot,
       item_refund, item_refund_in_usd, item_revenue, item_revenue_in_usd, price, price_in_usd,
       quantity,
       CASE WHEN in_stock IN ('0', '1') THEN in_stock = '1' END AS is_in_stock,
       discount_codes,
       CASE WHEN NOT has_arms THEN discount_codes
            ELSE list_filter(discount_codes, lambda c: strpos(c, $experiment_pattern) = 0) END AS campaign_codes,
       -- an arm is <pattern><EXPERIMENT>_<VARIANT>, the variant being the last "_" token; an arm
       -- without a variant token names the whole remainder as its experiment, variant "(not set)"
       CASE WHEN NOT has_arms THEN []::STRUCT(code VARCHAR, experiment_id VARCHAR, variant VARCHAR)[]
       ELSE list_transform(
           list_filter(discount_codes, lambda c: strpos(c, $experiment_pattern) > 0),
           lambda c: struct_pack(
               code := c,
               experiment_id := CASE WHEN regexp_full_match(c[strpos(c, $experiment_pattern) + length($experiment_pattern):], '.+_[^_]+')
                                     THEN regexp_extract(c[strpos(c, $experiment_pattern) + length($experiment_pattern):], '^(.+)_[^_]+$', 1)
                                     WHEN c[strpos(c, $experiment_pattern) + length($experiment_pattern):] <> ''
                                     THEN c[strpos(c, $experiment_pattern) + length($experiment_pattern):]
                                     ELSE c END,
               variant := CASE WHEN regexp_full_match(c[strpos(c, $experiment_pattern) + length($experiment_pattern):], '.+_[^_]+')
                               THEN regexp_extract(c[strpos(c, $experiment_pattern) + length($experiment_pattern):], '_([^_]+)$', 1)
                               ELSE '(not set)' END)) END AS experiment_arms,
       discount_value, total_price, installments, installment_price,
       item_params_extra
FROM codes
