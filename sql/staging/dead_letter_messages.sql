-- dead_letter_messages: the batch's rejected lines with their reason codes.
-- Grain: one row per rejected line. Key: (source_sha256, line_number).
-- Loaded: merge by key into dead_letter_messages, in the batch's transaction.
-- Reads: rejected_lines (registered by process_staging.py). Params: $load_id, $batch_id, $source_file, $source_sha256.
SELECT
    $load_id        AS load_id,
    $batch_id       AS batch_id,
    $source_file    AS source_file,
    $source_sha256  AS source_sha256,
    line_number,
    message_id,
    reason,
    detail,
    raw_body
FROM rejected_lines
