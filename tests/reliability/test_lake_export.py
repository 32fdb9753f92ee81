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


def _added_files(root: Path) -> dict[tuple[str, str], list[str]]:
    """(table, partition) -> the added files the manifests list, for the append-only tables; each
    checked against the folder (part-0 and exactly those)."""
    out = {}
    for t in lakehouse.TABLES:
        if not t.load_column:
            continue
        manifest = json.loads((root / t.folder / lakehouse.MANIFEST).read_text())
        for part in manifest["partitions"]:
            names = manifest["added_files"].get(part, [])
            folder = root / t.folder / f"{lakehouse.PARTITION}={part}"
            assert sorted(f.name for f in folder.glob("*.parquet")) == sorted([lakehouse.PART_FILE] + names)
            out[(t.name, part)] = names
    return out


def _batches(tmp_path: Path, n: int) -> list[Path]:
    from nelo_etl.simulate import SimConfig, Simulator, write_batches

    messages = Simulator(SimConfig.chaos(events=900, seed=31, days=2, late_rate=0.08)).messages()
    return [Path(p) for p in write_batches(messages, str(tmp_path / "batches"), batches=n)]


def test_append_only_partitions_gain_a_file_per_export_and_are_compacted(tmp_path, monkeypatch):
    """stg_events, fct_events, fct_event_items: each export adds a partition's new rows as a file
    of their own (listed in the manifest) instead of rewriting it; a partition that would pass
    MAX_PART_FILES is rewritten as one file. The lake equals the warehouse after every export."""
    from ..silver_helpers import load, make_project

    files = _batches(tmp_path, 5)
    cfg = make_project(tmp_path / "project")
    root = Path(cfg.path).parent / cfg.lakehouse_path
    for f in files[:4]:
        load(cfg, [f])
        assert _lake_equals_warehouse(cfg, root) == []
    grown = {key: names for key, names in _added_files(root).items() if len(names) >= 2}
    assert grown and {t for t, _ in grown} == {"stg_events", "fct_events", "fct_event_items"}
    monkeypatch.setattr(lakehouse, "MAX_PART_FILES", 2)
    load(cfg, [files[4]])
    assert _lake_equals_warehouse(cfg, root) == []
    after = _added_files(root)
    assert all(len(names) <= 1 for names in after.values())
    assert any(after[key] == [] for key in grown)               # compacted into part-0


def test_an_append_only_row_removed_behind_the_export_is_seen_by_the_counts(tmp_path, monkeypatch):
    """The export adds up an append-only table's fingerprints from the manifest and the new rows'
    instead of hashing the older rows again, trusting only their counts. A row removed behind its
    back (an engineer's fix by hand) changes a count: the table is hashed whole, the partition is
    rewritten, and the lake again equals the warehouse."""
    from ..silver_helpers import load, make_project

    files = _batches(tmp_path, 4)
    cfg = make_project(tmp_path / "project")
    root = Path(cfg.path).parent / cfg.lakehouse_path
    added_up: list[tuple[str, bool]] = []
    real = lakehouse._appended

    def recording(con, t, *a):
        now = real(con, t, *a)
        added_up.append((t.name, now is not None))
        return now

    monkeypatch.setattr(lakehouse, "_appended", recording)
    load(cfg, files[:2])
    load(cfg, [files[2]])
    assert ("stg_events", True) in added_up                        # the counts added up: nothing hashed again
    assert _lake_equals_warehouse(cfg, root) == []
    con = duckdb.connect(str(cfg.database_path))
    try:
        # an older load's row in the newest day, which the next batch's scope holds
        removed = con.execute("""
            DELETE FROM stg_events WHERE (event_id, item_index) IN (
                SELECT (event_id, item_index) FROM stg_events
                WHERE load_id < (SELECT max(load_id) FROM stg_events)
                ORDER BY event_ts DESC, event_id, item_index LIMIT 1)""").fetchall()[0][0]
    finally:
        con.close()
    assert removed == 1
    added_up.clear()
    load(cfg, [files[3]])
    assert ("stg_events", False) in added_up                       # a count disagreed: hashed whole
    assert _lake_equals_warehouse(cfg, root) == []


