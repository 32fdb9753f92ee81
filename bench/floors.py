"""What a 1M-event end-to-end run cannot do without: the CPU seconds of the plainest DuckDB
statement for each output the run must write, against what the issue's time target holds.

``python -m bench.floors`` loads the bench's one-file traffic (``--events``, 1M by default)
through ``process_files`` once, untimed, into a scratch workspace, then times, round-robin:

- ``read_json``: DuckDB reads the file's JSON lines into a table (the target's own floor, as the
  bench's ``floor_read_json`` case; the bodies are not even parsed);
- ``warehouse_tables``: ``CREATE TABLE AS`` of stg_events and every Silver table into a new
  DuckDB file, committed and checkpointed (the warehouse must hold them);
- ``generation_copy``: the same for the Silver tables into a file in the analytics storage
  version (the first publication writes them);
- the lake, three ways, the cheapest counting: ``lake_export``, the lake export itself into an
  empty lake (it also fingerprints every partition); ``lake_copies``, one plain ``COPY`` per
  partition of the export's columns; ``lake_partition_by``, one ``COPY ... PARTITION_BY`` per table;
- ``read_stg_events``, ``read_silver``: every column of those tables read (``max(COLUMNS(*))``).
  The floors read their rows from the warehouse; the net figure takes those reads off
  (stg_events twice, Silver three times for the floors with the lake; once and twice without),
  leaving the writing.

Every case runs with DuckDB's default threads and with one thread (parallel work costs CPU of
its own); the lower CPU counts. The target is 6x the wall time of ``read_json`` with the default
threads, in the same run. The verdict is given with the lake export (on by default: after every
committed run) and without it.

CPU is the process's user + system time, every thread. On n cores a wall time of w seconds holds
at most n*w CPU seconds: when these writes alone need more than the target allows, this design
(these outputs, written by DuckDB) cannot meet the target on this machine, however it parses,
computes Silver or checks. ``--uncompressed`` times the two DuckDB
files with ``force_compression = 'uncompressed'`` as well (not a setting the product would ship:
the absolute floor). Not a test; figures for bench/RESULTS.md.

    python -m bench.floors                       # 1M events, 3 runs (about 12 minutes here)
    python -m bench.floors --events 20000 --runs 1 --uncompressed
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import duckdb

from nelo_etl import lakehouse, silver
from nelo_etl.config import load_config
from nelo_etl.cpus import usable_cpus
from nelo_etl.staging import process_files

from .case import READ_JSON_FLOOR, _cpu_seconds as _cpu, _warm, traffic
from .parsers import workspace


def duckdb_default_threads() -> int:
    """The threads a new DuckDB connection runs with when none is set. DuckDB sizes them from the
    machine (or a cgroup quota), not from the affinity, so this is asked, not assumed."""
    con = duckdb.connect()
    try:
        return int(con.execute("SELECT current_setting('threads')").fetchall()[0][0])
    finally:
        con.close()


class Floors:
    """The floor statements over one loaded warehouse (attached read-only as ``w``), on
    ``threads`` DuckDB threads. Each checks that it wrote every row it was given."""

    def __init__(self, warehouse: Path, source: Path, scratch: Path, storage_version: str, threads: int) -> None:
        self.warehouse, self.source, self.scratch, self.version = warehouse, source, scratch, storage_version
        self.threads = threads
        self.con = self._connect(None)
        self.con.execute("ATTACH $p AS w (READ_ONLY)", {"p": str(warehouse)}).fetchall()
        self.silver = [m.name for m in silver.MODELS]

    def _connect(self, path: Path | None) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(str(path) if path else ":memory:", read_only=path is not None)
        con.execute("SET TimeZone = 'UTC'").fetchall()
        con.execute(f"SET threads = {int(self.threads)}").fetchall()
        return con

    def count(self, table: str) -> int:
        return self.con.execute(f"SELECT count(*) FROM w.{table}").fetchall()[0][0]

    def rows(self) -> tuple[int, int]:
        return self.count("stg_events"), sum(self.count(t) for t in self.silver)

    def read_tables(self, tables: list[str]) -> None:
        for t in tables:
            self.con.execute(f"SELECT max(COLUMNS(*)) FROM w.{t}").fetchall()

    def read_json(self) -> None:
        self.con.execute(READ_JSON_FLOOR, {"p": str(self.source)}).fetchall()
        self.con.execute("DROP TABLE raw").fetchall()

    def _copy_tables(self, name: str, tables: list[str], version: str | None, uncompressed: bool) -> None:
        path = self.scratch / name
        for p in (path, Path(f"{path}.wal")):
            p.unlink(missing_ok=True)
        self.con.execute("SET force_compression = $c", {"c": "uncompressed" if uncompressed else "auto"}).fetchall()
        try:
            if version:
                self.con.execute("ATTACH $p AS dst (STORAGE_VERSION $v)", {"p": str(path), "v": version}).fetchall()
            else:
                self.con.execute("ATTACH $p AS dst", {"p": str(path)}).fetchall()
            try:
                self.con.execute("BEGIN").fetchall()
                try:
                    for t in tables:
                        self.con.execute(f"CREATE TABLE dst.{t} AS SELECT * FROM w.{t}").fetchall()
                        copied = self.con.execute(f"SELECT count(*) FROM dst.{t}").fetchall()[0][0]
                        expected = self.count(t)
                        if copied != expected:
                            raise RuntimeError(f"{name}: {t} holds {copied} rows, not {expected}")
                    self.con.execute("COMMIT").fetchall()
                except BaseException:
                    self.con.execute("ROLLBACK").fetchall()     # or DETACH fails on the aborted transaction
                    raise
                self.con.execute("CHECKPOINT dst").fetchall()
            finally:
                self.con.execute("DETACH DATABASE IF EXISTS dst").fetchall()
        finally:
            self.con.execute("SET force_compression = 'auto'").fetchall()
            for p in (path, Path(f"{path}.wal")):
                p.unlink(missing_ok=True)

    def warehouse_tables(self, uncompressed: bool = False) -> None:
        self._copy_tables("warehouse.duckdb", ["stg_events", *self.silver], None, uncompressed)

    def generation_copy(self, uncompressed: bool = False) -> None:
        self._copy_tables("generation.duckdb", self.silver, self.version, uncompressed)

    def lake_export(self) -> None:
        lake = self.scratch / "lake_export"
        shutil.rmtree(lake, ignore_errors=True)
        con = self._connect(self.warehouse)
        try:
            result = lakehouse.export(con, lakehouse.open_lake(str(lake)), self.scratch / "work")
            self._check_lake(result.rows)
        finally:
            con.close()
            shutil.rmtree(lake, ignore_errors=True)

    def _check_lake(self, rows: dict[str, int]) -> None:
        for t in lakehouse.TABLES:
            got, expected = rows.get(t.name, 0), self.count(t.name)
            if got != expected:
                raise RuntimeError(f"the lake got {got} rows of {t.name}, not {expected}")

    def _lake_copy(self, name: str, per_partition: bool) -> None:
        lake = self.scratch / name
        shutil.rmtree(lake, ignore_errors=True)
        lake.mkdir()
        con = self._connect(self.warehouse)
        written: dict[str, int] = {}
        try:
            for t in lakehouse.TABLES:
                columns = lakehouse._export_select(con, t)          # the export's own columns
                folder = lake / t.name
                folder.mkdir()
                if t.date_expr is None or per_partition:
                    where: list[tuple[str, dict]] = [("", {})]
                    if t.date_expr is not None:
                        days = con.execute(f"SELECT DISTINCT {t.date_expr} FROM {t.name}").fetchall()
                        where = [(f" WHERE {t.date_expr} IS NOT DISTINCT FROM $d", {"d": d}) for (d,) in days]
                    for n, (condition, params) in enumerate(where):
                        target = str(folder / f"part-{n}.parquet").replace("'", "''")
                        written[t.name] = written.get(t.name, 0) + con.execute(
                            f"COPY (SELECT {columns} FROM {t.name}{condition}) TO '{target}' ({lakehouse.PARQUET_OPTIONS})",
                            params).fetchall()[0][0]
                else:
                    target = str(folder).replace("'", "''")
                    written[t.name] = con.execute(
                        f"COPY (SELECT {columns}, {t.date_expr} AS {lakehouse.PARTITION} FROM {t.name}) TO '{target}' "
                        f"({lakehouse.PARQUET_OPTIONS}, PARTITION_BY ({lakehouse.PARTITION}))").fetchall()[0][0]
            self._check_lake(written)
        finally:
            con.close()
            shutil.rmtree(lake, ignore_errors=True)

    def lake_copies(self) -> None:
        self._lake_copy("lake_copies", per_partition=True)

    def lake_partition_by(self) -> None:
        self._lake_copy("lake_partition_by", per_partition=False)

    def close(self) -> None:
        self.con.close()


#: a case: the statements timed, or (setup, timed, finish) with the first and last untimed
Case = Callable[[], None] | tuple[Callable[[], None], Callable[[], None], Callable[[], None]]


def measure(cases: dict[str, Case], runs: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each case, run round-robin."""
    seen: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, case in cases.items():
            setup, timed, finish = case if isinstance(case, tuple) else (None, case, None)
            if setup:
                setup()
            t, c = time.perf_counter(), _cpu()
            try:
                timed()
            finally:
                wall, cpu = time.perf_counter() - t, _cpu() - c
                if finish:
                    finish()
            seen[name].append((wall, cpu))
    return {name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for name, v in seen.items()}


