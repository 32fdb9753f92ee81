"""The lakehouse export: after each committed run the staged events and every Silver table are in
the lake as hive-partitioned Parquet, equal to the warehouse; only the partitions that changed
are rewritten, each replaced in one step; S3 (moto's server on 127.0.0.1) works like a folder;
the lake views and the Athena DDL."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import sqlglot

from nelo_etl import gold, lakehouse, lakequery
from nelo_etl.simulate import SimConfig, Simulator, write_batches

from .lake_helpers import diff, norm, rows, silver_relation, table_columns
from .silver_helpers import load, make_project

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A warehouse of chaotic traffic over four days, loaded as two runs (the export runs after
    each); the lake's files after the first run are noted, and the second run's export."""
    base = tmp_path_factory.mktemp("lake")
    messages = Simulator(SimConfig.chaos(events=1500, seed=21, days=4, late_rate=0.05)).messages()
    files = [Path(p) for p in write_batches(messages, str(base / "batches"), batches=4)]
    cfg = make_project(base / "project")
    lake_root = Path(cfg.path).parent / cfg.lakehouse_path
    load(cfg, files[:3])
    first = {str(p.relative_to(lake_root)): p.stat().st_ino for p in lake_root.rglob("*.parquet")}
    manifests = {t.name: json.loads((lake_root / t.folder / lakehouse.MANIFEST).read_text())["partitions"]
                 for t in lakehouse.TABLES}
    second = load(cfg, files[3:]).lake
    return cfg, lake_root, first, manifests, second


def assert_lake_equals_warehouse(cfg, root: str) -> None:
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        for t in lakehouse.TABLES:
            columns = table_columns(con, t.name, drop_metadata=False)
            assert rows(con, t.name, columns) == rows(con, silver_relation(root, t.name), columns), t.name
    finally:
        con.close()


def test_after_each_committed_run_the_lake_equals_the_warehouse(loaded):
    cfg, lake_root, _, _, _ = loaded
    assert_lake_equals_warehouse(cfg, str(lake_root))
    dates = sorted(p.name for p in (lake_root / "staging" / "stg_events").iterdir() if p.is_dir())
    assert len(dates) >= 4 and all(d.startswith("event_date=20") for d in dates)


def test_only_the_partitions_that_changed_were_rewritten(loaded):
    """A partition whose rows did not change keeps its file; one that changed is rewritten, or,
    for an append-only table, keeps its file and gains one with the new rows (listed in the
    manifest)."""
    cfg, lake_root, first, manifests, export = loaded
    now = {str(p.relative_to(lake_root)): p.stat().st_ino for p in lake_root.rglob("*.parquet")}
    kept = rewritten = appended = 0
    for t in lakehouse.TABLES:
        manifest = json.loads((lake_root / t.folder / lakehouse.MANIFEST).read_text())
        after, added = manifest["partitions"], manifest["added_files"]
        for part, fingerprint in manifests[t.name].items():
            folder = Path(t.folder) / (f"{lakehouse.PARTITION}={part}" if t.date_expr else "")
            rel = str(folder / lakehouse.PART_FILE)
            if after.get(part) == fingerprint:
                assert now[rel] == first[rel], f"{rel} did not change but was rewritten"
                assert part not in added
                kept += 1
            elif part in added:
                assert t.load_column and now[rel] == first[rel], f"{rel} was rewritten and added to"
                assert sorted(p for p in now if p.startswith(f"{folder}/")) == \
                    sorted([rel] + [str(folder / name) for name in added[part]])
                appended += 1
            elif part in after:
                assert now[rel] != first[rel], f"{rel} changed but was not rewritten"
                rewritten += 1
        # the rows it reports written: a rewritten (or new) partition's all, an added file's new ones
        count = lambda fingerprint: int(fingerprint.split(":")[0])          # noqa: E731
        before = manifests[t.name]
        assert export.rows.get(t.name, 0) == sum(
            count(fp) - (count(before[part]) if part in added and part in before else 0)
            for part, fp in after.items() if before.get(part) != fp), t.name
    assert kept > 0 and rewritten > 0 and appended > 0
    assert f", {sum(export.rows.values()):,} rows written in " in export.line()
    # nothing half-written is left behind
    assert not [p for p in lake_root.rglob("*") if p.name.startswith(".")]


