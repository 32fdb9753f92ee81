-- dim_users: the table behind sql/silver/dim_users.sql (which reads itself for what a user's
-- earlier events established, so its shape is declared here).
-- Grain: one row per user version. Key: (user_id, valid_from).
CREATE TABLE IF NOT EXISTS dim_users (
    user_id                VARCHAR NOT NULL,
    valid_from             TIMESTAMP NOT NULL,
    valid_to               TIMESTAMP,
    is_current             BOOLEAN,
    is_buyer               BOOLEAN,
    has_used_installments  BOOLEAN,
    first_seen_ts          TIMESTAMP,
    first_purchase_ts      TIMESTAMP,
    first_installment_ts   TIMESTAMP,
    platforms              VARCHAR[]
);
