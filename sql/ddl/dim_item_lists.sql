-- dim_item_lists: the table behind sql/silver/dim_item_lists.sql (which reads itself to keep the
-- latest name, so its shape is declared here). Grain: one row per list. Key: item_list_id.
CREATE TABLE IF NOT EXISTS dim_item_lists (
    item_list_id          VARCHAR NOT NULL,
    item_list_name        VARCHAR,
    name_event_ts         TIMESTAMP,
    name_event_id         VARCHAR,
    name_item_index       INTEGER,
    first_impression_ts   TIMESTAMP,
    last_impression_ts    TIMESTAMP
);
