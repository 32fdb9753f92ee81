"""Deferred compaction of deleted rows (db.vacuum_due): a batch's checkpoint marks the rows its
Silver rewrites deleted, and once every ``vacuum_minutes`` a run's checkpoints compact them, for
the warehouse and for each generation of the analytics file."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nelo_etl import db, staging
from nelo_etl.config import load_config
from nelo_etl.simulate import SimConfig, Simulator, write_batches


def _row_groups(path: Path, vacuum: bool) -> tuple[int, int]:
    """A table of 400k rows loses 60% of them; (row groups after the next checkpoint, rows)."""
    con = db.connect(path, 5, vacuum=vacuum)
    try:
        con.execute("CREATE TABLE t AS SELECT range AS a, CAST(range AS VARCHAR) AS b FROM range(400000)").fetchall()
        con.execute("CHECKPOINT").fetchall()
        con.execute("DELETE FROM t WHERE a % 10 < 6").fetchall()
        con.execute("CHECKPOINT").fetchall()
        return con.execute("SELECT (SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('t')), "
                           "(SELECT count(*) FROM t)").fetchall()[0]
    finally:
        con.close()


def test_a_checkpoint_without_vacuum_keeps_deleted_rows_marked_and_one_with_it_compacts(tmp_path):
    kept = _row_groups(tmp_path / "kept.duckdb", vacuum=False)
    compacted = _row_groups(tmp_path / "compacted.duckdb", vacuum=True)
    assert kept[1] == compacted[1] == 160_000                 # the same rows either way
    assert kept[0] == 4 and compacted[0] < kept[0]


def test_vacuum_is_due_once_per_interval_and_after_a_clock_set_back(project):
    cfg = load_config(project / "config.json")
    assert cfg.vacuum_minutes == 60
    assert db.vacuum_due(cfg, "warehouse")                     # never compacted
    db.mark_vacuumed(cfg, "warehouse")
    marker = Path(cfg.work_dir) / "vacuumed" / "warehouse"
    assert not db.vacuum_due(cfg, "warehouse")
    assert db.vacuum_due(cfg, "analytics_a.duckdb")            # each file on its own
    os.utime(marker, (time.time() - 3601, time.time() - 3601))
    assert db.vacuum_due(cfg, "warehouse")                     # an hour ago
    os.utime(marker, (time.time() + 86400, time.time() + 86400))
    assert db.vacuum_due(cfg, "warehouse")                     # "tomorrow": the clock was set back
    db.mark_vacuumed(cfg, "warehouse")
    every_run = cfg.model_copy(update={"vacuum_minutes": 0})
    assert db.vacuum_due(every_run, "warehouse")


@pytest.mark.slow     # many loads
def test_runs_compact_the_warehouse_and_each_generation_once_per_interval(project, tmp_path, monkeypatch):
    """The first run compacts (nothing is known); runs within vacuum_minutes do not, and say so
    to DuckDB; once the interval has passed the next run compacts again. The two generations of
    the analytics file (published in turn) are tracked apart, so neither is left out."""
    cfg = load_config(project / "config.json")
    messages = Simulator(SimConfig.chaos(events=300, seed=3)).messages()
    files = [Path(p) for p in write_batches(messages, str(tmp_path / "in"), batches=4)]
    markers = Path(cfg.work_dir) / "vacuumed"
    seen: list[bool] = []
    real = staging.connect

    def spy(*args, **kwargs):
        seen.append(kwargs.get("vacuum", True))
        return real(*args, **kwargs)

    monkeypatch.setattr(staging, "connect", spy)

    def run(path: Path) -> dict:
        seen.clear()
        result = staging.process_files(cfg, [path], move=False)
        assert result.ok
        return result.gold

    def age(seconds: float) -> None:
        for marker in markers.iterdir():
            os.utime(marker, (time.time() - seconds, time.time() - seconds))

    run(files[0])
    assert seen[0] is True
    assert sorted(m.name for m in markers.iterdir()) == [".analytics_a.duckdb", "warehouse"]
    age(60)
    run(files[1])                                  # a minute later: no compaction, but the other
    assert seen[0] is False                        # generation was never compacted
    assert sorted(m.name for m in markers.iterdir()) == [".analytics_a.duckdb", ".analytics_b.duckdb", "warehouse"]
    age(60)
    stamps = {m.name: m.stat().st_mtime for m in markers.iterdir()}
    run(files[2])
    assert seen[0] is False
    assert {m.name: m.stat().st_mtime for m in markers.iterdir()} == stamps
    age(3700)
    run(files[3])
    assert seen[0] is True
    assert all(time.time() - m.stat().st_mtime < 600 for m in markers.iterdir()
               if m.name in ("warehouse", ".analytics_b.duckdb"))


def test_a_compaction_note_that_cannot_be_written_is_only_a_warning(project, caplog):
    """The note is written after the batches are committed: failing there must not stop the run
    from publishing them (review). The next run finds compaction due again."""
    cfg = load_config(project / "config.json")
    Path(cfg.work_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.work_dir) / "vacuumed").write_text("a file where the folder should be")
    db.mark_vacuumed(cfg, "warehouse")
    assert "could not note the compaction" in caplog.text
    assert db.vacuum_due(cfg, "warehouse")
