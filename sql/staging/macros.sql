-- macros: how the DuckDB parser reads one GA4 / Java-toString value. Not a table: temp macros that
-- parsed_line_items.sql calls, created by process_staging.py before it parses a file.
-- Each mirrors nelo_etl.wire for the forms whose meaning is certain; a value in any other form
-- is "not ok", and its line is left to nelo_etl.wire.

-- null, GA4's (not set) and '' are nulls
CREATE OR REPLACE TEMP MACRO ga4_is_null(v) AS v IS NULL OR v IN ('null', '(not set)', '');

CREATE OR REPLACE TEMP MACRO ga4_text(v) AS CASE WHEN ga4_is_null(v) THEN NULL ELSE v END;

-- Money as DECIMAL(18, 6) (wire.parse_money): Java's numbers (899.0, 8.5E-4) or "$" money text with
-- thousands groups of exactly three ($1,299.00). The cast rounds half away from zero to six places,
-- as wire.py does, and gives null at 10^12 or more: such a value is "not ok" and wire.py rejects it.
-- Currency codes and negative money text are left to wire.py.
CREATE OR REPLACE TEMP MACRO ga4_money(v) AS
    CASE WHEN ga4_is_null(v) THEN NULL
         WHEN regexp_full_match(v, '-?[0-9]+(\.[0-9]+)?([eE]-?[0-9]+)?') THEN TRY_CAST(v AS DECIMAL(18, 6))
         WHEN regexp_full_match(v, '\$?([0-9]{1,3}(,[0-9]{3})+|[0-9]+)(\.[0-9]+)?')
             THEN TRY_CAST(replace(replace(v, '$', ''), ',', '') AS DECIMAL(18, 6))
    END;

CREATE OR REPLACE TEMP MACRO ga4_money_ok(v) AS ga4_is_null(v) OR ga4_money(v) IS NOT NULL;

-- whole numbers written as plain digits, at most `lim` in absolute value (wire.INTEGER_LIMITS);
-- 4.0 and 1.0E1 are left to the Python parser
CREATE OR REPLACE TEMP MACRO ga4_integer(v, lim) AS
    CASE WHEN ga4_is_null(v) THEN NULL
         WHEN regexp_full_match(v, '-?[0-9]{1,18}') AND abs(TRY_CAST(v AS BIGINT)) <= lim THEN v::BIGINT END;

CREATE OR REPLACE TEMP MACRO ga4_integer_ok(v, lim) AS ga4_is_null(v) OR ga4_integer(v, lim) IS NOT NULL;
