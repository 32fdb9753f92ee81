"""The analytics file's incremental publication: after any sequence of loads its Silver tables
equal the warehouse's, row for row, while each publication writes only what the loads rewrote
into the generation not published now (or, when a reader holds that one, into a copy of the
live one); team files follow team_refresh_minutes."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
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


def journal_rows(cfg: Config, held_by_both: bool = True) -> int:
    """Journal rows both generations already hold (the trim must have removed them), or all."""
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        where = "WHERE journal_id <= (SELECT min(journal_id) FROM publish_gens)" if held_by_both else ""
        return con.execute(f"SELECT count(*) FROM publish_journal {where}").fetchall()[0][0]
    finally:
        con.close()


def spare(cfg: Config) -> Path:
    """The generation that is not the analytics file now (the next publication's)."""
    live = gold.analytics_path(cfg).stat().st_ino
    (other,) = [g for g in gold.gen_paths(cfg) if not g.exists() or g.stat().st_ino != live]
    return other


def test_each_publication_copies_the_rewritten_rows_and_equals_the_warehouse(files, tmp_path):
    cfg = make_project(tmp_path)
    modes = []
    for path in files:
        stats = load_and_publish(cfg, [path])
        modes.append(stats["publish_mode"])
        assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path), path.name
        assert journal_rows(cfg) == 0                      # trimmed once both generations hold it
    assert modes == ["full", "copy"] + ["incremental"] * (len(files) - 2)
    assert gold.analytics_path(cfg).stat().st_nlink == 2                # a hard link to a generation
    stats = load_and_publish(cfg, files[:2], reprocess=True)          # by hand, again
    assert stats["publish_mode"] == "incremental" and stats["publish_keys"] > 0
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)
    with duckdb.connect(str(gold.analytics_path(cfg)), read_only=True) as con:   # the views still answer
        assert con.execute("SELECT sum(sessions) FROM vw_platform_daily_performance_sessions").fetchall()[0][0] > 0


def test_a_rebuild_or_a_lost_or_broken_generation_publishes_everything_once(files, tmp_path):
    cfg = make_project(tmp_path)
    load_and_publish(cfg, files[:5])
    load_and_publish(cfg, files[5:6])                   # both generations made
    out = subprocess.run([sys.executable, str(ROOT / "silver_transforms.py"), "--config", str(cfg.path), "--rebuild"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    stats = load_and_publish(cfg, files[6:8])
    assert stats["publish_mode"] == "incremental"      # the spare is valid; the rebuild marked every table
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)
    spare(cfg).unlink()                                 # a lost generation: a copy of the live one
    assert load_and_publish(cfg, files[8:9])["publish_mode"] == "copy"
    spare(cfg).write_bytes(b"not a database" * 100)     # a broken one: the same
    assert load_and_publish(cfg, files[9:10])["publish_mode"] == "copy"
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)
    for gen in gold.gen_paths(cfg):                     # both lost: everything, once
        gen.unlink()
    assert load_and_publish(cfg, files[10:11])["publish_mode"] == "full"
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


def test_a_crash_between_the_generation_commit_and_the_warehouse_commit_means_one_copy(files, tmp_path):
    """A generation records its new publication token before the warehouse does: killed in
    between, the warehouse still holds the old tokens and its untrimmed journal. The older
    generation is still consistent with that, so the next publication brings it up to date; the
    one with the unknown token is then rebuilt once (a copy), and every publication equals the
    warehouse."""
    cfg = make_project(tmp_path)
    load_and_publish(cfg, files[:3])
    staging.process_files(cfg, files[3:5], move=False, refresh_gold=False)
    con = connect(cfg.database_path, 10)
    try:
        kept = con.execute("SELECT * FROM publish_journal").fetchall()
        meta = con.execute("SELECT publication_token, publication_generation FROM warehouse_meta").fetchall()[0]
        gens = con.execute("SELECT * FROM publish_gens").fetchall()
        gold.publish(cfg, con)
        assert con.execute("SELECT publication_generation FROM warehouse_meta").fetchall()[0][0] == meta[1] + 1
        # as if killed after the generation's commit: the warehouse's transaction never happened
        con.executemany("INSERT INTO publish_journal VALUES (?, ?, ?, ?)", kept)
        con.execute("DELETE FROM publish_gens").fetchall()
        con.executemany("INSERT INTO publish_gens VALUES (?, ?, ?)", gens)
        con.execute("UPDATE warehouse_meta SET publication_token = $t, publication_generation = $g",
                    {"t": meta[0], "g": meta[1]}).fetchall()
    finally:
        con.close()
    assert load_and_publish(cfg, files[5:7])["publish_mode"] == "incremental"    # the older generation
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)
    assert load_and_publish(cfg, files[7:8])["publish_mode"] == "copy"           # the orphaned one
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)
    assert load_and_publish(cfg, files[8:9])["publish_mode"] == "incremental"
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
    # both generations exist now and the journal keeps the spare's rows, yet nothing is pending:
    # the next empty run publishes nothing
    assert all(g.exists() for g in gold.gen_paths(cfg)) and journal_rows(cfg, held_by_both=False) > 0
    assert not staging.publication_pending(cfg)
    assert staging.process_files(cfg, [], move=False).gold is None


