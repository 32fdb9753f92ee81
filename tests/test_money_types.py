"""Money is DECIMAL from staging on (issue 12): exact sums never depend on casts repeated in the
SQL files, nor on the order rows arrive in."""
from __future__ import annotations

import re

from nelo_etl import sql, staging
from nelo_etl.config import load_config

from .conftest import copy_samples
from .test_staging import SAMPLE_NAME, query

MONEY_COLUMNS = {
    "stg_events": ["price", "price_in_usd", "item_revenue", "item_revenue_in_usd", "item_refund",
                   "item_refund_in_usd", "discount_value", "total_price", "installment_price"],
    "fct_event_items": ["price", "price_in_usd", "gross_value", "gross_value_usd", "line_revenue",
                        "line_revenue_usd", "discount_value"],
    "fct_orders": ["order_value", "order_value_usd", "gross_value", "discount_value"],
    "silver_session_features": ["cart_value", "cart_value_usd"],
    "fct_product_campaigns": ["gross_revenue", "discount_value", "net_revenue"],
    "dim_products": ["price", "price_in_usd"],
}


def test_every_money_column_of_staging_and_silver_is_decimal(project):
    copy_samples(project / "staging", SAMPLE_NAME)
    cfg = load_config(project / "config.json")
    assert staging.process_files(cfg, staging.staging_files(cfg), refresh_gold=False).ok
    types = dict(((t, c), d) for t, c, d in query(
        project, "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE NOT internal"))
    for table, columns in MONEY_COLUMNS.items():
        for column in columns:
            assert types[(table, column)].startswith("DECIMAL("), (table, column, types[(table, column)])


def test_no_sql_file_casts_money_to_decimal_again():
    files = sorted((sql.SQL_DIR / "silver").glob("*.sql")) + sorted((sql.SQL_DIR / "gold").glob("*.sql"))
    casts = [(f.name, m.group()) for f in files
             for m in re.finditer(r"AS DECIMAL\(\d+, ?6\)", sql.strip_comments(f.read_text(encoding="utf-8")))]
    assert casts == [], f"money is DECIMAL from staging on; these casts are redundant: {casts}"
