"""What the 16k batch on a big history cannot do without: the writes its outputs need, at the
cost of the plainest statements that make them, against the 2 s target.

``python -m bench.batch_floors --work DIR --history N`` takes the history ``python -m bench
--work DIR`` prepared, loads its previous batch untimed into a copy (as the bench's incremental
case does), runs the timed batch as the field does (the publication beside the lake export) and
records what it wrote: the load's rows (its journal keys, its new rows), the keys the
publication applied to the spare analytics generation (two batches'), and the partitions the
lake export wrote (checking that its publication was the one incremental one from the spare
generation's mark that this arithmetic assumes). The rows are gathered untimed into memory (the
publication's own statements, ``gold._apply_keys``, pick the journal's; the export's own COPY
writes the partitions, read back). Then it times, round-robin, at DuckDB's default threads and
at one (the lower medians count), only the writing of those rows the plainest way:

- ``warehouse_rows``: the load's rows (stg_events' new rows, and every Silver row its journal
  names) into an empty DuckDB file, one transaction, committed to its WAL. The real commit
  writes at least these, into an 8 GB file, checkpointed, after deleting the rows they replace;
- ``generation_rows``: the publication's rows into an empty file in the analytics storage
  version, committed and checkpointed (the published file holds everything, no WAL). The real
  one also deletes the replaced rows and reads its rows from the warehouse;
- ``lake_rows``: the export's partitions, one Parquet file each with its options, without its
  reads, fingerprints, manifests or renames.

Attaching the empty files, checking what was written and removing it are not timed.

The verdict: the publication and the export read committed rows, so they follow the commit, and
they share the cores. The writes alone take at least
``warehouse + max(generation, (generation CPU + lake CPU) / cores)`` seconds (the lake's
partitions are files of their own, so its wall time alone bounds nothing); what is left
of the target is all that parsing, the 16 Silver models, the 8 checks and everything else may
take, printed beside what they take in the timed run. Not a test; figures for bench/RESULTS.md.

    python -m bench --work /work/benchwork --cases incremental_on_5M     # prepares history_5000000
    python -m bench.batch_floors --work /work/benchwork --history 5000000
"""
from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import duckdb
import pyarrow as pa

from nelo_etl import gold, lakehouse
from nelo_etl.cpus import usable_cpus
from nelo_etl.db import connect

from . import case
from .floors import measure

TARGET_S = 2.0


@dataclass
class Recorded:
    """What the timed batch wrote, and what it took."""
    load_id: int
    journal: Any                    # publish_journal rows the publication applied (an Arrow table)
    spare_mark: int                 # the spare generation's journal id before the publication
    published_upto: int
    partitions: list = field(default_factory=list)     # (LakeTable, partition, columns, after_load)
    lake_rows: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    split: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)


def record_batch(base: Path, data: Path, work: Path) -> tuple[Any, Recorded]:
    """The bench's timed batch on a field copy at ``work``, with what it wrote recorded. The
    journal the publication applies is read before the run (the rows the spare generation lacks)
    and after it (the batch's own; the publication trims only what both generations hold), so
    nothing is added to the timed run but a list append per lake partition."""
    cfg, _lacking = case.field_copy(base, data, work)
    con = connect(cfg.database_path, 60)
    try:
        (spare_mark,), = con.execute("SELECT min(journal_id) FROM publish_gens").fetchall()
        before = con.sql("SELECT * FROM publish_journal WHERE journal_id > $m", params={"m": spare_mark}).to_arrow_table()
    finally:
        con.close()
    partitions: list = []
    published: list[dict] = []
    real_write, real_update = lakehouse._write_partition, gold.update_generation

    def recording(con, t, p, columns, local, after_load=None, stop=None):
        partitions.append((t, p, columns, after_load))
        return real_write(con, t, p, columns, local, after_load, stop)

    def updating(*a, **k):
        published.append(real_update(*a, **k))
        return published[-1]

    lakehouse._write_partition, gold.update_generation = recording, updating
    try:
        run, seconds, cpu_s, split = case.timed_run(cfg, [data / case.BATCH_FILE])
    finally:
        lakehouse._write_partition, gold.update_generation = real_write, real_update
    if not run.ok or run.lake is None or not isinstance(run.lake, lakehouse.ExportResult):
        raise SystemExit(f"the timed batch did not load, publish and export: {[f.line() for f in run.files]}, "
                         f"lake {run.lake!r}")
    con = connect(cfg.database_path, 60)
    try:
        (load_id,), = con.execute("SELECT max(load_id) FROM stg_events").fetchall()
        after = con.sql("SELECT * FROM publish_journal WHERE journal_id > $m",
                        params={"m": max(before["journal_id"].to_pylist() or [spare_mark])}).to_arrow_table()
        (upto,), = con.execute("SELECT max(journal_id) FROM publish_gens").fetchall()
    finally:
        con.close()
    journal = pa.concat_tables([before, after])
    # the journal arithmetic holds only for one incremental publication from the spare's mark (a
    # copy of the live generation, a full one or a retry would have published other rows)
    applied = sum(1 for j in journal["journal_id"].to_pylist() if spare_mark < j <= upto)
    if len(published) != 1 or published[0]["publish_mode"] != "incremental" or published[0]["publish_keys"] != applied:
        raise SystemExit(f"the timed batch's publication was not one incremental one of the {applied} journal rows "
                         f"recorded: {published}")
    if load_id not in set(journal["load_id"].to_pylist()):
        raise SystemExit(f"the journal holds no row of the timed load {load_id}")
    return cfg, Recorded(load_id=load_id, journal=journal, spare_mark=spare_mark, published_upto=upto,
                         partitions=partitions, lake_rows=sum(run.lake.rows.values()), seconds=seconds,
                         cpu_s=cpu_s, split=split, stages=case.merged_stages(run))