LAKE_WAYS = ("lake_export", "lake_copies", "lake_partition_by")


def budget(cpu: dict[str, float], read_json_wall_s: float, cores: int, ratio: float = 6.0) -> dict[str, float]:
    """The floors' CPU seconds (``cpu``: each case's lower figure; the lake at its cheapest way)
    with the lake and without it, gross and net of their reads of the warehouse, against what
    ``ratio`` times the read_json wall time holds on ``cores`` cores."""
    lake = min(cpu[w] for w in LAKE_WAYS)
    duckdb_files = cpu["read_json"] + cpu["warehouse_tables"] + cpu["generation_copy"]
    stg, sil = cpu["read_stg_events"], cpu["read_silver"]
    target_s = ratio * read_json_wall_s
    return {"lake_cpu_s": lake, "needed_cpu_s": duckdb_files + lake,
            # the warehouse's copy and the lake read stg_events and Silver, the generation Silver
            "net_cpu_s": duckdb_files + lake - 2 * stg - 3 * sil,
            "no_lake_net_cpu_s": duckdb_files - stg - 2 * sil,
            "target_s": target_s, "target_cpu_s": target_s * cores}


def _verdict(needed: float, target: float) -> str:
    return (f"exceed it by {needed - target:.2f}" if needed > target
            else f"fit in it, leaving {target - needed:.2f} for parsing the bodies, Silver, the checks and the team files")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000, help="the traffic's size (bench/data caches it)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each case; medians")
    parser.add_argument("--uncompressed", action="store_true",
                        help="also time the two DuckDB files written without compression")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    (source,) = traffic(args.events, 1)
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="nelo-floors-", dir=args.work))
    try:
        cfg = load_config(workspace(scratch / "run"))
        run = process_files(cfg, [source], move=False)       # untimed: the outputs the floors rewrite
        if not run.ok:
            print("bench.floors: the load failed; no floors", file=sys.stderr)
            return 1
        _warm([source])
        figures: dict[int, dict[str, tuple[float, float]]] = {}
        default_threads = duckdb_default_threads()
        for threads in sorted({default_threads, 1}, reverse=True):      # the default, then one
            floors = Floors(Path(cfg.database_path), source, scratch, cfg.analytics_storage_version, threads)
            try:
                cases: dict[str, Callable[[], None]] = {
                    "read_json": floors.read_json, "warehouse_tables": floors.warehouse_tables,
                    "generation_copy": floors.generation_copy, "lake_export": floors.lake_export,
                    "lake_copies": floors.lake_copies, "lake_partition_by": floors.lake_partition_by,
                    "read_stg_events": lambda: floors.read_tables(["stg_events"]),
                    "read_silver": lambda: floors.read_tables(floors.silver)}
                if args.uncompressed:
                    cases["warehouse_tables_uncompressed"] = lambda: floors.warehouse_tables(uncompressed=True)
                    cases["generation_copy_uncompressed"] = lambda: floors.generation_copy(uncompressed=True)
                if not figures:
                    stg_rows, silver_rows = floors.rows()
                figures[threads] = measure(cases, args.runs)
            finally:
                floors.close()
        cores = usable_cpus()
        default = figures[default_threads]
        low = {name: min(f[name][1] for f in figures.values()) for name in default}
        print(f"{args.events:,} events: stg_events {stg_rows:,} rows, Silver {silver_rows:,} rows; "
              f"{args.runs} run(s), medians, {cores} cores; CPU with {default_threads} threads and with 1")
        for name, (wall, cpu) in default.items():
            print(f"{name:30s} wall {wall:7.2f} s   CPU {cpu:7.2f} s   1 thread CPU {figures[1][name][1]:7.2f} s")
        b = budget(low, default["read_json"][0], cores)
        print(f"6x read_json ({default['read_json'][0]:.2f} s) is {b['target_s']:.2f} s: {b['target_cpu_s']:.2f} CPU s "
              f"on {cores} cores")
        print(f"with the lake (on by default): floors {b['needed_cpu_s']:.2f} CPU s (the lake at {b['lake_cpu_s']:.2f}), "
              f"net of their reads {b['net_cpu_s']:.2f}: they {_verdict(b['net_cpu_s'], b['target_cpu_s'])}")
        print(f"without the lake: net {b['no_lake_net_cpu_s']:.2f}: they {_verdict(b['no_lake_net_cpu_s'], b['target_cpu_s'])}")
        if args.uncompressed:
            plain = dict(low, warehouse_tables=low["warehouse_tables_uncompressed"],
                         generation_copy=low["generation_copy_uncompressed"])
            u = budget(plain, default["read_json"][0], cores)
            print(f"uncompressed DuckDB files, with the lake: net {u['net_cpu_s']:.2f}: they "
                  f"{_verdict(u['net_cpu_s'], u['target_cpu_s'])}")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
