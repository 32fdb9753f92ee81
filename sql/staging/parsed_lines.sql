-- parsed_lines: a batch file's lines parsed by DuckDB itself (the fast path of the contract parser).
-- Grain: one row per non-blank line of the file. Key: line_number.
-- Loaded: appended to the parser's scratch table parsed_lines by process_staging.py, one shard of
--         the lines (line_number % $shards = $shard) per core, before the batch's transaction.
--         parsed_line_items.sql cuts the items of the lines with event_ok into item rows; a line is
--         accepted when event_ok and every one of its items parsed; the rest go to the Python parser.
-- Reads: raw_lines (raw_lines.sql).
-- Params: $shards, $shard, $min_ts_us, $max_ts_us, $max_skew_us, $min_sent_ms, $max_sent_ms.
--
-- It accepts a line only when every value is in a form whose meaning is certain (JSON integers,
-- printable ASCII names, no extra body fields, no duplicate JSON keys, ...; the items grammar is
-- checked by parsed_line_items.sql as it cuts the text).
-- Anything else is `event_ok = false` and nelo_etl.wire decides: it loads the line or
-- dead-letters it with its reason code. So both paths give the same rows
-- (tests/test_staging.py holds them equal) and reason codes come from one place.
-- One pass, no joins: a step that fails leaves its flag false and the later values null (each
-- CASE runs its branch only for the rows it selects, so no cast or JSON function sees bad input).
-- Each JSON text is read by as few calls as possible (several paths in one call): they dominate.
-- (DuckDB scans a table of up to 122,880 rows on one thread, so a batch is cut into shards by hand.)
WITH shard_lines AS (
    SELECT line_number, line FROM raw_lines WHERE line_number % $shards = $shard
),
envelopes AS (
    SELECT line_number, line,
           CASE WHEN json_valid(line) THEN json_type(line) = 'OBJECT' ELSE false END AS is_object
    FROM shard_lines
),
envelope_fields AS (
    SELECT line_number, is_object,
           CASE WHEN is_object THEN json_keys(line) END AS keys,
           -- MessageId, Body, Attributes, SentTimestamp, ApproximateReceiveCount
           CASE WHEN is_object THEN json_type(line, ['$.MessageId', '$.Body', '$.Attributes',
               '$.Attributes.SentTimestamp', '$.Attributes.ApproximateReceiveCount']) END AS types,
           CASE WHEN is_object THEN json_extract_string(line, ['$.MessageId', '$.Body',
               '$.Attributes.SentTimestamp', '$.Attributes.ApproximateReceiveCount']) END AS texts
    FROM envelopes
),
messages AS (
    SELECT line_number,
           coalesce(is_object
               AND len(keys) = len(list_distinct(keys))
               AND types[1] = 'VARCHAR' AND types[2] = 'VARCHAR'
               AND coalesce(types[3], 'OBJECT') = 'OBJECT'
               AND coalesce(types[4], 'VARCHAR') = 'VARCHAR'
               AND coalesce(types[5], 'VARCHAR') = 'VARCHAR', false) AS envelope_ok,
           texts[1] AS message_id, texts[2] AS body, texts[3] AS sent_text, texts[4] AS count_text
    FROM envelope_fields
),
bodies AS (
    SELECT line_number, message_id, body, sent_text, count_text,
           CASE WHEN envelope_ok AND json_valid(body) THEN json_type(body) = 'OBJECT' ELSE false END AS is_object
    FROM messages
),
body_fields AS (
    SELECT *,
           CASE WHEN is_object THEN json_keys(body) END AS keys,
           -- event_timestamp, user_id, event_name, platform, items, replay_timestamp
           CASE WHEN is_object THEN json_type(body, ['$.event_timestamp', '$.user_id', '$.event_name',
               '$.platform', '$.items', '$.replay_timestamp']) END AS types,
           CASE WHEN is_object THEN json_extract_string(body, ['$.event_timestamp', '$.user_id', '$.event_name',
               '$.platform', '$.items', '$.replay_timestamp']) END AS texts
    FROM bodies
),
events AS (
    SELECT line_number, message_id, body,
           coalesce(is_object
               AND len(keys) = len(list_distinct(keys))
               AND list_has_all(['event_timestamp', 'user_id', 'event_name', 'platform', 'items', 'replay_timestamp'], keys)
               -- SQS MessageIds are printable ASCII (UUIDs); anything else takes the Python path
               AND regexp_full_match(message_id, '[!-~]+')
               AND (sent_text IS NULL OR (regexp_full_match(sent_text, '[0-9]{1,15}')
                    AND TRY_CAST(sent_text AS BIGINT) >= $min_sent_ms AND TRY_CAST(sent_text AS BIGINT) < $max_sent_ms))
               AND (count_text IS NULL OR regexp_full_match(count_text, '[0-9]{1,9}'))
               AND types[1] IN ('BIGINT', 'UBIGINT') AND types[2] = 'VARCHAR' AND types[3] = 'VARCHAR'
               AND types[4] = 'VARCHAR' AND types[5] = 'VARCHAR'
               AND regexp_full_match(texts[1], '[0-9]{1,16}'), false) AS types_ok,
           sent_text, count_text,
           texts[1] AS ts_text, texts[2] AS user_id, texts[3] AS event_name, texts[4] AS platform_raw,
           texts[5] AS items_raw,
           CASE WHEN types[6] = 'VARCHAR' THEN texts[6] END AS replay_timestamp,
           types[6] IS NULL OR types[6] = 'NULL'
               OR (types[6] = 'VARCHAR' AND regexp_full_match(texts[6], '[ -~]*')) AS replay_ok
    FROM body_fields
),
checked AS (
    SELECT line_number, message_id, body, ts_text, user_id, event_name, platform_raw, items_raw, replay_timestamp,
           CASE WHEN types_ok THEN sent_text::BIGINT END AS sent_timestamp_ms,
           CASE WHEN types_ok THEN count_text::INTEGER END AS receive_count,
           coalesce(CASE WHEN types_ok THEN
               replay_ok
               AND ts_text::BIGINT >= $min_ts_us AND ts_text::BIGINT < $max_ts_us
               AND (sent_text IS NULL OR ts_text::BIGINT <= sent_text::BIGINT * 1000 + $max_skew_us)
               -- strings with a visible ASCII character are non-blank under any definition of blank
               AND regexp_matches(user_id, '[!-~]') AND regexp_matches(event_name, '[!-~]')
               AND regexp_full_match(platform_raw, '[ -~]*[!-~][ -~]*')
               -- the items text is checked as parsed_line_items.sql cuts it
           ELSE false END, false) AS event_ok
    FROM events
)
SELECT line_number,
       event_ok,
       CASE WHEN event_ok THEN message_id END AS message_id,
       CASE WHEN event_ok THEN sent_timestamp_ms END AS sent_timestamp_ms,
       CASE WHEN event_ok THEN receive_count END AS receive_count,
       CASE WHEN event_ok THEN
           substr(sha256(concat_ws(chr(31), ts_text, user_id, event_name, upper(platform_raw), items_raw)), 1, 32)
       END AS event_id,
       CASE WHEN event_ok THEN ts_text::BIGINT END AS event_timestamp_us,
       CASE WHEN event_ok THEN user_id END AS user_id,
       CASE WHEN event_ok THEN event_name END AS event_name,
       CASE WHEN event_ok THEN upper(platform_raw) END AS platform,
       CASE WHEN event_ok THEN replay_timestamp END AS replay_timestamp,
       CASE WHEN event_ok THEN body END AS raw_body,
       CASE WHEN event_ok THEN items_raw END AS items_raw
FROM checked
