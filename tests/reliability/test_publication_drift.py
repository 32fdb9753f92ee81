"""The analysts' copy never drifts from the warehouse (issue 12): a restored backup, a lost
warehouse, a rebuild from archive/, and what killed publications leave behind."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from nelo_etl import gold, silver, staging, warehouse
from nelo_etl.simulate import SimConfig, Simulator, write_batches

from ..conftest import ROOT
from ..silver_helpers import make_project
from ..test_staging import run_ps

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[Path]:
    messages = Simulator(SimConfig.chaos(events=1800, seed=31, days=2, late_rate=0.1)).messages()
    return [Path(p) for p in write_batches(messages, str(tmp_path_factory.mktemp("drift")), batches=8)]


def everything(path: Path) -> dict[str, list[tuple]]:
    """Every Silver table and every Gold view of a DuckDB file, in a stable order."""
    with duckdb.connect(str(path), read_only=True) as con:
        names = [m.name for m in silver.MODELS] + [v.name for v in gold.views()]
        return {n: con.execute(f"SELECT * FROM {n} ORDER BY ALL").fetchall() for n in names}


def gold_only(path: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {v.name: con.execute(f"SELECT * FROM {v.name} ORDER BY ALL").fetchall() for v in gold.views()}


def load(cfg, paths) -> staging.RunResult:
    run = staging.process_files(cfg, paths, move=False)
    assert run.ok, [f.line() for f in run.files] + [run.gold]
    return run


def test_a_restored_backup_gets_a_full_copy_not_a_drifting_one(files, tmp_path):
    cfg = make_project(tmp_path)
    load(cfg, files[:1])
    backup = tmp_path / "backup.duckdb"
    shutil.copyfile(cfg.database_path, backup)
    load(cfg, files[1:4])
    assert everything(gold.analytics_path(cfg)) == everything(cfg.database_path)
    shutil.copyfile(backup, cfg.database_path)                      # the restore
    staging.process_files(cfg, files[4:6], move=False, refresh_gold=False)
    con = duckdb.connect(str(cfg.database_path))
    try:
        stats = gold.publish(cfg, con)
    finally:
        con.close()
    # the older generation was made at exactly the backup's state (the token the backup names): it
    # is brought forward; the newer one, from the lost timeline, names a token the restored
    # warehouse never saw and is never applied to
    assert stats["publish_mode"] == "incremental"
    published, source = everything(gold.analytics_path(cfg)), everything(cfg.database_path)
    assert published == source
    with duckdb.connect(str(cfg.database_path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM fct_events").fetchall()[0][0] == len(published["fct_events"])
    run = load(cfg, files[6:7])                                     # the lost timeline's generation: a copy
    assert everything(gold.analytics_path(cfg)) == everything(cfg.database_path)
    con = duckdb.connect(str(cfg.database_path))
    try:
        assert gold.publish(cfg, con)["publish_mode"] == "incremental"   # and incremental again afterwards
    finally:
        con.close()
    assert everything(gold.analytics_path(cfg)) == everything(cfg.database_path)


def test_a_missing_warehouse_after_loads_is_one_line_and_no_fresh_start(project, files):
    for path in files[:2]:
        shutil.copyfile(path, project / "archive" / path.name)
        shutil.copyfile(path, project / "staging" / path.name)
    first = run_ps(project)                                          # a first run: archive + staging only
    assert first.returncode == 0, first.stderr
    assert len(list((project / "processed").glob("*.jsonl"))) == 2
    (project / "warehouse" / "nelo.duckdb").unlink()
    shutil.copyfile(files[2], project / "staging" / files[2].name)
    out = run_ps(project)
    assert out.returncode == 1 and out.stderr.count("\n") == 1
    assert "warehouse" in out.stderr and "is missing" in out.stderr and "rebuild_warehouse.py" in out.stderr
    assert not (project / "warehouse" / "nelo.duckdb").exists()
    assert (project / "staging" / files[2].name).exists()           # not moved on
    gt = subprocess.run([sys.executable, str(ROOT / "gold_transforms.py"), "--config", str(project / "config.json")],
                        capture_output=True, text=True)
    assert gt.returncode == 1 and "is missing" in gt.stderr and not (project / "warehouse" / "nelo.duckdb").exists()


def test_a_warehouse_deleted_during_a_run_stops_the_run(files, tmp_path, monkeypatch):
    cfg = make_project(tmp_path)
    for path in files[:1]:
        shutil.copyfile(path, Path(cfg.staging_dir) / path.name)
    assert staging.process_files(cfg, staging.staging_files(cfg)).ok
    for path in files[1:4]:
        shutil.copyfile(path, Path(cfg.staging_dir) / path.name)
    real = staging._load_paths

    def load_then_lose(*args, **kwargs):
        result = real(*args, **kwargs)
        Path(cfg.database_path).unlink()                             # someone deletes it mid-run
        return result

    monkeypatch.setattr(staging, "GROUP_MAX_FILES", 1)               # a file a transaction
    monkeypatch.setattr(staging, "_load_paths", load_then_lose)
    with pytest.raises(warehouse.WarehouseMissing, match="is missing"):
        staging.process_files(cfg, staging.staging_files(cfg))
    assert not Path(cfg.database_path).exists()                      # no empty warehouse made
    assert [p.name for p in staging.staging_files(cfg)] == [p.name for p in files[2:4]]


def test_rebuild_from_archive_gives_back_every_gold_answer(project, files):
    for path in files[:5]:
        shutil.copyfile(path, project / "archive" / path.name)
        shutil.copyfile(path, project / "staging" / path.name)
    assert run_ps(project).returncode == 0
    analytics = project / "warehouse" / "analytics.duckdb"
    before = gold_only(analytics)
    assert sum(len(r) for r in before.values()) > 50
    base = [sys.executable, str(ROOT / "rebuild_warehouse.py"), "--config", str(project / "config.json")]
    refused = subprocess.run(base, capture_output=True, text=True)
    assert refused.returncode == 1 and "exists" in refused.stderr       # never over a live warehouse
    (project / "warehouse" / "nelo.duckdb").unlink()
    dry = subprocess.run(base + ["--dry-run"], capture_output=True, text=True)
    assert dry.returncode == 0 and dry.stdout.count("would load") == 5 and not (project / "warehouse" / "nelo.duckdb").exists()
    out = subprocess.run(base, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert gold_only(project / "warehouse" / "nelo.duckdb") == before
    assert gold_only(analytics) == before
    assert everything(analytics) == everything(project / "warehouse" / "nelo.duckdb")
    shutil.copyfile(files[5], project / "staging" / files[5].name)  # and the job carries on
    shutil.copyfile(files[5], project / "archive" / files[5].name)
    assert run_ps(project).returncode == 0
    assert everything(analytics) == everything(project / "warehouse" / "nelo.duckdb")


def test_killed_publications_leftovers_are_cleaned_at_the_next_run(files, tmp_path):
    cfg = make_project(tmp_path)
    load(cfg, files[:1])
    folder = Path(cfg.database_path).parent
    stale = [folder / ".analytics.duckdb.99999.tmp", folder / ".analytics.duckdb.99999.tmp.wal",
             folder / ".team_finance.duckdb.4242.tmp", folder / ".analytics_b.duckdb.4243.tmp",
             folder / ".analytics_base.duckdb"]                       # what an earlier version kept
    for path in stale:
        shutil.copyfile(gold.analytics_path(cfg), path)                # full-size, as a kill leaves them
    wal = folder / "analytics.duckdb.wal"
    wal.write_bytes(b"\x00" * 4096 + b"stale wal")                     # DuckDB would replay it into the new file
    (folder / "analytics.duckdb.wal").chmod(0o600)
    load(cfg, files[1:2])
    assert not any(p.exists() for p in stale) and not wal.exists()
    assert sorted(p.name for p in folder.iterdir() if ".tmp" in p.name) == []
    with duckdb.connect(str(gold.analytics_path(cfg)), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM vw_coupon_impact").fetchall()[0][0] > 0
    assert (folder / "nelo.duckdb").exists() and all(g.exists() for g in gold.gen_paths(cfg))


def test_a_warehouse_deleted_inside_a_transaction_is_never_committed_into(files, tmp_path, monkeypatch):
    """Deleted while several files load together: DuckDB would commit into the unlinked file and
    the files would move to processed/ as loaded. The load checks the file before COMMIT."""
    cfg = make_project(tmp_path)
    shutil.copyfile(files[0], Path(cfg.staging_dir) / files[0].name)
    assert staging.process_files(cfg, staging.staging_files(cfg)).ok
    for path in files[1:4]:
        shutil.copyfile(path, Path(cfg.staging_dir) / path.name)
    real = staging.silver.apply_batch

    def lose_it(con, cfg_, params):
        Path(cfg.database_path).unlink()                             # deleted inside the transaction
        return real(con, cfg_, params)

    monkeypatch.setattr(staging.silver, "apply_batch", lose_it)
    with pytest.raises(warehouse.WarehouseMissing, match="missing"):
        staging.process_files(cfg, staging.staging_files(cfg))
    assert not Path(cfg.database_path).exists()
    assert [p.name for p in staging.staging_files(cfg)] == [p.name for p in files[1:4]]
