"""Faults of the lakehouse export: a crash mid-export, and a lake that cannot be written. Neither
loses anything: the batches stay committed, and the next export finishes the job."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from nelo_etl import lakehouse, staging
from nelo_etl.config import load_config

from ..conftest import copy_samples, write_config
from ..lake_helpers import rows, silver_relation, table_columns

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


def _lake_equals_warehouse(cfg, root: Path) -> list[str]:
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        bad = []
        for t in lakehouse.TABLES:
            columns = table_columns(con, t.name, drop_metadata=False)
            try:
                lake_rows = rows(con, silver_relation(str(root), t.name), columns)
            except duckdb.Error:
                lake_rows = None
            if rows(con, t.name, columns) != lake_rows:
                bad.append(t.name)
        return bad
    finally:
        con.close()


def test_a_crash_mid_export_is_finished_by_the_next_export(project, tmp_path):
    cfg = load_config(write_config(project, lakehouse_path=None))
    run = staging.process_files(cfg, [copy_samples(project / "staging")])
    assert run.ok and run.lake is None                 # no lake configured: no export
    lake = lakehouse.open_lake(str(tmp_path / "lake"))
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            lakehouse.export(con, lake, tmp_path / "work", crash_after=5)
        assert _lake_equals_warehouse(cfg, tmp_path / "lake")          # half done
        # the partitions written ahead (two at a time) and never put in place leave no temp file
        assert [f for f in (tmp_path / "lake").rglob("*") if ".tmp" in f.name] == []
        # the manifests never claim a partition the lake does not hold
        for manifest in (tmp_path / "lake").rglob(lakehouse.MANIFEST):
            for part in json.loads(manifest.read_text())["partitions"]:
                folder = manifest.parent if part == "*" else manifest.parent / f"{lakehouse.PARTITION}={part}"
                assert (folder / lakehouse.PART_FILE).is_file()
        finished = lakehouse.export(con, lake, tmp_path / "work")
        assert sum(finished.written.values()) > 0
        assert lakehouse.export(con, lake, tmp_path / "work").written == {}
    finally:
        con.close()
    assert _lake_equals_warehouse(cfg, tmp_path / "lake") == []
    assert not list((tmp_path / "work").glob("lake-export-*"))       # temp files cleaned


def test_an_unwritable_lake_fails_the_run_but_loses_nothing(project):
    blocker = project / "not_a_folder"
    blocker.write_text("a file where the lake should be")
    cfg = load_config(write_config(project, lakehouse_path=str(blocker / "lake")))
    run = staging.process_files(cfg, [copy_samples(project / "staging")])
    assert [f.status for f in run.files] == ["committed"]
    assert isinstance(run.lake, str) and run.lake.startswith("lake export failed")
    assert not run.ok                                   # exit 1: someone must look
    # fixed: the next export brings the lake in line, nothing was lost
    cfg = load_config(write_config(project, lakehouse_path="lake"))
    assert lakehouse.export_after_run(cfg).written
    assert _lake_equals_warehouse(cfg, project / "lake") == []


def test_a_table_whose_columns_changed_is_rewritten_whole_even_after_a_crash(project, tmp_path):
    """An upgrade that rebuilds Silver in a new shape (v3: fct_orders gained recomputed_from_ts)
    commits no new load, so a scoped export would leave the old partitions in the old shape and
    readers of the folder would meet two schemas. The manifest records the columns; a change
    rewrites every partition, and a crash half way leaves the rest owed."""
    from nelo_etl.simulate import SimConfig, Simulator, write_batches

    cfg = load_config(write_config(project, lakehouse_path=None))
    (simulated,) = write_batches(Simulator(SimConfig.chaos(events=300, seed=11)).messages(), str(project / "staging"), 1)
    assert staging.process_files(cfg, [copy_samples(project / "staging"), Path(simulated)]).ok
    lake = lakehouse.open_lake(str(tmp_path / "lake"))
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        lakehouse.export(con, lake, tmp_path / "work")
        assert lakehouse.export(con, lake, tmp_path / "work").written == {}
    finally:
        con.close()
    manifest = tmp_path / "lake" / "silver" / "fct_orders" / lakehouse.MANIFEST
    assert ["recomputed_from_ts", "TIMESTAMP"] in json.loads(manifest.read_text())["columns"]
    parts = len(json.loads(manifest.read_text())["partitions"])
    con = duckdb.connect(str(cfg.database_path))
    try:    # the shape changes without a load (as an upgrade's rebuild does)
        con.execute("ALTER TABLE fct_orders DROP COLUMN recomputed_from_ts").fetchall()
    finally:
        con.close()
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        fct_orders = [t for t in lakehouse.TABLES if t.name == "fct_orders"]
        assert parts >= 2                   # the samples' orders fall on more than one date
        with pytest.raises(RuntimeError, match="simulated crash"):
            lakehouse.export(con, lake, tmp_path / "work", tables=fct_orders, crash_after=1)
        # the manifest still says the old columns: the next export knows the rest is owed
        assert ["recomputed_from_ts", "TIMESTAMP"] in json.loads(manifest.read_text())["columns"]
        done = lakehouse.export(con, lake, tmp_path / "work")
        assert done.written == {"fct_orders": parts}
        assert lakehouse.export(con, lake, tmp_path / "work").written == {}
    finally:
        con.close()
    assert ["recomputed_from_ts", "TIMESTAMP"] not in json.loads(manifest.read_text())["columns"]
    for part in (tmp_path / "lake" / "silver" / "fct_orders").rglob(lakehouse.PART_FILE):
        names = [r[0] for r in duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{part}')").fetchall()]
        assert "recomputed_from_ts" not in names
    assert _lake_equals_warehouse(cfg, tmp_path / "lake") == []


def test_a_crash_while_partitions_are_written_ahead_leaves_no_temp_file(project, tmp_path):
    """Partitions are written two at a time ahead of the one put in place: a failure there
    must not leave the ones in flight as hidden temp files beside the lake's partitions."""
    from nelo_etl.simulate import SimConfig, Simulator, write_batches

    cfg = load_config(write_config(project, lakehouse_path=None))
    (simulated,) = write_batches(Simulator(SimConfig.chaos(events=300, seed=11)).messages(), str(project / "staging"), 1)
    assert staging.process_files(cfg, [Path(simulated)]).ok
    lake = lakehouse.open_lake(str(tmp_path / "lake"))
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        staged = [t for t in lakehouse.TABLES if t.name == "stg_events"]
        assert len(lakehouse.fingerprints(con, staged[0])) >= 4
        with pytest.raises(RuntimeError, match="simulated crash after 1 "):
            lakehouse.export(con, lake, tmp_path / "work", tables=staged, crash_after=1)
        assert [f.name for f in (tmp_path / "lake").rglob("*") if ".tmp" in f.name] == []
        assert len(list((tmp_path / "lake").rglob(lakehouse.PART_FILE))) == 1
        lakehouse.export(con, lake, tmp_path / "work")
    finally:
        con.close()
    assert _lake_equals_warehouse(cfg, tmp_path / "lake") == []