def test_a_second_export_writes_nothing(loaded):
    cfg, lake_root, _, _, _ = loaded
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        result = lakehouse.export(con, lakehouse.open_lake(str(lake_root)), Path(cfg.work_dir))
    finally:
        con.close()
    assert result.written == {} and result.removed == {}


#: changed_since as it read before session 13: every pair's whole history before its earliest new
#: event (the reference its equality join must agree with)
_CHANGED_SINCE_BY_HISTORY = """
    WITH new_events AS (
        SELECT user_id, platform, min(event_timestamp_us) AS since_us
        FROM stg_events WHERE load_id > $load_id GROUP BY user_id, platform
    ),
    in_force AS (
        SELECT n.since_us, max(s.session_start_ts) AS start_ts
        FROM new_events AS n
        LEFT JOIN silver_event_sessions AS s
          ON s.user_id = n.user_id AND s.platform = n.platform AND s.event_timestamp_us <= n.since_us
        GROUP BY n.user_id, n.platform, n.since_us
    )
    SELECT min(least(CAST(coalesce(start_ts, make_timestamp(since_us)) AS DATE), CAST(make_timestamp(since_us) AS DATE)))
    FROM in_force"""


def test_the_earliest_changed_date_is_the_one_the_pairs_whole_history_gives(loaded, tmp_path):
    """changed_since finds the session in force at each pair's earliest new event from that
    event's own row; it must give the date a reading of the pair's whole history gives, for every
    mark, and also when that row is missing (then it reads the pair's earlier rows)."""
    import shutil

    cfg, _, _, _, _ = loaded
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(cfg.database_path, copy)
    con = duckdb.connect(str(copy))
    try:
        top = con.execute("SELECT max(load_id) FROM stg_events").fetchall()[0][0]
        expected = {m: con.execute(_CHANGED_SINCE_BY_HISTORY, {"load_id": m}).fetchall()[0][0] for m in range(top)}
        assert None not in expected.values()
        assert {m: lakehouse.changed_since(con, m) for m in range(top)} == expected
        # one pair of the newest load whose session before its earliest new event began on an
        # earlier day; the load is cut down to that pair and the event's own row removed
        (user, platform, since_date, before_date), = con.execute("""
            WITH n AS (SELECT user_id, platform, min(event_timestamp_us) AS since_us
                       FROM stg_events WHERE load_id = $top GROUP BY ALL)
            SELECT n.user_id, n.platform, CAST(make_timestamp(n.since_us) AS DATE), CAST(max(s.session_start_ts) AS DATE)
            FROM n JOIN silver_event_sessions AS s
              ON s.user_id = n.user_id AND s.platform = n.platform AND s.event_timestamp_us < n.since_us
            GROUP BY ALL HAVING CAST(max(s.session_start_ts) AS DATE) < CAST(make_timestamp(n.since_us) AS DATE)
            ORDER BY ALL LIMIT 1""", {"top": top}).fetchall()
        con.execute("DELETE FROM stg_events WHERE load_id = $top AND (user_id, platform) <> ($u, $p)",
                    {"top": top, "u": user, "p": platform}).fetchall()
        con.execute("""
            DELETE FROM silver_event_sessions WHERE user_id = $u AND platform = $p AND event_timestamp_us =
                (SELECT min(event_timestamp_us) FROM stg_events WHERE load_id = $top)""",
                    {"top": top, "u": user, "p": platform}).fetchall()
        assert con.execute(_CHANGED_SINCE_BY_HISTORY, {"load_id": top - 1}).fetchall()[0][0] == before_date
        assert lakehouse.changed_since(con, top - 1) == before_date < since_date
    finally:
        con.close()


