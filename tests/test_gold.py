"""Gold: the contract's views by name and column, documented in the database, computed by hand on
small inputs, readable by analysts who keep the file open while the job runs."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from nelo_etl import gold, simulate

from .conftest import CONTRACT, ROOT
from .silver_helpers import load, make_project
from .test_silver_models import MIN, T0, coded, item, line

SESSION_FEATURES = ["session_id", "user_id", "platform", "session_start_ts", "session_end_ts", "session_date",
                    "events_in_session", "has_list_view", "has_product_view", "has_checkout", "has_purchase",
                    "is_bounce", "is_abandoned_checkout", "cart_value", "cart_value_usd", "cart_products",
                    "is_high_value_abandon"]


LIST_COLUMNS = ["item_list_name", "list_impressions", "sessions_exposed", "sessions_with_click", "sessions_with_checkout", "sessions_with_purchase", "ctr_sessions", "purchase_rate_on_exposure", "purchase_rate_on_click", "attributed_revenue", "attributed_revenue_usd"]

#: metrics.md's catalogue, transcribed: view -> key and promised columns.
PROMISED = {
    "vw_platform_daily_performance_sessions": ["session_date", "platform", "users", "sessions", "events",
        "bounced_sessions", "bounce_rate", "sessions_with_list_view", "sessions_with_product_view",
        "sessions_with_checkout", "sessions_with_purchase", "view_to_checkout_rate", "checkout_to_purchase_rate",
        "view_to_purchase_rate", "orders", "revenue", "revenue_usd", "aov", "aov_usd", "installment_orders",
        "installment_adoption_rate"],
    "vw_list_daily_performance_sessions": ["session_date", "platform", "item_list_id"] + LIST_COLUMNS,
    "vw_growth_engagement_daily": ["session_date", "platform", "campaign_id", "item_list_id"] + LIST_COLUMNS,
    "vw_product_daily_performance": ["session_date", "platform", "item_id", "views", "sessions_viewed",
        "sessions_purchased", "sessions_viewed_and_purchased", "view_to_purchase_rate", "units", "revenue",
        "revenue_usd"],
    "vw_campaign_performance_daily": ["session_date", "platform", "campaign_id", "sessions_exposed", "users_exposed",
        "sessions_with_purchase", "session_conversion_rate", "orders", "units", "revenue", "revenue_usd",
        "discount_value"],
    "vw_experiment_performance": ["experiment_id", "variant", "platform", "users_exposed", "sessions_exposed",
        "sessions_with_purchase", "session_conversion_rate", "orders", "revenue", "aov", "aov_usd",
        "installment_adoption_rate"],
    "vw_coupon_impact": ["platform", "has_coupon", "orders", "revenue", "aov", "aov_usd"],
    "vw_abandoned_cart_aov": ["platform", "cohort", "users", "orders", "aov", "aov_usd", "abandoned_sessions",
        "avg_abandoned_cart_value", "avg_abandoned_cart_value_usd"],
    "vw_daily_purchase_discounts": ["order_date", "platform", "orders", "units", "gross_revenue", "discount_value",
        "net_revenue", "orders_with_discount"],
    "vw_product_campaign_discounts": ["item_id", "campaign_id", "units", "gross_revenue", "discount_value",
        "discount_rate", "first_seen", "last_seen"],
    "vw_installment_adoption_daily": ["order_date", "platform", "orders", "installment_orders",
        "installment_adoption_rate", "avg_installments", "users_adopting"],
    "vw_gold_product_campaign_price_change_events": ["campaign_id", "item_id", "change_ts", "old_price", "new_price",
        "delta_pct", "is_current_campaign"],
    "vw_gold_product_campaign_current_status": ["campaign_id", "item_id", "current_price",
        "has_discount_on_as_of_date", "max_discount_rate_on_as_of_date", "price_changed_during_campaign"],
    "gold_segment_bounce_v": SESSION_FEATURES,
    "gold_segment_checkout_abandon_v": SESSION_FEATURES,
    "gold_segment_high_value_abandon_v": SESSION_FEATURES,
    "gold_segment_abandon_no_purchase_since_v": ["user_id", "session_id", "platform", "last_abandon_ts",
        "cart_value", "cart_value_usd", "cart_products"],
    "gold_segment_abandon_then_bought_different_v": ["user_id", "platform", "session_id", "abandoned_products",
        "later_purchased_products"],
    "gold_user_features_v": ["user_id", "first_seen_ts", "last_seen_ts", "recency_days", "sessions",
        "sessions_last_30_days", "purchases", "purchases_last_30_days", "revenue_usd", "avg_order_value_usd",
        "abandoned_checkouts", "has_used_installments", "platforms", "last_platform"],
    "vw_experiment_srm": ["experiment_id", "variant", "users", "experiment_users", "arms", "expected_share",
        "observed_share", "users_in_several_arms", "chi_square", "degrees_of_freedom", "srm_flag"],
}


def test_the_transcription_names_exactly_the_contract_views():
    text = (CONTRACT / "metrics.md").read_text(encoding="utf-8")
    in_contract = set(re.findall(r"^\| `((?:vw|gold)_\w+)` \|", text, re.M))
    assert in_contract == set(PROMISED)
    for name, columns in PROMISED.items():       # every promised column is named on the view's row
        row = re.search(r"^\| `" + name + r"` \|([^\n]*)$", text, re.M).group(1)
        spelled = set(re.findall(r"`(\w+)`", row)) | ({"order_date"} if "order date" in row else set())
        if "the session's features" in row:
            spelled |= set(SESSION_FEATURES)
        if "the list view's columns" in row:
            spelled |= set(LIST_COLUMNS)
        assert set(columns) - {"first_seen", "last_seen"} <= spelled | {"first_seen", "last_seen"}, name


@pytest.fixture(scope="module")
def chaos_warehouse(tmp_path_factory):
    cfg = make_project(tmp_path_factory.mktemp("gold"))
    messages = simulate.Simulator(simulate.SimConfig.chaos(events=2500, seed=9, days=3)).messages()
    files = simulate.write_batches(messages, str(tmp_path_factory.mktemp("files")), batches=3)
    load(cfg, [Path(p) for p in files])
    return cfg


def test_every_contract_view_exists_with_its_columns(chaos_warehouse):
    con = duckdb.connect(str(gold.analytics_path(chaos_warehouse)), read_only=True)
    try:
        for name, columns in PROMISED.items():
            have = {r[0] for r in con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = $v",
                                              {"v": name}).fetchall()}
            assert have, f"missing view {name}"
            assert set(columns) <= have, f"{name} lacks {sorted(set(columns) - have)}"
    finally:
        con.close()


def test_every_view_and_column_is_documented_in_the_database(chaos_warehouse):
    for path in (chaos_warehouse.database_path, gold.analytics_path(chaos_warehouse)):
        con = duckdb.connect(str(path), read_only=True)
        try:
            undocumented_views = con.execute(
                "SELECT view_name FROM duckdb_views() WHERE NOT internal AND (comment IS NULL OR comment = '')"
            ).fetchall()
            undocumented = con.execute(
                "SELECT c.table_name, c.column_name FROM duckdb_columns() AS c JOIN duckdb_views() AS v "
                "ON v.view_name = c.table_name AND NOT v.internal WHERE c.comment IS NULL OR c.comment = ''").fetchall()
        finally:
            con.close()
        assert undocumented_views == [] and undocumented == []


def _view_oids(con) -> dict[str, int]:
    return dict(con.execute("SELECT view_name, view_oid FROM duckdb_views() WHERE NOT internal").fetchall())


def test_views_are_made_once_and_again_only_when_something_differs(chaos_warehouse, tmp_path, monkeypatch):
    """create_views skips a database that holds its views and comments already (about 0.15 s a
    run, twice); a dropped view, a comment changed or lost with its table, or another view SQL
    makes it write them all again."""
    copy = tmp_path / "w.duckdb"
    copy.write_bytes(Path(chaos_warehouse.database_path).read_bytes())
    con = duckdb.connect(str(copy))
    try:
        gold.create_views(con)
        assert gold.views_current(con)
        before = _view_oids(con)
        gold.create_views(con)
        assert _view_oids(con) == before                          # nothing replaced
        column = next(iter(gold.silver_docs()["fct_orders"][1]))
        coupon = next(v for v in gold.views() if v.name == "vw_coupon_impact")
        # an older release's create_views (by hand, or a rollback): another body, the same comments
        older_release = [("CREATE OR REPLACE VIEW vw_coupon_impact AS "
                          + gold.sql.strip_comments(coupon.select).replace("SELECT", "SELECT 2 AS older_column,", 1)),
                         f"COMMENT ON VIEW vw_coupon_impact IS {gold._quote(coupon.description)}",
                         *[f"COMMENT ON COLUMN vw_coupon_impact.{c} IS {gold._quote(t)}" for c, t in coupon.columns.items()]]
        for breakage in ("DROP VIEW vw_coupon_impact",
                         "COMMENT ON COLUMN vw_coupon_impact.platform IS 'stale'",
                         f"COMMENT ON COLUMN fct_orders.{column} IS 'stale'",
                         older_release,
                         "CREATE OR REPLACE TABLE fct_orders AS SELECT * FROM fct_orders"):   # comments lost
            for statement in [breakage] if isinstance(breakage, str) else breakage:
                con.execute(statement)
            assert not gold.views_current(con), breakage
            gold.create_views(con)
            assert gold.views_current(con), breakage
            assert _view_oids(con).keys() == before.keys() and _view_oids(con) != before
            before = _view_oids(con)
        assert ("older_column",) not in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'vw_coupon_impact'").fetchall()
        description = con.execute("SELECT comment FROM duckdb_tables() WHERE table_name = 'fct_orders'").fetchall()
        assert description == [(gold.silver_docs()["fct_orders"][0],)]
        # a changed view file: the fingerprint differs, so the views are made again
        real = gold.views()
        changed = [gold.View(v.name, v.select.replace("SELECT", "SELECT 1 AS probe_column,", 1)
                             if v.name == "vw_coupon_impact" else v.select, v.description, v.columns) for v in real]
        monkeypatch.setattr(gold, "views", lambda: changed)
        assert not gold.views_current(con)
        gold.create_views(con)
        assert ("probe_column",) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'vw_coupon_impact'").fetchall()
    finally:
        con.close()


def test_the_analytics_file_is_read_only(chaos_warehouse):
    path = gold.analytics_path(chaos_warehouse)
    assert path.stat().st_mode & 0o777 == 0o440
    con = duckdb.connect(str(path), read_only=True)
    try:
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE x (a INT)")
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        assert "stg_events" not in tables and "fct_events" in tables      # raw bodies stay in the warehouse
    finally:
        con.close()


def gold_of(tmp_path, lines: list[str]) -> duckdb.DuckDBPyConnection:
    cfg = make_project(tmp_path)
    path = tmp_path / "processing_batch_20251017T000000_g.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    load(cfg, [path])
    return duckdb.connect(str(gold.analytics_path(cfg)), read_only=True)


def inst_item(item_id: str, price: float, n: int, **fields) -> str:
    return simulate.item_text({"item_id": item_id, "price": price, "price_in_usd": price / 20, "quantity": 1,
                               **fields}, [simulate.param_text("number_of_installments", n, "int_value")])


def test_platform_daily_funnel_by_hand(tmp_path):
    lines = [
        # session 1 (u1): list, view, checkout, purchase of 2 x 100 with revenue 180, 6 installments
        line(T0, "view_item_list", [item("A", 100)]),
        line(T0 + MIN, "view_item", [item("A", 100)]),
        line(T0 + 2 * MIN, "begin_checkout", [item("A", 100, 2)]),
        line(T0 + 3 * MIN, "purchase", [inst_item("A", 100, 6, quantity=2, item_revenue=180.0, item_revenue_in_usd=9.0)]),
        # session 2 (u2): a bounce
        line(T0, "view_item_list", [item("A", 100)], user="u2"),
        # session 3 (u3): view and abandoned checkout
        line(T0, "view_item", [item("B", 50)], user="u3"),
        line(T0 + MIN, "begin_checkout", [item("B", 50)], user="u3"),
        # session 4 (u1 again, 2 hours later): a purchase without revenue fields: price * quantity
        line(T0 + 120 * MIN, "purchase", [item("B", 50, 3)]),
    ]
    con = gold_of(tmp_path, lines)
    row = con.execute("SELECT * FROM vw_platform_daily_performance_sessions").fetchall()
    cols = [d[0] for d in con.description]
    got = dict(zip(cols, row[0]))
    assert len(row) == 1
    expected = dict(users=3, sessions=4, events=8, bounced_sessions=2, bounce_rate=0.5, sessions_with_list_view=2,
                    sessions_with_product_view=2, sessions_with_checkout=2, sessions_with_purchase=2,
                    view_to_checkout_rate=1.0, checkout_to_purchase_rate=0.5, view_to_purchase_rate=0.5,
                    orders=2, revenue=330.0, revenue_usd=9.0 + 7.5, aov=165.0, aov_usd=8.25,
                    installment_orders=1, installment_adoption_rate=0.5)
    assert {k: got[k] for k in expected} == expected
    assert str(got["session_date"]) == "2025-10-17" and got["platform"] == "IOS"
    assert con.execute("SELECT has_coupon, orders, revenue, aov FROM vw_coupon_impact").fetchall() == \
        [(False, 2, 330.0, 165.0)]
    assert con.execute("SELECT cohort, users, orders, aov, abandoned_sessions, avg_abandoned_cart_value "
                       "FROM vw_abandoned_cart_aov ORDER BY cohort").fetchall() == [
        ("abandoner", 1, 0, None, 1, 50.0), ("non_abandoner", 2, 2, 165.0, 0, None)]
    assert con.execute("SELECT orders, installment_orders, installment_adoption_rate, avg_installments, "
                       "users_adopting FROM vw_installment_adoption_daily").fetchall() == [(2, 1, 0.5, 6.0, 1)]
    assert con.execute("SELECT user_id, cart_products FROM gold_segment_abandon_no_purchase_since_v").fetchall() == \
        [("u3", ["B"])]
    assert con.execute("SELECT count(*) FROM gold_segment_bounce_v").fetchall() == [(2,)]


def test_abandon_then_bought_something_else(tmp_path):
    lines = [line(T0, "begin_checkout", [item("A", 10)]),
             line(T0 + 60 * MIN, "purchase", [item("A", 10)], platform="ANDROID"),   # same product: not it
             line(T0 + 90 * MIN, "purchase", [item("C", 10), item("D", 5)], platform="ANDROID")]
    con = gold_of(tmp_path, lines)
    assert con.execute("SELECT user_id, platform, abandoned_products, later_purchased_products "
                       "FROM gold_segment_abandon_then_bought_different_v").fetchall() == \
        [("u1", "IOS", ["A"], ["C", "D"])]
    assert con.execute("SELECT count(*) FROM gold_segment_abandon_no_purchase_since_v").fetchall() == [(0,)]


def test_campaign_discount_and_price_change_views_by_hand(tmp_path):
    day = 86_400_000_000
    lines = [line(T0, "view_item", [coded("P", 100, "SALE")]),
             line(T0 + day, "purchase", [coded("P", 80, "SALE|NELO_XP_X_A", 2, 40.0, item_revenue=120.0)]),
             line(T0 + 2 * day, "view_item", [coded("P", 100, "SALE", discount=10.0)])]
    con = gold_of(tmp_path, lines)
    assert con.execute("SELECT item_id, campaign_id, units, gross_revenue, discount_value, discount_rate "
                       "FROM vw_product_campaign_discounts").fetchall() == [("P", "SALE", 2, 160.0, 40.0, 0.25)]
    assert con.execute("SELECT campaign_id, item_id, old_price, new_price, delta_pct, is_current_campaign "
                       "FROM vw_gold_product_campaign_price_change_events ORDER BY change_ts").fetchall() == [
        ("SALE", "P", 100.0, 80.0, -0.2, True), ("SALE", "P", 80.0, 100.0, 0.25, True)]
    assert con.execute("SELECT campaign_id, item_id, current_price, has_discount_on_as_of_date, "
                       "max_discount_rate_on_as_of_date, price_changed_during_campaign "
                       "FROM vw_gold_product_campaign_current_status").fetchall() == [
        ("SALE", "P", 100.0, True, 0.1, True)]
    assert con.execute("SELECT campaign_id, sessions_exposed, sessions_with_purchase, orders, units, revenue, "
                       "discount_value FROM vw_campaign_performance_daily ORDER BY session_date").fetchall() == [
        ("SALE", 1, 0, 0, 0, 0.0, 0.0), ("SALE", 1, 1, 1, 2, 120.0, 40.0), ("SALE", 1, 0, 0, 0, 0.0, 0.0)]
    assert con.execute("SELECT experiment_id, variant, sessions_exposed, orders, revenue, aov "
                       "FROM vw_experiment_performance").fetchall() == [("X", "A", 1, 1, 120.0, 120.0)]
    assert con.execute("SELECT orders, units, gross_revenue, discount_value, net_revenue, orders_with_discount "
                       "FROM vw_daily_purchase_discounts").fetchall() == [(1, 2, 160.0, 40.0, 120.0, 1)]


def test_list_and_growth_views_by_hand(tmp_path):
    lines = [line(T0, "view_item_list", [coded("A", 10, "SALE|NEW", item_list_id="l1", item_list_name="List one"),
                                         item("B", 10, item_list_id="l1")]),
             line(T0 + MIN, "view_item", [item("A", 10)]),
             line(T0 + 2 * MIN, "purchase", [item("A", 10, 2, item_revenue=18.0)]),
             line(T0, "view_item_list", [item("B", 10, item_list_id=None)], user="u2")]
    con = gold_of(tmp_path, lines)
    assert con.execute("SELECT item_list_id, item_list_name, list_impressions, sessions_exposed, sessions_with_click, "
                       "sessions_with_purchase, ctr_sessions, purchase_rate_on_click, attributed_revenue "
                       "FROM vw_list_daily_performance_sessions ORDER BY 1").fetchall() == [
        ("(not set)", None, 1, 1, 0, 0, 0.0, None, 0.0), ("l1", "List one", 2, 1, 1, 1, 1.0, 1.0, 18.0)]
    assert con.execute("SELECT campaign_id, item_list_id, list_impressions, sessions_with_click, attributed_revenue "
                       "FROM vw_growth_engagement_daily ORDER BY 1, 2").fetchall() == [
        ("NEW", "l1", 1, 1, 18.0), ("NONE", "(not set)", 1, 0, 0.0), ("NONE", "l1", 1, 0, 0.0),
        ("SALE", "l1", 1, 1, 18.0)]
    assert con.execute("SELECT item_id, views, sessions_viewed, sessions_purchased, view_to_purchase_rate, units, "
                       "revenue FROM vw_product_daily_performance").fetchall() == [("A", 1, 1, 1, 1.0, 2, 18.0)]


def test_user_features_by_hand(tmp_path):
    day = 86_400_000_000
    lines = [
        # u1, IOS: an abandoned checkout (session 1), then a 6-installment purchase 5 days later (session 2)
        line(T0, "view_item", [item("A", 100)]),
        line(T0 + MIN, "begin_checkout", [item("A", 100)]),
        line(T0 + 5 * day, "purchase", [inst_item("A", 100, 6)]),                         # 5.0 USD
        # u1, ANDROID, 35 days on: a purchase of 2 x 40 MXN (2 x 2.0 USD), then a view: its last event
        line(T0 + 35 * day, "purchase", [item("B", 40, 2)], platform="ANDROID"),         # 4.0 USD
        line(T0 + 35 * day + MIN, "view_item", [item("B", 40)], platform="ANDROID"),
        # u2: a session starting exactly at the as-of time minus 30 days (inside), and the newest event
        line(T0 + 10 * day, "view_item", [item("A", 100)], user="u2"),
        line(T0 + 40 * day, "view_item_list", [item("A", 100)], user="u2"),
        # u3: two events at the same instant on two platforms: the greater event_id names last_platform
        line(T0 + 20 * day, "view_item", [item("A", 100)], user="u3"),
        line(T0 + 20 * day, "view_item", [item("A", 100)], user="u3", platform="ANDROID"),
    ]
    con = gold_of(tmp_path, lines)
    cur = con.execute("SELECT * FROM gold_user_features_v ORDER BY user_id")
    cols = [d[0] for d in cur.description]
    rows = {r[0]: dict(zip(cols, r)) for r in cur.fetchall()}
    assert sorted(rows) == ["u1", "u2", "u3"]
    u1, u2, u3 = rows["u1"], rows["u2"], rows["u3"]
    as_of = T0 + 40 * day
    assert epoch_us(u1["first_seen_ts"]) == T0 and epoch_us(u1["last_seen_ts"]) == T0 + 35 * day + MIN
    assert u1["recency_days"] == pytest.approx((as_of - (T0 + 35 * day + MIN)) / day, abs=1e-12)
    assert {k: u1[k] for k in cols[4:]} == dict(
        sessions=3, sessions_last_30_days=1, purchases=2, purchases_last_30_days=1, revenue_usd=9.0,
        avg_order_value_usd=4.5, abandoned_checkouts=1, has_used_installments=True, platforms=["ANDROID", "IOS"],
        last_platform="ANDROID")
    assert {k: u2[k] for k in cols[3:]} == dict(
        recency_days=0.0, sessions=2, sessions_last_30_days=2, purchases=0, purchases_last_30_days=0,
        revenue_usd=0.0, avg_order_value_usd=None, abandoned_checkouts=0, has_used_installments=False,
        platforms=["IOS"], last_platform="IOS")
    ids = dict(con.execute("SELECT platform, event_id FROM fct_events WHERE user_id = 'u3'").fetchall())
    assert u3["last_platform"] == max(ids, key=ids.get) and u3["recency_days"] == 20.0
    assert u3["sessions"] == 2 and u3["sessions_last_30_days"] == 2 and u3["platforms"] == ["ANDROID", "IOS"]


def epoch_us(ts) -> int:
    from datetime import timezone
    return int(ts.replace(tzinfo=timezone.utc).timestamp() * 1_000_000)


def test_experiment_srm_by_hand(tmp_path):
    lines = [
        # experiment X: u1 first A then B; u2 one item listing B before A; u5 one event, B on item 0 and
        # A on item 1; u3, u4 only A. First arms: A = u1, u3, u4; B = u2, u5. Three users saw both.
        line(T0, "view_item", [coded("P", 10, "NELO_XP_X_A|NELO_XP_Y_C")]),
        line(T0 + MIN, "view_item", [coded("P", 10, "NELO_XP_X_B")]),
        line(T0, "view_item", [coded("P", 10, "SALE|NELO_XP_X_B|NELO_XP_X_A")], user="u2"),
        line(T0, "view_item", [coded("P", 10, "NELO_XP_X_A")], user="u3"),
        line(T0 + 2 * MIN, "view_item", [coded("P", 10, "NELO_XP_X_A")], user="u4"),
        line(T0, "view_item", [coded("P", 10, "NELO_XP_X_B"), coded("Q", 10, "NELO_XP_X_A")], user="u5"),
    ]
    # experiment Z: 20 users in A, 2 in B: far from an even split
    lines += [line(T0, "view_item", [coded("P", 10, "NELO_XP_Z_A")], user=f"z{n}") for n in range(20)]
    lines += [line(T0, "view_item", [coded("P", 10, "NELO_XP_Z_B")], user=f"y{n}") for n in range(2)]
    con = gold_of(tmp_path, lines)
    got = con.execute("SELECT experiment_id, variant, users, experiment_users, arms, expected_share, observed_share, "
                      "users_in_several_arms, chi_square, degrees_of_freedom, srm_flag "
                      "FROM vw_experiment_srm ORDER BY ALL").fetchall()
    x_chi = ((3 - 2.5) ** 2 + (2 - 2.5) ** 2) / 2.5          # 0.2
    z_chi = ((20 - 11) ** 2 + (2 - 11) ** 2) / 11            # 14.73 > 10.828 (p = 0.001, 1 degree of freedom)
    assert got == [
        ("X", "A", 3, 5, 2, 0.5, 0.6, 3, pytest.approx(x_chi), 1, False),
        ("X", "B", 2, 5, 2, 0.5, 0.4, 3, pytest.approx(x_chi), 1, False),
        ("Y", "C", 1, 1, 1, 1.0, 1.0, 0, 0.0, 0, None),
        ("Z", "A", 20, 22, 2, 0.5, 20 / 22, 0, pytest.approx(z_chi), 1, True),
        ("Z", "B", 2, 22, 2, 0.5, 2 / 22, 0, pytest.approx(z_chi), 1, True),
    ]


def test_report_prints_every_answer_in_every_format(chaos_warehouse, tmp_path):
    base = [sys.executable, str(ROOT / "gold_transforms.py"), "--config", str(chaos_warehouse.path), "--report"]
    terminal = subprocess.run(base, capture_output=True, text=True)
    assert terminal.returncode == 0, terminal.stderr
    for title, _ in gold.REPORT:
        assert f"== {title} ==" in terminal.stdout
    as_json = json.loads(subprocess.run(base + ["--format", "json"], capture_output=True, text=True).stdout)
    assert [s["title"] for s in as_json] == [t for t, _ in gold.REPORT] and as_json[0]["rows"]
    out = subprocess.run(base + ["--format", "markdown", "--out", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0 and (tmp_path / "report.md").read_text().count("### ") == len(gold.REPORT)
    out = subprocess.run(base + ["--format", "csv", "--out", str(tmp_path / "csv")], capture_output=True, text=True)
    assert out.returncode == 0 and len(list((tmp_path / "csv").glob("*.csv"))) == len(gold.REPORT)
    assert (tmp_path / "csv" / "01_funnel_and_bounce_by_platform_all_days.csv").read_text().startswith("platform,")


@pytest.mark.slow     # subprocesses and an SQS server
def test_an_analyst_holding_the_file_open_never_blocks_a_run(project, queue):
    """A second process keeps the analytics file open for a whole etl.py run: the run succeeds,
    the analyst keeps the snapshot it opened, and sees the new data after reconnecting."""
    from .test_etl import fast_queue_config, run_etl, send

    sqs, url = queue
    fast_queue_config(project, visibility=30)
    send(sqs, url, 60, seed=1)
    first = run_etl(project, sqs.meta.endpoint_url, url, "--json")
    assert first.returncode == 0
    assert subprocess.run([sys.executable, str(ROOT / "process_staging.py"), "--config", str(project / "config.json")],
                          capture_output=True, text=True).returncode == 0
    analytics = project / "warehouse" / "analytics.duckdb"
    analyst = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, sys\n"
         "con = duckdb.connect(sys.argv[1], read_only=True)\n"
         "q = 'SELECT count(*) FROM fct_events'\n"
         "print(con.execute(q).fetchall()[0][0], flush=True)\n"
         "sys.stdin.readline()\n"
         "print(con.execute(q).fetchall()[0][0], flush=True)\n"
         "con.close(); con = duckdb.connect(sys.argv[1], read_only=True)\n"
         "print(con.execute(q).fetchall()[0][0], flush=True)\n", str(analytics)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        before = int(analyst.stdout.readline())
        send(sqs, url, 60, seed=2)
        env = dict(os.environ, SQS_QUEUE_URL=url, AWS_ENDPOINT_URL=sqs.meta.endpoint_url,
                   AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
        env.pop("NELO_CRASH_AT", None)
        run = subprocess.run([sys.executable, str(ROOT / "etl.py"), "--config", str(project / "config.json")],
                             env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        assert "analytics file published" in run.stdout
        analyst.stdin.write("\n")
        analyst.stdin.flush()
        still, after = int(analyst.stdout.readline()), int(analyst.stdout.readline())
    finally:
        analyst.kill()
        analyst.wait()
    assert before > 0 and still == before and after > before
