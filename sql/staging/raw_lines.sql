-- raw_lines: a batch file's lines as text, numbered, for the DuckDB parser (parsed_lines.sql).
-- Grain: one row per non-blank line of the file. Key: line_number (1-based, as nelo_etl.wire counts).
-- Loaded: into the parser's scratch table raw_lines by process_staging.py, before the batch's
--         transaction; the parse then runs in shards (line_number % $shards) on every core.
-- Reads: the batch file at $source_path.
-- Params: $source_path.
SELECT ordinality::INTEGER AS line_number, line
FROM read_csv($source_path, columns = {'line': 'VARCHAR'}, delim = chr(1), quote = '', escape = '',
              header = false, auto_detect = false, strict_mode = false) WITH ORDINALITY
WHERE line IS NOT NULL AND regexp_matches(line, '[^\s]')