def test_an_added_file_the_manifest_never_recorded_doubles_no_row(tmp_path, monkeypatch):
    """A crash after an added file was put and before the manifest named it (the manifest as it
    was before), then the same export again, then more loads; and a crash after a partition was
    compacted and recorded but before the table's mark moved, then more loads (the partition's
    file holds rows of loads after the mark: the sums no longer add up, so it is rewritten whole
    again, not added to). No row is ever in the lake twice."""
    from ..silver_helpers import load, make_project

    files = _batches(tmp_path, 5)
    cfg = make_project(tmp_path / "project")
    root = Path(cfg.path).parent / cfg.lakehouse_path
    lake = lakehouse.open_lake(str(root))
    appendable = [t for t in lakehouse.TABLES if t.load_column]
    load(cfg, [files[0]])
    before = {t.name: (root / t.folder / lakehouse.MANIFEST).read_text() for t in appendable}
    load(cfg, [files[1]])
    assert any(_added_files(root).values())

    def forget() -> None:
        for t in appendable:
            (root / t.folder / lakehouse.MANIFEST).write_text(before[t.name])

    def export(**kwargs):
        con = duckdb.connect(str(cfg.database_path), read_only=True)
        try:
            return lakehouse.export(con, lake, tmp_path / "work", **kwargs)
        finally:
            con.close()

    forget()
    assert _lake_equals_warehouse(cfg, root) == []              # the file is there, the manifest behind
    assert export().written                                     # the same file again
    assert _lake_equals_warehouse(cfg, root) == []
    forget()
    load(cfg, [files[2]])                                       # its own export: one file for both loads
    assert _lake_equals_warehouse(cfg, root) == []
    staging.process_files(cfg, [files[3]], move=False, refresh_gold=False)   # committed, not exported
    monkeypatch.setattr(lakehouse, "MAX_PART_FILES", 1)        # every partition compacted
    with pytest.raises(RuntimeError, match="simulated crash"):
        export(tables=appendable, crash_after=1)
    monkeypatch.setattr(lakehouse, "MAX_PART_FILES", 24)
    load(cfg, [files[4]])
    assert _lake_equals_warehouse(cfg, root) == []
    _added_files(root)


def test_a_crash_between_the_manifests_saves_writes_the_unnamed_partitions_again(tmp_path, monkeypatch):
    """The manifest is saved once the table is done, or a partition later when MANIFEST_SAVE_SECONDS
    passed: a crash in between leaves added files in place that it does not name yet. The next
    export writes them again under the same names: the lake equals the warehouse, no row twice,
    every folder holds what its manifest lists. (A partition rewritten whole: the next test.)"""
    from ..silver_helpers import load, make_project

    files = _batches(tmp_path, 3)
    cfg = make_project(tmp_path / "project")
    root = Path(cfg.path).parent / cfg.lakehouse_path
    lake = lakehouse.open_lake(str(root))
    load(cfg, files[:2])
    staging.process_files(cfg, [files[2]], move=False, refresh_gold=False)   # committed, not exported
    first = lakehouse.TABLES[0]
    before = (root / first.folder / lakehouse.MANIFEST).read_text()
    monkeypatch.setattr(lakehouse, "MANIFEST_SAVE_SECONDS", 3600)
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            lakehouse.export(con, lake, tmp_path / "work", crash_after=1)
        # a partition of the first table is in place, and its manifest does not name it yet
        assert (root / first.folder / lakehouse.MANIFEST).read_text() == before
        assert _lake_equals_warehouse(cfg, root) != []
        monkeypatch.setattr(lakehouse, "MANIFEST_SAVE_SECONDS", 0)
        assert lakehouse.export(con, lake, tmp_path / "work").written[first.name] >= 1
    finally:
        con.close()
    assert _lake_equals_warehouse(cfg, root) == []
    _added_files(root)