def test_a_reader_never_sees_half_a_partition(loaded, tmp_path):
    cfg, _, _, _, _ = loaded
    lake = lakehouse.open_lake(str(tmp_path / "lake"))
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    items = lakehouse.table("fct_event_items")
    lakehouse.export(con, lake, tmp_path / "work", tables=[items])
    part = sorted((tmp_path / "lake" / items.folder).glob("event_date=*/part-0.parquet"))[0]
    expected = pq.read_table(part).num_rows
    seen, errors, stop = [], [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(pq.read_table(part).num_rows)
            except Exception as exc:  # noqa: BLE001 - any failure to read is the bug under test
                errors.append(repr(exc))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(15):
            (tmp_path / "lake" / items.folder / lakehouse.MANIFEST).unlink()   # forget: rewrite all
            lakehouse.export(con, lake, tmp_path / "work", tables=[items])
    finally:
        stop.set()
        reader.join()
        con.close()
    assert not errors and seen and set(seen) == {expected}


def test_the_lake_on_s3(loaded, moto_server, monkeypatch):
    import boto3

    cfg, _, _, _, _ = loaded
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    boto3.client("s3", endpoint_url=moto_server.url, region_name="us-east-1").create_bucket(Bucket="nelo-lake")
    lake = lakehouse.open_lake("s3://nelo-lake/prod", endpoint_url=moto_server.url)
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        first = lakehouse.export(con, lake, Path(cfg.work_dir))
        assert sum(first.written.values()) > len(lakehouse.TABLES)
        assert lakehouse.export(con, lake, Path(cfg.work_dir)).written == {}
        for t in lakehouse.TABLES:
            dataset = ds.dataset(lake.path(t.folder), filesystem=lake.fs, format="parquet",
                                 partitioning=ds.partitioning(pa.schema([(lakehouse.PARTITION, pa.date32())]),
                                                              flavor="hive") if t.date_expr else None,
                                 exclude_invalid_files=True, ignore_prefixes=[".", "_"])
            arrow = dataset.to_table()
            columns = table_columns(con, t.name, drop_metadata=False)
            cols = ", ".join(columns)
            lake_rows = sorted((tuple(norm(v) for v in r) for r in
                                duckdb.sql(f"SELECT {cols} FROM arrow").fetchall()), key=repr)
            assert rows(con, t.name, columns) == lake_rows, t.name
        manifest = json.loads(lake.read_text("silver/fct_events", lakehouse.MANIFEST))
        assert manifest["partition_column"] == lakehouse.PARTITION and manifest["partitions"]
    finally:
        con.close()


def test_the_lake_views_file_answers_like_the_warehouse(loaded, tmp_path):
    cfg, lake_root, _, _, _ = loaded
    target = tmp_path / "lake.duckdb"
    made = lakequery.write_views_file(lakehouse.open_lake(str(lake_root)), target)
    assert set(made) == {t.name for t in lakehouse.TABLES} | {v.name for v in gold.views()}
    lake_con = duckdb.connect(str(target), read_only=True)
    wh = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        for name in ["fct_orders", "dim_products", *(v.name for v in gold.views())]:
            columns = table_columns(wh, name, drop_metadata=False)
            expected = rows(wh, name, columns)
            assert expected, name
            assert rows(lake_con, name, columns) == expected, f"{name}: {diff(rows(lake_con, name, columns), expected)}"
    finally:
        lake_con.close()
        wh.close()


def test_the_athena_ddl_parses_in_athenas_dialect(loaded):
    cfg, _, _, _, _ = loaded
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        text = lakequery.athena_ddl(con, "s3://nelo-lake/prod", "nelo_growth")
    finally:
        con.close()
    statements = [s for s in sqlglot.parse(text, read="athena") if s is not None]
    tables = [s for s in statements if s.args.get("kind") == "TABLE"]
    views = [s for s in statements if s.args.get("kind") == "VIEW"]
    assert len(tables) == len(lakehouse.TABLES) and len(views) == len(gold.views())
    assert "'projection.event_date.type'='date'" in text
    assert "'storage.location.template'='s3://nelo-lake/prod/silver/fct_events/event_date=${event_date}/'" in text
    # the views name their tables in the database, not in whatever schema the session has
    assert "FROM nelo_growth.fct_orders" in text and "FROM fct_orders" not in text


def test_the_lake_commands(project, tmp_path):
    import subprocess
    import sys

    from .conftest import ROOT, copy_samples

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args, "--config", str(project / "config.json")],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    copy_samples(project / "staging")
    loaded = run("process_staging.py")
    assert loaded.returncode == 0 and "lake: " in loaded.stdout, loaded.stderr
    assert (project / "lake" / "silver" / "fct_events" / lakehouse.MANIFEST).is_file()
    # the lake holds user ids: owner-only, like the warehouse and the batch files
    lake_files = [p for p in (project / "lake").rglob("*") if p.is_file()]
    assert lake_files and all(p.stat().st_mode & 0o077 == 0 for p in lake_files)
    again = run("lake.py", "export")
    assert again.returncode == 0 and "lake: 0 partition(s) rewritten, 0 removed, 0 rows written" in again.stdout
    views = run("lake.py", "views", "--out", str(tmp_path / "lake.duckdb"))
    assert views.returncode == 0, views.stderr
    con = duckdb.connect(str(tmp_path / "lake.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM fct_events").fetchall()[0][0] > 0
    assert con.execute("SELECT count(*) FROM vw_coupon_impact").fetchall()[0][0] > 0
    con.close()
    ddl = run("lake.py", "athena-ddl", "--location", "s3://nelo-lake/prod", "--out", str(tmp_path / "athena.sql"))
    assert ddl.returncode == 0, ddl.stderr
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS nelo_growth.stg_events" in (tmp_path / "athena.sql").read_text()
    local = run("lake.py", "athena-ddl", "--out", str(tmp_path / "x.sql"))
    assert local.returncode == 1 and "Athena reads S3" in local.stderr
    missing = subprocess.run([sys.executable, "lake.py", "views"], cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and "needs --out" in missing.stderr


def test_the_export_checks_only_the_partitions_new_loads_can_change(project, tmp_path):
    from nelo_etl import staging
    from nelo_etl.config import load_config

    from .conftest import copy_samples

    cfg = load_config(project / "config.json")
    assert staging.process_files(cfg, [copy_samples(project / "staging")]).ok     # October 2025
    first = staging.process_files(cfg, [])                                       # nothing committed: no export
    assert first.lake is None
    later = Simulator(SimConfig(events=300, seed=4, days=1, start_us=1_767_225_600_000_000)).messages()  # 2026-01-01
    files = [Path(p) for p in write_batches(later, str(tmp_path / "later"), batches=1)]
    run = staging.process_files(cfg, files, move=False)
    assert run.ok
    october = sorted(p.name for p in (project / "lake" / "staging" / "stg_events").iterdir()
                     if p.name.startswith("event_date=2025"))
    assert october                                         # still in the lake, untouched
    assert run.lake.checked["stg_events"] == len([p for p in (project / "lake" / "staging" / "stg_events").iterdir()
                                                   if p.name.startswith("event_date=2026")])
    assert assert_lake_equals_warehouse(cfg, str(project / "lake")) is None
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        again = lakehouse.export(con, lakehouse.open_lake(str(project / "lake")), tmp_path / "w")
        full = lakehouse.export(con, lakehouse.open_lake(str(project / "lake")), tmp_path / "w", full=True)
    finally:
        con.close()
    assert again.checked == {} and again.written == {}     # nothing loaded since: nothing read
    assert full.written == {} and full.checked["stg_events"] > run.lake.checked["stg_events"]
