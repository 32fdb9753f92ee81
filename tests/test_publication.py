"""The analytics file's incremental publication: after any sequence of loads its Silver tables
equal the warehouse's, row for row, while each publication copies only what the loads rewrote."""
from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from nelo_etl import gold, silver, staging
from nelo_etl.config import Config
from nelo_etl.db import connect, ensure_schema
from nelo_etl.simulate import SimConfig, Simulator, write_batches

from .conftest import ROOT
from .silver_helpers import make_project

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    """Chaotic traffic with late events, as 12 batch files in a shuffled order."""
    messages = Simulator(SimConfig.chaos(events=2400, seed=21, days=2, late_rate=0.1)).messages()
    paths = [Path(p) for p in write_batches(messages, str(tmp_path_factory.mktemp("pub")), batches=12)]
    random.Random(4).shuffle(paths)
    return paths


def tables(path: Path) -> dict[str, list[tuple]]:
    """Every Silver table of a DuckDB file, all columns, in a stable order."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {m.name: con.execute(f"SELECT * FROM {m.name} ORDER BY ALL").fetchall() for m in silver.MODELS}
    finally:
        con.close()


def load_and_publish(cfg: Config, paths: list[Path], reprocess: bool = False) -> dict:
    run = staging.process_files(cfg, paths, reprocess=reprocess, move=False, refresh_gold=False)
    assert run.ok
    con = connect(cfg.database_path, 10)
    try:
        ensure_schema(con)
        gold.create_views(con)
        return gold.publish(cfg, con)
    finally:
        con.close()


def journal_rows(cfg: Config) -> int:
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM publish_journal").fetchall()[0][0]
    finally:
        con.close()


def test_each_publication_copies_the_rewritten_rows_and_equals_the_warehouse(files, tmp_path):
    cfg = make_project(tmp_path)
    modes = []
    for path in files:
        stats = load_and_publish(cfg, [path])
        modes.append(stats["publish_mode"])
        assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path), path.name
        assert journal_rows(cfg) == 0                      # trimmed once the base holds it
    assert modes == ["full"] + ["incremental"] * (len(files) - 1)
    stats = load_and_publish(cfg, files[:2], reprocess=True)          # by hand, again
    assert stats["publish_mode"] == "incremental" and stats["publish_keys"] > 0
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)
    with duckdb.connect(str(gold.analytics_path(cfg)), read_only=True) as con:   # the views still answer
        assert con.execute("SELECT sum(sessions) FROM vw_platform_daily_performance_sessions").fetchall()[0][0] > 0


def test_a_rebuild_or_a_lost_or_broken_base_publishes_everything_once(files, tmp_path):
    cfg = make_project(tmp_path)
    load_and_publish(cfg, files[:6])
    out = subprocess.run([sys.executable, str(ROOT / "silver_transforms.py"), "--config", str(cfg.path), "--rebuild"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    stats = load_and_publish(cfg, files[6:8])
    assert stats["publish_mode"] == "incremental"      # the base is valid; the rebuild marked every table
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)
    gold.base_path(cfg).unlink()
    assert load_and_publish(cfg, files[8:9])["publish_mode"] == "full"
    gold.base_path(cfg).write_bytes(b"not a database" * 100)
    assert load_and_publish(cfg, files[9:10])["publish_mode"] == "full"
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)


def test_a_crash_before_the_journal_is_trimmed_is_harmless(files, tmp_path):
    """The base commits first, then the journal is trimmed: rows left in the journal by a crash
    in between are at or below the base's mark and are skipped, not applied twice."""
    cfg = make_project(tmp_path)
    load_and_publish(cfg, files[:3])
    staging.process_files(cfg, files[3:5], move=False, refresh_gold=False)
    con = connect(cfg.database_path, 10)
    try:
        kept = con.execute("SELECT * FROM publish_journal").fetchall()
        assert kept
        gold.publish(cfg, con)
        con.executemany("INSERT INTO publish_journal VALUES (?, ?, ?, ?)", kept)   # as if never trimmed
    finally:
        con.close()
    stats = load_and_publish(cfg, files[5:7])
    assert stats["publish_mode"] == "incremental"
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)
    assert journal_rows(cfg) == 0


def test_a_crash_between_the_base_commit_and_the_warehouse_commit_means_one_full_copy(files, tmp_path):
    """The base names the new publication token before the warehouse does: killed in between,
    the warehouse still holds the old token and its untrimmed journal, so the next publication
    copies everything once (and equals the warehouse), then goes on incrementally."""
    cfg = make_project(tmp_path)
    load_and_publish(cfg, files[:3])
    staging.process_files(cfg, files[3:5], move=False, refresh_gold=False)
    con = connect(cfg.database_path, 10)
    try:
        kept = con.execute("SELECT * FROM publish_journal").fetchall()
        meta = con.execute("SELECT publication_token, publication_generation FROM warehouse_meta").fetchall()[0]
        gold.publish(cfg, con)
        assert con.execute("SELECT publication_generation FROM warehouse_meta").fetchall()[0][0] == meta[1] + 1
        # as if killed after the base's commit: the warehouse's transaction never happened
        con.executemany("INSERT INTO publish_journal VALUES (?, ?, ?, ?)", kept)
        con.execute("UPDATE warehouse_meta SET publication_token = $t, publication_generation = $g",
                    {"t": meta[0], "g": meta[1]}).fetchall()
    finally:
        con.close()
    assert load_and_publish(cfg, files[5:7])["publish_mode"] == "full"
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)
    assert load_and_publish(cfg, files[7:8])["publish_mode"] == "incremental"
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)


def test_a_run_killed_between_commit_and_publication_is_published_by_the_next_run(files, tmp_path):
    """The next run commits nothing new (its files are loaded already), yet the journal still names
    the killed run's rows: it publishes them, instead of waiting for the next batch."""
    cfg = make_project(tmp_path)
    staging.process_files(cfg, files[:2], move=False, refresh_gold=False)     # as if killed before publishing
    assert not gold.analytics_path(cfg).exists() and staging.publication_pending(cfg)
    run = staging.process_files(cfg, files[:2], move=False)                    # both skipped: already loaded
    assert [f.status for f in run.files] == ["skipped", "skipped"] and isinstance(run.gold, dict)
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)
    assert not staging.publication_pending(cfg)
    staging.process_files(cfg, files[2:3], move=False, refresh_gold=False)
    assert staging.publication_pending(cfg)                                    # the journal names it
    assert isinstance(staging.process_files(cfg, [], move=False).gold, dict)   # an empty run publishes
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)
