"""The Spark engine gives DuckDB's results: on chaotic simulated traffic (late events, duplicates,
re-sends, sessions across midnight, A -> B -> A prices) every Silver table and Gold view Spark
computes from the lakehouse equals DuckDB's, row for row (types normalised, money exact), and the
incremental Spark path equals the Spark rebuild.

One module fixture does all the Spark work (about three model runs in local mode; the session is
shared): DuckDB loads five batch files (six days of traffic) and exports the lake; that lake
(DuckDB's Silver files) is copied aside; DuckDB loads the last file (late events among them) and
exports again; Spark
then (1) updates the copy incrementally from the new staged events and (2) rebuilds Silver and
Gold from scratch on the final lake.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import pytest

from nelo_etl import gold, lakehouse, silver, spark_engine
from nelo_etl.simulate import SimConfig, Simulator, write_batches

from .lake_helpers import diff, lake_relation, rows, silver_relation, table_columns
from .silver_helpers import load, make_project

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every Parquet file under ``root`` with its inode and mtime (to see what was rewritten)."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in root.rglob("*.parquet")}


@pytest.fixture(scope="module")
def world(spark_session, tmp_path_factory):
    base = tmp_path_factory.mktemp("spark_world")
    messages = Simulator(SimConfig.chaos(events=2500, seed=11, days=6, late_rate=0.1)).messages()
    files = [Path(p) for p in write_batches(messages, str(base / "batches"), batches=6)]
    cfg = make_project(base / "project")
    lake_root = Path(cfg.path).parent / cfg.lakehouse_path
    load(cfg, files[:5])                                   # exports the lake after the commit
    inc_root = base / "incremental_lake"
    shutil.copytree(lake_root, inc_root)                   # DuckDB's lake after five files
    load(cfg, files[5:])                                   # the last day's file, late events among them

    # (1) incremental: the new staged events into the copy, then only the affected partitions
    shutil.rmtree(inc_root / "staging")
    shutil.copytree(lake_root / "staging", inc_root / "staging")
    before = _files(inc_root / "silver")
    inc = spark_engine.SparkRun(spark_session, cfg, str(inc_root))
    since, _ = spark_engine.update_silver(inc)

    # (2) the full rebuild of Silver and Gold from the final lake's staged events
    full_root = base / "spark_lake"
    full = spark_engine.SparkRun(spark_session, cfg, str(lake_root), str(full_root))
    spark_engine.rebuild_silver(full)
    spark_engine.build_gold(full)
    return {"cfg": cfg, "lake": lake_root, "inc": inc_root, "full": full_root, "since": since,
            "before": before, "after": _files(inc_root / "silver")}


def test_spark_silver_equals_duckdb_silver(world):
    con = duckdb.connect(str(world["cfg"].database_path), read_only=True)
    problems = []
    for model in silver.MODELS:
        columns = table_columns(con, model.name)
        duck = rows(con, model.name, columns)
        spark = rows(con, silver_relation(str(world["full"]), model.name), columns)
        assert duck, f"the traffic leaves {model.name} empty"
        if duck != spark:
            problems.append(f"{model.name}: {diff(duck, spark)}")
    assert not problems, "\n".join(problems)


def test_spark_gold_equals_duckdb_gold(world):
    con = duckdb.connect(str(world["cfg"].database_path), read_only=True)
    problems = []
    for view in gold.views():
        columns = table_columns(con, view.name, drop_metadata=False)
        duck = rows(con, view.name, columns)
        spark = rows(con, lake_relation(str(world["full"]), f"gold/{view.name}", False), columns)
        assert duck, f"the traffic leaves {view.name} empty"
        if duck != spark:
            problems.append(f"{view.name}: {diff(duck, spark)}")
    assert not problems, "\n".join(problems)


def test_incremental_spark_equals_the_spark_rebuild(world):
    con = duckdb.connect()
    problems = []
    for model in silver.MODELS:
        # load metadata aside: the kept partitions hold DuckDB's per-batch metadata
        columns = table_columns(con, silver_relation(str(world["full"]), model.name))
        inc = rows(con, silver_relation(str(world["inc"]), model.name), columns)
        full = rows(con, silver_relation(str(world["full"]), model.name), columns)
        if inc != full:
            problems.append(f"{model.name}: {diff(inc, full)}")
    assert not problems, "\n".join(problems)


def test_incremental_spark_rewrote_only_partitions_from_the_earliest_changeable_date(world):
    since = world["since"]
    assert since is not None
    before, after = world["before"], world["after"]
    kept = [f for f in before if f"{lakehouse.PARTITION}=" in f and f.split(f"{lakehouse.PARTITION}=")[1][:10] < since.isoformat()]
    rewritten = [f for f in after if f"{lakehouse.PARTITION}=" in f and f.split(f"{lakehouse.PARTITION}=")[1][:10] >= since.isoformat()]
    assert kept, "the late events should leave some early partitions alone"
    assert rewritten
    for f in kept:
        assert after.get(f) == before[f], f"{f} is before {since} and was rewritten"
    for f in rewritten:
        assert f not in before or after[f] != before[f]
