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
- ``lake_export``: the lake export itself into an empty lake, and ``lake_partition_by``: one
  ``COPY ... PARTITION_BY`` per table of the same columns; the cheaper of the two counts;
- ``read_stg_events``, ``read_silver``: every column of those tables read (``max(COLUMNS(*))``).
  The floors above read their rows from the warehouse, which a run computing them would not: the
  net figure takes those reads off (stg_events twice, Silver three times), and so understates.

CPU is the process's user + system time, every thread. On n cores a wall time of w seconds holds
at most n*w CPU seconds: when these writes alone need more than the target allows, no way of
parsing, computing Silver or checking makes the target. ``--uncompressed`` times the two DuckDB
files with ``force_compression = 'uncompressed'`` as well (not a setting the product would ship:
the absolute floor). Not a test; figures for bench/RESULTS.md.

    python -m bench.floors                       # 1M events, 3 runs (about 6 minutes here)
    python -m bench.floors --events 20000 --runs 1 --uncompressed
"""
from __future__ import annotations

import argparse
import os
import resource
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
from nelo_etl.staging import process_files

from .case import _warm, traffic
from .parsers import workspace


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Floors:
    """The floor statements over one loaded warehouse (attached read-only as ``w``)."""

    def __init__(self, warehouse: Path, source: Path, scratch: Path, storage_version: str) -> None:
        self.warehouse, self.source, self.scratch, self.version = warehouse, source, scratch, storage_version
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'").fetchall()
        self.con.execute("ATTACH $p AS w (READ_ONLY)", {"p": str(warehouse)}).fetchall()
        self.silver = [m.name for m in silver.MODELS]

    def rows(self) -> tuple[int, int]:
        count = lambda t: self.con.execute(f"SELECT count(*) FROM w.{t}").fetchall()[0][0]  # noqa: E731
        return count("stg_events"), sum(count(t) for t in self.silver)

    def read_tables(self, tables: list[str]) -> None:
        for t in tables:
            self.con.execute(f"SELECT max(COLUMNS(*)) FROM w.{t}").fetchall()

    def read_json(self) -> None:
        self.con.execute("CREATE OR REPLACE TABLE raw AS SELECT * FROM read_json($p, format = 'newline_delimited', "
                         "columns = {'MessageId': 'VARCHAR', 'Attributes': 'JSON', 'Body': 'VARCHAR'})",
                         {"p": str(self.source)}).fetchall()
        self.con.execute("DROP TABLE raw").fetchall()

    def _copy_tables(self, name: str, tables: list[str], version: str | None, uncompressed: bool) -> None:
        path = self.scratch / name
        for p in (path, Path(f"{path}.wal")):
            p.unlink(missing_ok=True)
        self.con.execute("SET force_compression = $c", {"c": "uncompressed" if uncompressed else "auto"}).fetchall()
        if version:
            self.con.execute("ATTACH $p AS dst (STORAGE_VERSION $v)", {"p": str(path), "v": version}).fetchall()
        else:
            self.con.execute("ATTACH $p AS dst", {"p": str(path)}).fetchall()
        try:
            self.con.execute("BEGIN").fetchall()
            for t in tables:
                self.con.execute(f"CREATE TABLE dst.{t} AS SELECT * FROM w.{t}").fetchall()
            self.con.execute("COMMIT").fetchall()
            self.con.execute("CHECKPOINT dst").fetchall()
        finally:
            self.con.execute("DETACH dst").fetchall()
            self.con.execute("SET force_compression = 'auto'").fetchall()
            path.unlink(missing_ok=True)

    def warehouse_tables(self, uncompressed: bool = False) -> None:
        self._copy_tables("warehouse.duckdb", ["stg_events", *self.silver], None, uncompressed)

    def generation_copy(self, uncompressed: bool = False) -> None:
        self._copy_tables("generation.duckdb", self.silver, self.version, uncompressed)

    def lake_export(self) -> None:
        lake = self.scratch / "lake_export"
        shutil.rmtree(lake, ignore_errors=True)
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            lakehouse.export(con, lakehouse.open_lake(str(lake)), self.scratch / "work")
        finally:
            con.close()
            shutil.rmtree(lake, ignore_errors=True)

    def lake_partition_by(self) -> None:
        lake = self.scratch / "lake_partition_by"
        shutil.rmtree(lake, ignore_errors=True)
        lake.mkdir()
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            con.execute("SET TimeZone = 'UTC'").fetchall()
            for t in lakehouse.TABLES:
                columns = lakehouse._export_select(con, t)          # the export's own columns
                if t.date_expr is None:
                    (lake / t.name).mkdir()
                    target = str(lake / t.name / lakehouse.PART_FILE).replace("'", "''")
                    con.execute(f"COPY (SELECT {columns} FROM {t.name}) TO '{target}' "
                                "(FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)").fetchall()
                else:
                    target = str(lake / t.name).replace("'", "''")
                    con.execute(f"COPY (SELECT {columns}, {t.date_expr} AS {lakehouse.PARTITION} FROM {t.name}) "
                                f"TO '{target}' (FORMAT parquet, PARTITION_BY ({lakehouse.PARTITION}), "
                                "COMPRESSION zstd, COMPRESSION_LEVEL 1)").fetchall()
        finally:
            con.close()
            shutil.rmtree(lake, ignore_errors=True)


def measure(cases: dict[str, Callable[[], None]], runs: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds of each case, run round-robin."""
    seen: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, case in cases.items():
            t, c = time.perf_counter(), _cpu()
            case()
            seen[name].append((time.perf_counter() - t, _cpu() - c))
    return {name: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for name, v in seen.items()}


