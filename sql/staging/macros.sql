-- macros: how the DuckDB parser reads one GA4 / Java-toString value. Not a table: temp macros that
-- parsed_line_items.sql calls, created by process_staging.py before it parses a file.
-- Each mirrors nelo_etl.wire for the forms whose meaning is certain; a value in any other form
-- is "not ok", and its line is left to nelo_etl.wire.

-- null, GA4's (not set) and '' are nulls
CREATE OR REPLACE TEMP MACRO ga4_is_null(v) AS v IS NULL OR v IN ('null', '(not set)', '');

CREATE OR REPLACE TEMP MACRO ga4_text(v) AS CASE WHEN ga4_is_null(v) THEN NULL ELSE v END;

-- Java's numbers (899.0, 8.5E-4) or money text ($1,299.00)
CREATE OR REPLACE TEMP MACRO ga4_number(v) AS
    CASE WHEN ga4_is_null(v) THEN NULL
         WHEN regexp_full_match(v, '-?[0-9]+(\.[0-9]+)?([eE]-?[0-9]+)?') THEN TRY_CAST(v AS DOUBLE)
         WHEN regexp_full_match(v, '\$?[0-9][0-9,]*(\.[0-9]+)?') THEN TRY_CAST(replace(replace(v, '$', ''), ',', '') AS DOUBLE)
    END;

CREATE OR REPLACE TEMP MACRO ga4_number_ok(v) AS ga4_is_null(v) OR coalesce(isfinite(ga4_number(v)), false);

-- whole numbers written as plain digits (4.0 and 1.0E1 are left to the Python parser)
CREATE OR REPLACE TEMP MACRO ga4_integer(v) AS
    CASE WHEN ga4_is_null(v) THEN NULL WHEN regexp_full_match(v, '-?[0-9]{1,18}') THEN v::BIGINT END;

CREATE OR REPLACE TEMP MACRO ga4_integer_ok(v) AS ga4_is_null(v) OR ga4_integer(v) IS NOT NULL;