def test_a_crash_after_an_append_only_partition_was_rewritten_whole_doubles_no_row(tmp_path):
    """A partition of an append-only table rewritten whole (``--full``, a compaction, another
    engine's file) holds the rows of the loads after the manifest's mark in its new part-0. A
    crash before the manifest names it must not let the next export add those rows up again as
    an added file: the manifest marks it as being rewritten first. Found by review."""
    from ..silver_helpers import load, make_project

    files = _batches(tmp_path, 2)
    cfg = make_project(tmp_path / "project")
    root = Path(cfg.path).parent / cfg.lakehouse_path
    lake = lakehouse.open_lake(str(root))
    load(cfg, [files[0]])
    staging.process_files(cfg, [files[1]], move=False, refresh_gold=False)   # committed, not exported
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            lakehouse.export(con, lake, tmp_path / "work", full=True, crash_after=1)
        lakehouse.export(con, lake, tmp_path / "work")
    finally:
        con.close()
    assert _lake_equals_warehouse(cfg, root) == []
    _added_files(root)


def test_another_engines_file_in_an_append_only_partition_makes_it_rewritten(tmp_path):
    """A Parquet file the export did not write (Spark's output after a switch of engines) in a
    partition that gained rows: the partition is rewritten whole and the file goes, rather than
    getting an added file beside it (its rows would count twice). Found by review."""
    import shutil

    from ..silver_helpers import load, make_project

    files = _batches(tmp_path, 3)
    cfg = make_project(tmp_path / "project")
    root = Path(cfg.path).parent / cfg.lakehouse_path
    load(cfg, [files[0]])
    t = lakehouse.table("stg_events")
    before = json.loads((root / t.folder / lakehouse.MANIFEST).read_text())["partitions"]
    for folder in (root / t.folder).glob("event_date=*"):
        shutil.copyfile(folder / lakehouse.PART_FILE, folder / "part-00000-spark.snappy.parquet")
    load(cfg, [files[1]])
    manifest = json.loads((root / t.folder / lakehouse.MANIFEST).read_text())
    changed = [p for p in before if manifest["partitions"].get(p) != before[p]]
    assert changed
    for p in changed:
        folder = root / t.folder / f"{lakehouse.PARTITION}={p}"
        assert sorted(f.name for f in folder.glob("*.parquet")) == [lakehouse.PART_FILE]
        assert p not in manifest["added_files"]


def test_a_compaction_that_cannot_remove_the_added_files_is_redone_by_the_next_export(tmp_path, monkeypatch):
    """A compaction puts the new part-0, then removes the added files. When that removal fails (a
    crash, an S3 policy without DeleteObject) the manifest still marks the partition as being
    rewritten, so the next export rewrites it again instead of adding to it: the lake equals the
    warehouse again, no row twice. Found by review."""
    from ..silver_helpers import load, make_project

    files = _batches(tmp_path, 4)
    cfg = make_project(tmp_path / "project")
    root = Path(cfg.path).parent / cfg.lakehouse_path
    load(cfg, [files[0]])
    load(cfg, [files[1]])
    assert any(_added_files(root).values())
    monkeypatch.setattr(lakehouse, "MAX_PART_FILES", 1)            # the next export compacts

    def denied(lake, folder):
        raise OSError("AccessDenied: s3:DeleteObject")

    real = lakehouse._remove_foreign_files
    monkeypatch.setattr(lakehouse, "_remove_foreign_files", denied)
    run = staging.process_files(cfg, [files[2]], move=False)
    assert isinstance(run.lake, str) and "AccessDenied" in run.lake and not run.ok
    marked = [t.name for t in lakehouse.TABLES if t.load_column and lakehouse.REWRITING in
              json.loads((root / t.folder / lakehouse.MANIFEST).read_text())["partitions"].values()]
    assert marked
    monkeypatch.setattr(lakehouse, "_remove_foreign_files", real)
    monkeypatch.setattr(lakehouse, "MAX_PART_FILES", 24)
    load(cfg, [files[3]])
    assert _lake_equals_warehouse(cfg, root) == []
    _added_files(root)