class BatchFloors:
    """The rows the batch wrote, held in memory (gathered untimed from the warehouse after the
    batch, attached read-only as ``w``; the recorded journal shadows its own, which the
    publication trimmed), and the floor statements that write them: only the writes are timed."""

    def __init__(self, cfg: Any, rec: Recorded, scratch: Path) -> None:
        self.cfg, self.rec, self.scratch = cfg, rec, scratch
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'").fetchall()
        self.con.execute("ATTACH $p AS w (READ_ONLY)", {"p": str(cfg.database_path)}).fetchall()
        self.con.execute("USE w").fetchall()
        self.con.register("recorded_journal", rec.journal)
        self.con.execute("CREATE TEMP TABLE publish_journal AS SELECT * FROM recorded_journal").fetchall()
        self.con.unregister("recorded_journal")
        (load_from, load_upto), = self.con.execute(
            "SELECT min(journal_id) - 1, max(journal_id) FROM publish_journal WHERE load_id = $l",
            {"l": rec.load_id}).fetchall()
        self.rows: dict[str, int] = {}
        self.tables: dict[str, list[str]] = {}
        self.stg_rows = 0
        self._gather("warehouse_rows", load_from, load_upto, stg_load=rec.load_id)
        self._gather("generation_rows", rec.spare_mark, rec.published_upto)
        self._gather_lake()

    def _gather(self, name: str, done: int, upto: int, stg_load: int | None = None) -> None:
        """The rows the journal names in (done, upto] (and stg_events' rows of ``stg_load``) into
        the in-memory database ``name``, by the publication's own statements (gold._apply_keys)."""
        con = self.con
        con.execute("ATTACH ':memory:' AS pub_base").fetchall()
        pending = gold.journal_pending(con, done, upto)      # the publication's own reading of the journal
        types = gold.table_column_types(con, [table for table, *_ in pending], database="w")
        for table, whole, _count, key_json in pending:
            con.execute(f"CREATE TABLE pub_base.{table} AS SELECT * FROM main.{table} LIMIT 0").fetchall()
            if whole:
                con.execute(f"INSERT INTO pub_base.{table} SELECT * FROM main.{table}").fetchall()
            else:
                gold._apply_keys(con, table, done, upto, types[table], list(json.loads(key_json)))
        if stg_load is not None:
            con.execute("CREATE TABLE pub_base.stg_events AS SELECT * FROM main.stg_events WHERE load_id = $l",
                        {"l": stg_load}).fetchall()
        self.tables[name] = [r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'pub_base' ORDER BY table_name").fetchall()]
        con.execute(f"ATTACH ':memory:' AS {name}").fetchall()
        for table in self.tables[name]:
            con.execute(f"CREATE TABLE {name}.{table} AS SELECT * FROM pub_base.{table}").fetchall()
        con.execute("DETACH pub_base").fetchall()
        self.rows[name] = sum(con.execute(f"SELECT count(*) FROM {name}.{t}").fetchall()[0][0] for t in self.tables[name])
        if stg_load is not None:
            self.stg_rows = con.execute(f"SELECT count(*) FROM {name}.stg_events").fetchall()[0][0]

    def _gather_lake(self) -> None:
        """Every partition the export wrote, as it wrote it (its own COPY, lakehouse._write_partition),
        read back into the in-memory database ``lake_rows``."""
        folder = self.scratch / "lake_gather"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        lake_con = duckdb.connect(str(self.cfg.database_path), read_only=True)
        try:
            lake_con.execute("SET TimeZone = 'UTC'").fetchall()
            for n, (t, p, columns, after_load) in enumerate(self.rec.partitions):
                lakehouse._write_partition(lake_con, t, p, columns, folder / f"p{n}.parquet", after_load)
        finally:
            lake_con.close()
        self.con.execute("ATTACH ':memory:' AS lake_rows").fetchall()
        self.tables["lake_rows"] = [f"p{n}" for n in range(len(self.rec.partitions))]
        for table in self.tables["lake_rows"]:
            self.con.execute(f"CREATE TABLE lake_rows.{table} AS SELECT * FROM read_parquet($f)",
                             {"f": str(folder / f"{table}.parquet")}).fetchall()
        shutil.rmtree(folder, ignore_errors=True)
        self.rows["lake_rows"] = sum(self.con.execute(f"SELECT count(*) FROM lake_rows.{t}").fetchall()[0][0]
                                     for t in self.tables["lake_rows"])
        if self.rows["lake_rows"] != self.rec.lake_rows:
            raise RuntimeError(f"the export's partitions hold {self.rows['lake_rows']} rows, it wrote {self.rec.lake_rows}")

    def _write_file(self, name: str, version: str | None, checkpoint: bool) -> tuple[Callable, Callable, Callable]:
        """The in-memory rows ``name`` into an empty DuckDB file, one transaction, committed (and
        checkpointed when ``checkpoint``): (setup, timed, finish). Untimed around it: attaching
        the empty file; checking its rows, detaching (which checkpoints what the WAL holds) and
        removing it."""
        path = self.scratch / f"{name}.duckdb"
        con = self.con

        def setup() -> None:
            for p in (path, Path(f"{path}.wal")):
                p.unlink(missing_ok=True)
            if version:
                con.execute("ATTACH $p AS dst (STORAGE_VERSION $v)", {"p": str(path), "v": version}).fetchall()
            else:
                con.execute("ATTACH $p AS dst", {"p": str(path)}).fetchall()

        def timed() -> None:
            con.execute("BEGIN").fetchall()
            try:
                for table in self.tables[name]:
                    con.execute(f"CREATE TABLE dst.{table} AS SELECT * FROM {name}.{table}").fetchall()
                con.execute("COMMIT").fetchall()
            except BaseException:
                con.execute("ROLLBACK").fetchall()
                raise
            if checkpoint:
                con.execute("CHECKPOINT dst").fetchall()

        def finish() -> None:
            try:
                got = sum(con.execute(f"SELECT count(*) FROM dst.{t}").fetchall()[0][0] for t in self.tables[name])
                if got != self.rows[name]:
                    raise RuntimeError(f"{name}: wrote {got} rows, not {self.rows[name]}")
            finally:
                con.execute("DETACH DATABASE IF EXISTS dst").fetchall()
                for p in (path, Path(f"{path}.wal")):
                    p.unlink(missing_ok=True)

        return setup, timed, finish

    def warehouse_rows(self) -> tuple[Callable, Callable, Callable]:
        # committed to its WAL only: the real commit checkpoints the warehouse too (a floor may
        # leave out work, never add it)
        return self._write_file("warehouse_rows", None, checkpoint=False)

    def generation_rows(self) -> tuple[Callable, Callable, Callable]:
        # the published file holds everything (no WAL): the publication checkpoints it
        return self._write_file("generation_rows", self.cfg.analytics_storage_version, checkpoint=True)

    def lake_rows(self) -> tuple[Callable, Callable, Callable]:
        """The export's partitions from memory, one Parquet file each, as its COPY writes them."""
        folder = self.scratch / "lake_rows"
        written = [0]

        def setup() -> None:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            written[0] = 0

        def timed() -> None:
            for table in self.tables["lake_rows"]:
                target = str(folder / f"{table}.parquet").replace("'", "''")
                written[0] += self.con.execute(f"COPY lake_rows.{table} TO '{target}' ({lakehouse.PARQUET_OPTIONS})"
                                               ).fetchall()[0][0]

        def finish() -> None:
            shutil.rmtree(folder, ignore_errors=True)
            if written[0] != self.rows["lake_rows"]:
                raise RuntimeError(f"lake_rows: wrote {written[0]} rows, not {self.rows['lake_rows']}")

        return setup, timed, finish

    def measure(self, runs: int) -> dict[str, tuple[float, float]]:
        """Each floor ``runs`` times, round-robin (floors.measure), at DuckDB's default threads and
        at one (parallel work costs CPU of its own); per floor the lower median wall time and the
        lower median CPU."""
        cases = {"warehouse_rows": self.warehouse_rows(), "generation_rows": self.generation_rows(),
                 "lake_rows": self.lake_rows()}
        default = self.con.execute("SELECT current_setting('threads')").fetchall()[0][0]
        figures = []
        try:
            for threads in (default, 1):
                self.con.execute(f"SET threads = {int(threads)}").fetchall()
                figures.append(measure(cases, runs))
        finally:
            self.con.execute(f"SET threads = {int(default)}").fetchall()
        return {name: (min(f[name][0] for f in figures), min(f[name][1] for f in figures)) for name in cases}

    def close(self) -> None:
        self.con.close()


def verdict(floors: dict[str, tuple[float, float]], cores: int, target_s: float = TARGET_S) -> dict[str, float]:
    """The writes' least wall time: the warehouse's before the commit, then the generation's and
    the lake's side by side on ``cores``: no shorter than the generation's (one file, one
    transaction), nor than their CPU shared out. The lake's own wall time does not bound it: its
    partitions are files of their own, which could be written side by side. What is left of
    ``target_s`` is for everything else."""
    wh, gen, lake = floors["warehouse_rows"], floors["generation_rows"], floors["lake_rows"]
    after = max(gen[0], (gen[1] + lake[1]) / cores)
    writes = wh[0] + after
    return {"warehouse_s": wh[0], "after_commit_s": after, "writes_s": writes, "left_s": target_s - writes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_floors", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="where `python -m bench --work` keeps its histories")
    parser.add_argument("--history", type=int, default=5_000_000)
    parser.add_argument("--batch", type=int, default=16_000, help="the batch size the bench ran with (300 with --smoke)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each floor, round-robin; medians (default 3)")
    args = parser.parse_args(argv)
    base, data = case.prepared_history(args.work, args.history, args.batch)
    target = args.work / f"batch_floors_{args.history}"
    try:
        cfg, rec = record_batch(base, data, target)
        scratch = target / "floors"
        scratch.mkdir(exist_ok=True)
        floors = BatchFloors(cfg, rec, scratch)
        try:
            figures = floors.measure(args.runs)
        finally:
            floors.close()
        cores = usable_cpus()
        v = verdict(figures, cores)
        st = rec.stages
        print(f"history {args.history:,} events, batch file {case.BATCH_FILE}, {cores} cores; the timed run: "
              f"{rec.seconds:.2f} s wall, {rec.cpu_s:.2f} CPU s (to the commit {rec.split['load_s']:.2f} s / "
              f"{rec.split['load_cpu_s']:.2f} CPU s; after it {rec.split['after_s']:.2f} s / {rec.split['after_cpu_s']:.2f})")
        print(f"  its parts: stage {st.get('stage', 0):.2f} s, silver {st.get('silver', 0):.2f} s, checks "
              f"{st.get('checks', 0):.2f} s, commit {st.get('commit', 0):.2f} s; publication {st.get('publish_s', 0):.2f} s "
              f"beside the lake export {st.get('lake_export_s', 0):.2f} s")
        for name, (wall, cpu) in figures.items():
            print(f"floor {name:16s} {floors.rows[name]:>10,} rows  {wall:6.3f} s  {cpu:6.3f} CPU s")
        print(f"  the load's rows: stg_events {floors.stg_rows:,} rows, Silver the rest; the publication's: two "
              f"batches' (the spare generation lags by two); the lake's: {len(rec.partitions)} partition files")
        print(f"writes alone: {v['writes_s']:.2f} s (warehouse {v['warehouse_s']:.2f} s, then {v['after_commit_s']:.2f} s "
              f"for the generation beside the lake); left of the {TARGET_S:.0f} s target for parsing, 16 Silver models, "
              f"8 checks and the rest: {v['left_s']:.2f} s; the timed run's wall time less the writes: "
              f"{rec.seconds - v['writes_s']:.2f} s")
    finally:
        shutil.rmtree(target, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
