-- dim_dates: the table behind sql/silver/dim_dates.sql (which reads itself to extend the
-- calendar, so its shape is declared here). Grain: one row per date. Key: date_day.
CREATE TABLE IF NOT EXISTS dim_dates (
    date_day         DATE NOT NULL,
    year             BIGINT,
    month            BIGINT,
    day_of_month     BIGINT,
    iso_day_of_week  BIGINT,
    is_weekend       BOOLEAN,
    year_month       VARCHAR
);