def _side_by_side(monkeypatch, then, slow_copy: bool = False):
    """Make the publication and the lake export meet: each waits (up to 20 s) until the other has
    begun, so they overlap or the wait times out (run one after the other, the first waits in
    vain). The publication then calls ``then``. ``slow_copy``: the export's COPYs take seconds
    (a sum over a large range beside the rows), so a stop finds one running."""
    import threading
    import time

    from nelo_etl import gold

    seen: dict = {}
    export_began, publication_began, copy_running = threading.Event(), threading.Event(), threading.Event()
    real_export, real_publish, real_write = lakehouse.export, gold.publish, lakehouse._write_partition

    def export(*args, **kwargs):
        seen["export_thread"] = threading.current_thread().name
        export_began.set()
        seen["export_saw_publication"] = publication_began.wait(20)
        return real_export(*args, **kwargs)

    def publish(cfg, con, *args, **kwargs):
        publication_began.set()
        seen["publication_saw_export"] = export_began.wait(20)
        if slow_copy:
            seen["copy_running"] = copy_running.wait(20)
            time.sleep(0.5)                 # the COPY statement is under way, not about to start
        return then(real_publish, cfg, con, *args, **kwargs)

    def write(con, t, p, columns, local, after=None, stop=None):
        copy_running.set()
        slow = ", (SELECT sum(r) FROM range(20000000000) AS s(r)) AS slow_probe"
        return real_write(con, t, p, columns + slow if slow_copy else columns, local, after, stop)

    monkeypatch.setattr(lakehouse, "export", export)
    monkeypatch.setattr(gold, "publish", publish)
    monkeypatch.setattr(lakehouse, "_write_partition", write)
    return seen


def test_the_publication_and_the_export_run_together_and_fail_apart(project, monkeypatch):
    cfg = load_config(write_config(project, lakehouse_path="lake"))

    def failing(real, *args, **kwargs):
        raise RuntimeError("simulated publication failure")

    seen = _side_by_side(monkeypatch, failing)
    run = staging.process_files(cfg, [copy_samples(project / "staging")])
    assert seen == {"export_thread": "lake-export", "export_saw_publication": True, "publication_saw_export": True}
    assert [f.status for f in run.files] == ["committed"]
    assert isinstance(run.gold, str) and "simulated publication failure" in run.gold
    assert isinstance(run.lake, lakehouse.ExportResult) and run.lake.written     # exported all the same
    assert _lake_equals_warehouse(cfg, project / "lake") == []


def test_a_stop_during_the_publication_stops_the_export_and_loses_nothing(project, monkeypatch):
    import threading
    import time

    cfg = load_config(write_config(project, lakehouse_path="lake"))
    stopped_at = {}

    def stopped(real, *args, **kwargs):
        stopped_at["t"] = time.monotonic()
        raise KeyboardInterrupt            # what SIGTERM's handler and ^C raise

    seen = _side_by_side(monkeypatch, stopped, slow_copy=True)
    with pytest.raises(KeyboardInterrupt):
        staging.process_files(cfg, [copy_samples(project / "staging")])
    waited = time.monotonic() - stopped_at["t"]
    assert seen["copy_running"]                             # the stop found a COPY running ...
    assert waited < 5, f"the stop waited {waited:.1f} s for the export"     # ... and interrupted it
    assert not [t for t in threading.enumerate() if t.name == "lake-export"]       # joined
    assert [f for f in (project / "lake").rglob("*") if ".tmp" in f.name] == []
    assert not list((project / "work").glob("lake-export-*"))
    monkeypatch.undo()
    assert _lake_equals_warehouse(cfg, project / "lake") != []      # stopped before it was done
    # the connection was closed (the export opens the warehouse read-only on its own here), and
    # the next export brings the lake in line: the batch is committed, nothing was lost
    assert isinstance(lakehouse.export_after_run(cfg), lakehouse.ExportResult)
    assert _lake_equals_warehouse(cfg, project / "lake") == []