def budget(figures: dict[str, tuple[float, float]], cores: int, ratio: float = 6.0) -> dict[str, float]:
    """The floors' CPU sum (the lake's cheaper way counted) against what ``ratio`` times the
    read_json floor's wall time holds on ``cores`` cores."""
    lake = min(figures["lake_export"][1], figures["lake_partition_by"][1])
    needed = figures["read_json"][1] + figures["warehouse_tables"][1] + figures["generation_copy"][1] + lake
    # the warehouse's tables and the lake read stg_events and Silver, the generation Silver again
    reads = 2 * figures["read_stg_events"][1] + 3 * figures["read_silver"][1]
    target_s = ratio * figures["read_json"][0]
    return {"needed_cpu_s": needed, "net_cpu_s": needed - reads, "needed_wall_s": needed / cores,
            "target_s": target_s, "target_cpu_s": target_s * cores, "lake_cpu_s": lake}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--uncompressed", action="store_true",
                        help="also time the two DuckDB files written without compression")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    (source,) = traffic(args.events, 1)
    scratch = Path(tempfile.mkdtemp(prefix="nelo-floors-", dir=args.work))
    try:
        cfg = load_config(workspace(scratch / "run"))
        run = process_files(cfg, [source], move=False)       # untimed: the outputs the floors rewrite
        if not run.ok:
            print("the load failed; no floors", file=sys.stderr)
            return 1
        _warm([source])
        floors = Floors(Path(cfg.database_path), source, scratch, cfg.analytics_storage_version)
        stg_rows, silver_rows = floors.rows()
        cases: dict[str, Callable[[], None]] = {
            "read_json": floors.read_json, "warehouse_tables": floors.warehouse_tables,
            "generation_copy": floors.generation_copy, "lake_export": floors.lake_export,
            "lake_partition_by": floors.lake_partition_by,
            "read_stg_events": lambda: floors.read_tables(["stg_events"]),
            "read_silver": lambda: floors.read_tables(floors.silver)}
        if args.uncompressed:
            cases["warehouse_tables_uncompressed"] = lambda: floors.warehouse_tables(uncompressed=True)
            cases["generation_copy_uncompressed"] = lambda: floors.generation_copy(uncompressed=True)
        figures = measure(cases, args.runs)
        cores = os.cpu_count() or 1
        print(f"{args.events:,} events: stg_events {stg_rows:,} rows, Silver {silver_rows:,} rows; "
              f"{args.runs} run(s), medians, {cores} cores")
        for name, (wall, cpu) in figures.items():
            print(f"{name:30s} wall {wall:7.2f} s   CPU {cpu:7.2f} s")
        b = budget(figures, cores)
        print(f"floors needed: {b['needed_cpu_s']:.2f} CPU s (lake counted at {b['lake_cpu_s']:.2f}), at least "
              f"{b['needed_wall_s']:.2f} s on {cores} cores; without their reads of the warehouse "
              f"{b['net_cpu_s']:.2f} CPU s; 6x read_json is {b['target_s']:.2f} s, {b['target_cpu_s']:.2f} CPU s: "
              f"the floors alone {'exceed' if b['net_cpu_s'] > b['target_cpu_s'] else 'fit in'} it")
        if args.uncompressed:
            plain = dict(figures, warehouse_tables=figures["warehouse_tables_uncompressed"],
                         generation_copy=figures["generation_copy_uncompressed"])
            u = budget(plain, cores)
            print(f"uncompressed DuckDB files: {u['needed_cpu_s']:.2f} CPU s, without their reads "
                  f"{u['net_cpu_s']:.2f}, leaving {u['target_cpu_s'] - u['net_cpu_s']:.2f} CPU s of the target's for "
                  "parsing the bodies, Silver, the checks and the team files")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
