-- dim_dates: the calendar from the first to the last event date (UTC).
-- Grain: one row per date. Key: date_day.
-- Loaded: merge by date_day; a batch extends the calendar to cover its events.
-- Reads: fct_events (this load's events, or all when $load_id is null), dim_dates (itself).
-- columns:
--   date_day: the date (UTC)
--   year: its year
--   month: its month (1-12)
--   day_of_month: its day of the month
--   iso_day_of_week: ISO day of the week (1 Monday .. 7 Sunday)
--   is_weekend: Saturday or Sunday
--   year_month: YYYY-MM
WITH bounds AS (
    SELECT least(min(event_date), (SELECT min(date_day) FROM dim_dates))    AS first_day,
           greatest(max(event_date), (SELECT max(date_day) FROM dim_dates)) AS last_day
    FROM fct_events
    WHERE $load_id IS NULL OR first_load_id >= $load_id
)
SELECT
    CAST(d.day AS DATE)                     AS date_day,
    year(d.day)                             AS year,
    month(d.day)                            AS month,
    day(d.day)                              AS day_of_month,
    -- ISO day of week (Monday 1 .. Sunday 7), counted from a Monday: portable, unlike isodow()
    -- and dayofweek(), which mean different things in DuckDB and Spark
    (date_diff('day', DATE '2000-01-03', CAST(d.day AS DATE)) % 7 + 7) % 7 + 1           AS iso_day_of_week,
    (date_diff('day', DATE '2000-01-03', CAST(d.day AS DATE)) % 7 + 7) % 7 + 1 IN (6, 7) AS is_weekend,
    strftime(d.day, '%Y-%m')                AS year_month
FROM (
    -- one row per day of the span (a subquery over unnest: portable, unlike generate_series in FROM)
    SELECT unnest(generate_series(first_day, last_day, INTERVAL 1 DAY)) AS day
    FROM bounds
    WHERE first_day IS NOT NULL
) AS d