def test_a_second_signal_while_the_export_stops_still_waits_for_it(project, monkeypatch):
    """stop_and_wait never leaves the export running under a connection about to close: a second
    ^C while it waits stops the export again and keeps waiting."""
    import threading

    cfg = load_config(write_config(project, lakehouse_path="lake"))
    assert staging.process_files(cfg, [copy_samples(project / "staging")]).ok
    release = threading.Event()

    def export(con, lake, work_dir, stop=None, **kwargs):
        release.wait(20)                    # a statement that only the second stop request ends
        stop.check()
        return lakehouse.ExportResult()

    monkeypatch.setattr(lakehouse, "export", export)
    con = duckdb.connect(str(cfg.database_path))
    try:
        lake = lakehouse.ExportThread(cfg, con).start()
        signals = iter([KeyboardInterrupt()])
        real_join = lake.thread.join

        def join(*args, **kwargs):
            second = next(signals, None)
            if second is not None:
                release.set()               # the export's statement ends only now ...
                raise second                # ... as a second ^C arrives in the wait
            return real_join(*args, **kwargs)

        lake.thread.join = join
        lake.stop_and_wait()                # returns only once the thread is gone, raising nothing
        assert not lake.alive()
        assert isinstance(lake.result, str) and "ExportStopped" in lake.result
    finally:
        con.close()


def test_an_export_out_of_memory_beside_the_publication_runs_again_after_it(project, monkeypatch):
    """The two share one duckdb_memory_limit: an export that runs out of memory beside the
    publication runs once more on its own, after it."""
    cfg = load_config(write_config(project, lakehouse_path="lake"))
    real_export, calls = lakehouse.export, []

    def export(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise duckdb.OutOfMemoryException("Out of Memory Error: simulated")
        return real_export(*args, **kwargs)

    monkeypatch.setattr(lakehouse, "export", export)
    run = staging.process_files(cfg, [copy_samples(project / "staging")])
    assert len(calls) == 2 and run.ok
    assert isinstance(run.lake, lakehouse.ExportResult) and run.lake.written
    assert _lake_equals_warehouse(cfg, project / "lake") == []


@pytest.mark.parametrize("failures", [1, 2])
def test_a_publication_out_of_memory_beside_the_export_runs_again_after_it(project, monkeypatch, failures):
    """The other way round (seen on the first run after a 5M-event backfill: its team files ran
    out of memory while the export wrote the whole lake): the publication runs once more, alone,
    and the run succeeds. Out of memory again is the run's failure, not another attempt; the
    batch stays committed either way."""
    import threading

    from nelo_etl import gold

    cfg = load_config(write_config(project, lakehouse_path="lake"))
    real_publish, export_running = gold.publish, []

    def publish(cfg, con, *args, **kwargs):
        export_running.append(any(t.name == "lake-export" for t in threading.enumerate()))
        if len(export_running) <= failures:
            raise duckdb.OutOfMemoryException("Out of Memory Error: simulated")
        return real_publish(cfg, con, *args, **kwargs)

    monkeypatch.setattr(gold, "publish", publish)
    run = staging.process_files(cfg, [copy_samples(project / "staging")])
    assert len(export_running) == 2 and not export_running[1]      # the second attempt: after the export
    assert [f.status for f in run.files] == ["committed"]
    assert _lake_equals_warehouse(cfg, project / "lake") == []
    if failures == 1:
        assert run.ok and isinstance(run.gold, dict)
        assert (project / "warehouse" / "analytics.duckdb").exists()
    else:
        assert not run.ok and isinstance(run.gold, str) and "OutOfMemory" in run.gold


def test_a_generation_attached_beside_the_warehouse_does_not_reshape_the_export(project, tmp_path):
    """The publication attaches its generation (the Silver tables' names) while the export reads
    the catalog: the export must see the warehouse's columns only, or it takes the generation's
    for a change of shape and rewrites every partition."""
    cfg = load_config(write_config(project, lakehouse_path="lake"))
    assert staging.process_files(cfg, [copy_samples(project / "staging")]).ok
    con = duckdb.connect(str(cfg.database_path))
    try:
        con.execute("ATTACH $p AS pub_base", {"p": str(tmp_path / "gen.duckdb")})
        con.execute("CREATE TABLE pub_base.fct_orders (other_column INTEGER)")
        con.execute("CREATE TABLE pub_base.stg_events (other_column INTEGER)")
        result = lakehouse.export(con, lakehouse.lake_of(cfg), tmp_path / "work")
    finally:
        con.close()
    assert result.written == {}
    assert _lake_equals_warehouse(cfg, project / "lake") == []
