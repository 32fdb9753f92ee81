-- parsed_lines: a batch file parsed by DuckDB itself (the fast path of the contract parser).
-- Grain: one row per non-blank line of the file. Key: line_number.
-- Loaded: into the temp table parsed_lines by process_staging.py, inside the batch's transaction;
--         accepted lines are unnested into parsed_items, the rest go to the Python contract parser.
-- Reads: the batch file at $source_path. Params: $source_path, $experiment_pattern, $min_ts_us,
--        $max_ts_us, $max_skew_us.
--
-- It accepts a line only when every value is in a form whose meaning is certain (JSON integers,
-- Java numbers, "$1,299.00" money, 0/1 stock flags, printable-ASCII codes, no extra body fields,
-- no duplicate JSON keys, ...). Anything else is `accepted = false` and nelo_etl.wire decides:
-- it loads the line or dead-letters it with its reason code. So both paths give the same rows
-- (tests/test_staging_parsers.py holds them equal) and reason codes come from one place.
WITH raw_lines AS (
    SELECT ordinality::INTEGER AS line_number, line
    FROM read_csv($source_path, columns = {'line': 'VARCHAR'}, delim = chr(1), quote = '', escape = '',
                  header = false, auto_detect = false, strict_mode = false) WITH ORDINALITY
    WHERE line IS NOT NULL AND regexp_matches(line, '[^\s]')
),
envelopes AS (
    SELECT line_number, line,
           json_valid(line) AND json_type(line) = 'OBJECT' AS is_object
    FROM raw_lines
),
envelope_fields AS (
    SELECT line_number, line,
           is_object
             AND len(json_keys(line)) = len(list_distinct(json_keys(line)))
             AND json_type(line, '$.MessageId') = 'VARCHAR'
             AND json_type(line, '$.Body') = 'VARCHAR'
             AND coalesce(json_type(line, '$.Attributes'), 'OBJECT') = 'OBJECT'
             AND coalesce(json_type(line, '$.Attributes.SentTimestamp'), 'VARCHAR') = 'VARCHAR'
             AND coalesce(json_type(line, '$.Attributes.ApproximateReceiveCount'), 'VARCHAR') = 'VARCHAR'
             AS envelope_ok
    FROM envelopes
),
messages AS (
    SELECT line_number, line,
           line ->> '$.MessageId' AS message_id,
           line ->> '$.Body' AS body,
           line ->> '$.Attributes.SentTimestamp' AS sent_text,
           line ->> '$.Attributes.ApproximateReceiveCount' AS count_text
    FROM envelope_fields
    WHERE envelope_ok
),
bodies AS (
    SELECT m.*,
           json_valid(body) AND json_type(body) = 'OBJECT'
             AND len(json_keys(body)) = len(list_distinct(json_keys(body)))
             AND list_has_all(['event_timestamp', 'user_id', 'event_name', 'platform', 'items', 'replay_timestamp'],
                              json_keys(body))
             AND message_id <> ''
             AND (sent_text IS NULL OR regexp_full_match(sent_text, '[0-9]{1,15}'))
             AND (count_text IS NULL OR regexp_full_match(count_text, '[0-9]{1,9}'))
             AS body_ok
    FROM messages AS m
),
events AS (
    SELECT line_number, line, message_id, body,
           sent_text::BIGINT AS sent_timestamp_ms,
           count_text::INTEGER AS receive_count,
           json_type(body, '$.event_timestamp') IN ('BIGINT', 'UBIGINT')
             AND json_type(body, '$.user_id') = 'VARCHAR'
             AND json_type(body, '$.event_name') = 'VARCHAR'
             AND json_type(body, '$.platform') = 'VARCHAR'
             AND json_type(body, '$.items') = 'VARCHAR' AS types_ok,
           body ->> '$.event_timestamp' AS ts_text,
           body ->> '$.user_id' AS user_id,
           body ->> '$.event_name' AS event_name,
           body ->> '$.platform' AS platform_raw,
           body ->> '$.items' AS items_raw,
           CASE WHEN json_type(body, '$.replay_timestamp') = 'VARCHAR' THEN body ->> '$.replay_timestamp' END
             AS replay_timestamp
    FROM bodies
    WHERE body_ok
),
checked AS (
    SELECT *,
           types_ok
             AND regexp_full_match(ts_text, '[0-9]{1,16}')
             AND ts_text::BIGINT >= $min_ts_us AND ts_text::BIGINT < $max_ts_us
             AND (sent_timestamp_ms IS NULL OR ts_text::BIGINT <= sent_timestamp_ms * 1000 + $max_skew_us)
             -- strings with a visible ASCII character are non-blank under any definition of blank
             AND regexp_matches(user_id, '[!-~]') AND regexp_matches(event_name, '[!-~]')
             AND regexp_full_match(platform_raw, '[ -~]*[!-~][ -~]*')
             -- the items grammar: [{..}, {..}] with at most one [..] list of {key=.., value={..}} per item
             AND regexp_full_match(items_raw,
                 '\[(\{[^{}\[\]]+(\[(\{key=[^{}\[\]]*?, value=\{[^{}\[\]]*\}\}(, \{key=[^{}\[\]]*?, value=\{[^{}\[\]]*\}\})*)?\][^{}\[\]]*)?\}(, \{[^{}\[\]]+(\[(\{key=[^{}\[\]]*?, value=\{[^{}\[\]]*\}\}(, \{key=[^{}\[\]]*?, value=\{[^{}\[\]]*\}\})*)?\][^{}\[\]]*)?\})*)?\]')
             AS event_ok
    FROM events
),
split_items AS (
    SELECT *,
           -- the grammar above leaves "}, {" only between items and inside item_params, where it
           -- always reads "}}, {key=": shield those, then split on plain text (no regex needed)
           CASE WHEN items_raw = '[]' THEN []::VARCHAR[]
                ELSE list_transform(string_split(replace(items_raw[3:-3], '}}, {key=', '}}' || chr(29) || '{key='), '}, {'),
                                    lambda b: replace(b, chr(29), ', '))
           END AS item_bodies,
    FROM checked
    WHERE event_ok
),
item_fields AS (
    SELECT line_number,
           list_transform(item_bodies, lambda b, i: struct_pack(
               item_index := (i - 1)::INTEGER,
               starts_ok := regexp_matches(b, '^(item_id|item_name|item_brand|item_variant|item_category|item_category2|item_category3|item_category4|item_category5|price_in_usd|price|quantity|item_revenue_in_usd|item_revenue|item_refund_in_usd|item_refund|coupon|affiliation|location_id|item_list_id|item_list_name|item_list_index|promotion_id|promotion_name|creative_name|creative_slot|item_params)='),
               fields := list_transform(
                   string_split(regexp_replace(b,
                       ', ((item_id|item_name|item_brand|item_variant|item_category|item_category2|item_category3|item_category4|item_category5|price_in_usd|price|quantity|item_revenue_in_usd|item_revenue|item_refund_in_usd|item_refund|coupon|affiliation|location_id|item_list_id|item_list_name|item_list_index|promotion_id|promotion_name|creative_name|creative_slot|item_params)=)',
                       chr(31) || '\1', 'g'), chr(31)),
                   lambda f: struct_pack(k := split_part(f, '=', 1), v := f[strpos(f, '=') + 1:]))
           )) AS raw_items
    FROM split_items
),
item_maps AS (
    SELECT line_number,
           list_transform(raw_items, lambda it: struct_pack(
               item_index := it.item_index,
               ok := it.starts_ok AND len(it.fields) = len(list_distinct(list_transform(it.fields, lambda f: f.k))),
               m := map_from_entries(list_transform(it.fields, lambda f: (f.k, f.v)))
           )) AS items
    FROM item_fields
),
item_params AS (
    SELECT line_number,
           list_transform(items, lambda it: struct_pack(
               item_index := it.item_index, ok := it.ok, m := it.m,
               params_ok := it.m['item_params'] IS NULL
                   OR regexp_full_match(it.m['item_params'],
                        '\[(\{key=[^{}\[\]]*?, value=\{[^{}\[\]]*\}\}(, \{key=[^{}\[\]]*?, value=\{[^{}\[\]]*\}\})*)?\]'),
               params := list_transform(
                   list_zip(regexp_extract_all(coalesce(it.m['item_params'], ''), '\{key=([^{}\[\]]*?), value=\{([^{}\[\]]*)\}\}', 1),
                            regexp_extract_all(coalesce(it.m['item_params'], ''), '\{key=([^{}\[\]]*?), value=\{([^{}\[\]]*)\}\}', 2)),
                   lambda kv: struct_pack(
                       k := kv[1],
                       slots_ok := regexp_full_match(kv[2], 'string_value=.*, int_value=.*, float_value=.*, double_value=.*')
                                   AND len(regexp_extract_all(kv[2], ', (string_value|int_value|float_value|double_value)=')) = 3,
                       slots := regexp_extract(kv[2], '^string_value=(.*), int_value=(.*), float_value=(.*), double_value=(.*)$',
                                               ['s', 'i', 'f', 'd'])))
           )) AS items
    FROM item_maps
),
item_values AS (
    SELECT line_number,
           list_transform(items, lambda it: struct_pack(
               item_index := it.item_index, m := it.m,
               ok := it.ok AND it.params_ok
                     AND len(it.params) = len(list_distinct(list_transform(it.params, lambda p: p.k)))
                     AND list_bool_and(list_transform(it.params, lambda p: p.slots_ok)),
               pv := map_from_entries(list_transform(it.params, lambda p: (p.k,
                       CASE WHEN p.slots.s <> 'null' THEN p.slots.s WHEN p.slots.i <> 'null' THEN p.slots.i
                            WHEN p.slots.f <> 'null' THEN p.slots.f WHEN p.slots.d <> 'null' THEN p.slots.d END))),
               extra := list_filter(it.params, lambda p: p.k NOT IN
                       ('in_stock', 'discounts', 'discountt', 'totalPrice', 'number_of_installments', 'installment_price'))
           )) AS items
    FROM item_params
),
typed AS (
    SELECT line_number,
           list_transform(items, lambda it: struct_pack(
               item_index := it.item_index, m := it.m, pv := it.pv, ok := it.ok, extra := it.extra,
               -- numbers: Java's (899.0, 8.5E-4) or money text ($1,299.00); null, (not set) and '' are null
               nums := list_transform([it.m['price_in_usd'], it.m['price'], it.m['item_revenue_in_usd'], it.m['item_revenue'],
                                       it.m['item_refund_in_usd'], it.m['item_refund'], it.pv['discountt'],
                                       it.pv['totalPrice'], it.pv['installment_price']], lambda v:
                   CASE WHEN v IS NULL OR v IN ('null', '(not set)', '') THEN struct_pack(ok := true, x := NULL::DOUBLE)
                        WHEN regexp_full_match(v, '-?[0-9]+(\.[0-9]+)?([eE]-?[0-9]+)?')
                             THEN struct_pack(ok := isfinite(v::DOUBLE), x := v::DOUBLE)
                        WHEN regexp_full_match(v, '\$?[0-9][0-9,]*(\.[0-9]+)?')
                             THEN struct_pack(ok := true, x := replace(replace(v, '$', ''), ',', '')::DOUBLE)
                        ELSE struct_pack(ok := false, x := NULL::DOUBLE) END),
               ints := list_transform([it.m['quantity'], it.pv['number_of_installments']], lambda v:
                   CASE WHEN v IS NULL OR v IN ('null', '(not set)', '') THEN struct_pack(ok := true, n := NULL::BIGINT)
                        WHEN regexp_full_match(v, '-?[0-9]{1,18}') THEN struct_pack(ok := true, n := v::BIGINT)
                        ELSE struct_pack(ok := false, n := NULL::BIGINT) END),
               stock := it.pv['in_stock'],
               codes := CASE WHEN it.pv['discounts'] IS NULL OR it.pv['discounts'] IN ('(not set)', '') THEN []::VARCHAR[]
                             ELSE list_transform(string_split(it.pv['discounts'], '|'), lambda c: trim(c)) END,
               codes_ok := it.pv['discounts'] IS NULL OR regexp_full_match(it.pv['discounts'], '[ -~]*')
           )) AS items
    FROM item_values
),
final_items AS (
    SELECT line_number,
           coalesce(list_bool_and(list_transform(items, lambda it:
               it.ok AND it.codes_ok
               AND list_bool_and(list_transform(it.nums, lambda n: n.ok))
               AND list_bool_and(list_transform(it.ints, lambda n: n.ok))
               AND (it.stock IS NULL OR it.stock IN ('0', '1', '(not set)', '')))), true) AS items_ok,
           list_transform(items, lambda it: struct_pack(
               item_index := it.item_index,
               item_id := CASE WHEN it.m['item_id'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['item_id'] END,
               item_name := CASE WHEN it.m['item_name'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['item_name'] END,
               item_brand := CASE WHEN it.m['item_brand'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['item_brand'] END,
               item_variant := CASE WHEN it.m['item_variant'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['item_variant'] END,
               item_category := CASE WHEN it.m['item_category'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['item_category'] END,
               item_category2 := CASE WHEN it.m['item_category2'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['item_category2'] END,
               item_category3 := CASE WHEN it.m['item_category3'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['item_category3'] END,
               item_category4 := CASE WHEN it.m['item_category4'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['item_category4'] END,
               item_category5 := CASE WHEN it.m['item_category5'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['item_category5'] END,
               coupon := CASE WHEN it.m['coupon'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['coupon'] END,
               affiliation := CASE WHEN it.m['affiliation'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['affiliation'] END,
               location_id := CASE WHEN it.m['location_id'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['location_id'] END,
               -- a list id of (not set) is reported as the list (not set)
               item_list_id := CASE WHEN it.m['item_list_id'] IN ('null', '') THEN NULL ELSE it.m['item_list_id'] END,
               item_list_name := CASE WHEN it.m['item_list_name'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['item_list_name'] END,
               item_list_index := CASE WHEN it.m['item_list_index'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['item_list_index'] END,
               promotion_id := CASE WHEN it.m['promotion_id'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['promotion_id'] END,
               promotion_name := CASE WHEN it.m['promotion_name'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['promotion_name'] END,
               creative_name := CASE WHEN it.m['creative_name'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['creative_name'] END,
               creative_slot := CASE WHEN it.m['creative_slot'] IN ('null', '(not set)', '') THEN NULL ELSE it.m['creative_slot'] END,
               item_refund := it.nums[6].x, item_refund_in_usd := it.nums[5].x,
               item_revenue := it.nums[4].x, item_revenue_in_usd := it.nums[3].x,
               price := it.nums[2].x, price_in_usd := it.nums[1].x,
               quantity := it.ints[1].n,
               is_in_stock := CASE WHEN it.stock IN ('0', '1') THEN it.stock = '1' END,
               discount_codes := list_filter(it.codes, lambda c, i: c <> '' AND list_position(it.codes, c) = i),
               campaign_codes := list_filter(it.codes, lambda c, i: c <> '' AND list_position(it.codes, c) = i
                                                                 AND strpos(c, $experiment_pattern) = 0),
               experiment_arms := list_transform(
                   list_filter(it.codes, lambda c, i: c <> '' AND list_position(it.codes, c) = i
                                                      AND strpos(c, $experiment_pattern) > 0),
                   lambda c: struct_pack(
                       code := c,
                       experiment_id := CASE WHEN regexp_full_match(c[strpos(c, $experiment_pattern) + length($experiment_pattern):], '.+_[^_]+')
                                             THEN regexp_extract(c[strpos(c, $experiment_pattern) + length($experiment_pattern):], '^(.+)_[^_]+$', 1)
                                             WHEN c[strpos(c, $experiment_pattern) + length($experiment_pattern):] <> ''
                                             THEN c[strpos(c, $experiment_pattern) + length($experiment_pattern):]
                                             ELSE c END,
                       variant := CASE WHEN regexp_full_match(c[strpos(c, $experiment_pattern) + length($experiment_pattern):], '.+_[^_]+')
                                       THEN regexp_extract(c[strpos(c, $experiment_pattern) + length($experiment_pattern):], '_([^_]+)$', 1)
                                       ELSE '(not set)' END)),
               discount_value := it.nums[7].x, total_price := it.nums[8].x,
               installments := it.ints[2].n, installment_price := it.nums[9].x,
               item_params_extra := CASE WHEN len(it.extra) = 0 THEN NULL ELSE map_from_entries(list_transform(it.extra, lambda p: (p.k,
                       CASE WHEN p.slots.s <> 'null' THEN p.slots.s WHEN p.slots.i <> 'null' THEN p.slots.i
                            WHEN p.slots.f <> 'null' THEN p.slots.f WHEN p.slots.d <> 'null' THEN p.slots.d END))) END
           )) AS items
    FROM typed
)
SELECT r.line_number,
       r.line,
       coalesce(s.event_ok AND f.items_ok, false) AS accepted,
       s.message_id, s.sent_timestamp_ms, s.receive_count,
       substr(sha256(concat_ws(chr(31), s.ts_text, s.user_id, s.event_name, upper(s.platform_raw), s.items_raw)), 1, 32)
           AS event_id,
       s.ts_text::BIGINT AS event_timestamp_us,
       s.user_id, s.event_name, upper(s.platform_raw) AS platform, s.replay_timestamp,
       s.items_raw, s.body AS raw_body,
       f.items
FROM raw_lines AS r
LEFT JOIN split_items AS s USING (line_number)
LEFT JOIN final_items AS f USING (line_number)
