"""Each data check really fires: corrupt a good warehouse in one way, and that check returns rows."""
from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from nelo_etl import silver, sql
from nelo_etl.simulate import SimConfig, Simulator, write_batches

from .silver_helpers import load, make_project

CORRUPTIONS = {
    "stg_events_unique_key": "INSERT INTO stg_events SELECT * FROM stg_events WHERE load_id = 1 LIMIT 1",
    "stg_events_not_null_keys": "DELETE FROM stg_events WHERE rowid IN (SELECT rowid FROM stg_events "
                                "WHERE load_id = 1 AND item_index = 1 LIMIT 1)",
    "etl_batches_counts_add_up": "UPDATE etl_batches SET dead_lettered = dead_lettered + 1 WHERE load_id = 1",
    "silver_fct_events_unique_key": "INSERT INTO fct_events SELECT * FROM fct_events LIMIT 1",
    "silver_sessions_valid": "UPDATE silver_user_sessions SET session_end_ts = session_end_ts + INTERVAL 3 DAY",
    "silver_dim_products_scd2": "UPDATE dim_products SET is_current = true",
    "silver_dim_users_scd2": "UPDATE dim_users SET valid_to = NULL",
    "silver_attribution_valid": "UPDATE silver_event_list_attribution SET impression_item_index = 99",
}

#: the checks' other branches (each bounds its scans by event time since v3: these rows must still be found)
MORE_CORRUPTIONS = [
    ("silver_fct_events_unique_key", "DELETE FROM fct_events WHERE event_id IN "
                                     "(SELECT event_id FROM fct_event_items ORDER BY event_timestamp_us DESC LIMIT 1)"),
    ("silver_fct_events_unique_key", "DELETE FROM fct_events WHERE event_id IN "
                                     "(SELECT event_id FROM fct_event_items ORDER BY event_timestamp_us LIMIT 1)"),
    ("silver_sessions_valid", "DELETE FROM silver_event_sessions WHERE event_id IN "
                              "(SELECT event_id FROM silver_event_sessions ORDER BY event_timestamp_us LIMIT 1)"),
    ("silver_attribution_valid", "UPDATE silver_list_impressions SET session_id = 'other' WHERE event_id IN "
                                 "(SELECT impression_event_id FROM silver_event_list_attribution)"),
]


@pytest.fixture(scope="module")
def good_warehouse(tmp_path_factory):
    cfg = make_project(tmp_path_factory.mktemp("good"))
    messages = Simulator(SimConfig.chaos(events=1500, seed=4, days=2)).messages()
    (path,) = write_batches(messages, str(tmp_path_factory.mktemp("f")), batches=1)
    load(cfg, [Path(path)])
    return cfg


def test_every_check_has_a_corruption_here():
    assert set(CORRUPTIONS) == {p.stem for p in sql.check_files()}


@pytest.mark.parametrize("check", sorted(CORRUPTIONS))
def test_the_check_fires_on_its_corruption(good_warehouse, check, tmp_path):
    db = tmp_path / "copy.duckdb"
    shutil.copy(good_warehouse.database_path, db)
    con = duckdb.connect(str(db))
    try:
        params = silver.model_params(good_warehouse, {"load_id": 1, "batch_id": None})
        sql.run_checks(con, params)                          # clean: every check passes
        con.execute(CORRUPTIONS[check]).fetchall()
        with pytest.raises(sql.CheckFailed):
            sql.run_checks(con, params)                      # the batch would roll back
        text = sql.read_sql(sql.SQL_DIR / "checks" / f"{check}.sql")
        assert sql.run(con, text, params), f"{check} returned no rows"   # and this check says why
    finally:
        con.close()


@pytest.mark.parametrize("check,corruption", MORE_CORRUPTIONS)
def test_the_checks_other_branches_fire_too(good_warehouse, check, corruption, tmp_path):
    db = tmp_path / "copy.duckdb"
    shutil.copy(good_warehouse.database_path, db)
    con = duckdb.connect(str(db))
    try:
        params = silver.model_params(good_warehouse, {"load_id": 1, "batch_id": None})
        text = sql.read_sql(sql.SQL_DIR / "checks" / f"{check}.sql")
        assert sql.run(con, text, params) == []
        assert con.execute(corruption).fetchall()[0][0] > 0                # rows were changed
        assert sql.run(con, text, params), f"{check} returned no rows"
    finally:
        con.close()


def test_the_session_check_sees_a_rewritten_session_overlapping_the_unchanged_one_before_it(tmp_path):
    """The check looks only at what a load rewrote; a rewritten session that starts inside the
    session before it (which the load did not touch) must still be an overlap (review finding)."""
    from .test_silver_models import MIN, T0, item, line
    from .test_silver_models import warehouse as load_batches

    load_batches(tmp_path, [line(T0, "view_item", [item("P", 1)]), line(T0 + 10 * MIN, "view_item", [item("P", 1)]),
                            line(T0 + 60 * MIN, "view_item", [item("P", 1)])],
                 [line(T0 + 70 * MIN, "view_item", [item("P", 1)])]).close()
    cfg_path = tmp_path / "config.json"
    from nelo_etl.config import load_config
    cfg = load_config(cfg_path)
    con = duckdb.connect(str(cfg.database_path))
    try:
        params = silver.model_params(cfg, {"load_id": 2, "batch_id": None})
        text = sql.read_sql(sql.SQL_DIR / "checks" / "silver_sessions_valid.sql")
        assert sql.run(con, text, params) == []
        # the session the second load rewrote (from T0 + 60 min) now starts at T0 + 5 min, inside the first
        changed = con.execute("UPDATE silver_user_sessions SET session_start_ts = session_start_ts - INTERVAL 55 MINUTE "
                              "WHERE session_start_ts > make_timestamp($t)", {"t": T0 + 30 * MIN}).fetchall()[0][0]
        assert changed == 1
        assert [r[0] for r in sql.run(con, text, params)] == ["overlapping sessions"]
    finally:
        con.close()