def test_a_reader_holding_the_spare_generation_keeps_its_snapshot_and_the_publication_copies(files, tmp_path):
    """An analyst who opened the analytics file two publications ago still holds that inode (a
    DuckDB reader locks it): the job never writes it; the spare is replaced by a copy of the live
    generation, and the reader goes on reading what it opened."""
    cfg = make_project(tmp_path)
    load_and_publish(cfg, files[:2])
    reader = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1], read_only=True); "
         "n = con.execute('SELECT count(*) FROM fct_events').fetchall()[0][0]; print(n, flush=True); "
         "sys.stdin.readline(); print(con.execute('SELECT count(*) FROM fct_events').fetchall()[0][0], flush=True)",
         str(gold.analytics_path(cfg))], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        before = int(reader.stdout.readline())
        assert load_and_publish(cfg, files[2:4])["publish_mode"] in ("copy", "incremental")   # the other one
        stats = load_and_publish(cfg, files[4:6])                  # the reader's inode is the spare now
        assert stats["publish_mode"] == "copy"
        assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert int(reader.stdout.readline()) == before               # its snapshot, unchanged
    finally:
        reader.kill()
        reader.wait()
    assert load_and_publish(cfg, files[6:7])["publish_mode"] == "incremental"   # released: back to normal
    assert tables(gold.analytics_path(cfg)) == tables(cfg.database_path)


def test_team_files_are_refreshed_when_due_not_every_run(files, tmp_path):
    cfg = make_project(tmp_path)
    load_and_publish(cfg, files[:2])                                     # missing: made
    growth = gold.team_path(cfg, "growth")
    first = growth.stat().st_mtime_ns
    assert gold.teams_due(cfg) == []
    load_and_publish(cfg, files[2:3])
    assert growth.stat().st_mtime_ns == first                           # not due: left alone
    old = time.time() - 61 * 60
    os.utime(growth, (old, old))                                         # an hour old
    assert gold.teams_due(cfg) == ["growth"]
    load_and_publish(cfg, files[3:4])
    assert growth.stat().st_mtime_ns != first and gold.teams_due(cfg) == []
    with duckdb.connect(str(growth), read_only=True) as con:            # and current
        got = con.execute("SELECT sum(sessions) FROM vw_platform_daily_performance_sessions").fetchall()
    with duckdb.connect(str(gold.analytics_path(cfg)), read_only=True) as con:
        assert got == con.execute("SELECT sum(sessions) FROM vw_platform_daily_performance_sessions").fetchall()


def test_the_generations_keep_their_views_made_once_in_the_older_storage_format(files, tmp_path, monkeypatch):
    """A generation in the older storage format reads its views' SQL back re-serialized once
    reopened; the publication notes it so, or it made every view again on every publication
    (0.14 s a run, measured)."""
    cfg = make_project(tmp_path)
    assert cfg.analytics_storage_version == "v1.0.0"
    for path in files[:2]:
        load_and_publish(cfg, [path])
    assert [gold.views_current_in(gen) for gen in gold.gen_paths(cfg)] == [True, True]
    made = []
    real = gold.create_views
    monkeypatch.setattr(gold, "create_views", lambda con: made.append(real(con)) or made[-1])
    load_and_publish(cfg, [files[2]])
    assert made == [False, False]                     # neither the warehouse nor the generation
    # a crash after the views were made, before their hash was noted: the next publication into
    # that generation makes them again and notes them
    target = spare(cfg)
    os.chmod(target, 0o640)
    con = duckdb.connect(str(target))
    try:
        con.execute(f"UPDATE {gold.VIEWS_STATE} SET views_sql_sha = 'noted before the reopen'")
    finally:
        con.close()
    load_and_publish(cfg, [files[3]])
    assert made[2:] == [False, True]
    assert [gold.views_current_in(gen) for gen in gold.gen_paths(cfg)] == [True, True]


def test_a_silver_column_named_rowid_stops_the_publication_before_it_copies_a_row():
    """The publication fetches a key's rows by DuckDB's rowid; a table column of that name would
    hide it and copy whatever rows its values number. It is refused with its reason instead,
    before the generation is touched (the caller's transaction rolls back)."""
    con = duckdb.connect()
    con.execute("CREATE TABLE dim_platforms (platform VARCHAR, rowid BIGINT)").fetchall()
    con.execute("INSERT INTO dim_platforms VALUES ('ios', 1), ('android', 0)").fetchall()
    con.execute("CREATE TABLE publish_journal (journal_id BIGINT, load_id BIGINT, table_name VARCHAR, "
                "key_json JSON)").fetchall()
    con.execute("""INSERT INTO publish_journal VALUES (1, 1, 'dim_platforms', '{"platform": "ios"}')""").fetchall()
    con.execute("ATTACH ':memory:' AS pub_base").fetchall()
    con.execute("CREATE TABLE pub_base.dim_platforms AS SELECT 'ios' AS platform, 7::BIGINT AS rowid").fetchall()
    with pytest.raises(ValueError, match="column named rowid"):
        gold._apply_keys(con, "dim_platforms", 0, 1, {"platform": "VARCHAR", "rowid": "BIGINT"}, ["platform"])
    assert con.execute("SELECT * FROM pub_base.dim_platforms").fetchall() == [("ios", 7)]
    # without the column, the same key's row is copied
    con.execute("CREATE OR REPLACE TABLE dim_platforms AS SELECT * EXCLUDE (rowid) FROM dim_platforms").fetchall()
    con.execute("CREATE OR REPLACE TABLE pub_base.dim_platforms (platform VARCHAR)").fetchall()
    gold._apply_keys(con, "dim_platforms", 0, 1, {"platform": "VARCHAR"}, ["platform"])
    assert con.execute("SELECT * FROM pub_base.dim_platforms").fetchall() == [("ios",)]
