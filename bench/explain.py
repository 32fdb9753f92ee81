"""Where a batch's Silver work goes on a big history: ``python -m bench.explain --work DIR
--history N`` loads the bench's 16k batch into a copy of the history ``python -m bench --work DIR``
prepared, and runs ``EXPLAIN ANALYZE`` on each statement sql.write issues (before running it for
real), then prints per statement its time and its largest scans (rows read). Not a test; figures
for bench/RESULTS.md.

    python -m bench --work /work/benchwork --cases incremental_on_5M     # prepares history_5000000
    python -m bench.explain --work /work/benchwork --history 5000000
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path

from nelo_etl import sql
from nelo_etl.config import load_config
from nelo_etl.staging import process_files

from .case import BATCH_FILE, PREVIOUS_FILE, prepared_history


def _scans(plan: dict, out: list) -> None:
    """(table, rows scanned, row groups scanned, row groups in the table) of every table scan in
    a DuckDB JSON profile (EXPLAIN (ANALYZE, FORMAT json))."""
    extra = plan.get("extra_info") or {}
    if plan.get("type") == "TABLE_SCAN" and extra.get("Table"):
        out.append((str(extra["Table"]).split(".")[-1], int(plan.get("rows_scanned", 0) or 0),
                    int(plan.get("row_groups_scanned", 0) or 0), int(plan.get("total_row_groups_to_scan", 0) or 0)))
    for child in plan.get("children", []) + plan.get("operator", []):
        _scans(child, out)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--history", type=int, required=True)
    parser.add_argument("--batch", type=int, default=16_000, help="the batch size the bench ran with "
                        "(16,000; 300 with --smoke)")
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    base, split = prepared_history(args.work, args.history, args.batch)     # made (again) when missing or stale
    target = args.work / f"explain_{args.history}"
    shutil.rmtree(target, ignore_errors=True)
    # the warehouse and its config are what a load reads; the analytics generations, team files
    # and the lake (8 GB at 5M) are not touched without publication or export
    shutil.copytree(base, target, ignore=shutil.ignore_patterns("lake", ".analytics_*", "analytics.duckdb",
                                                                "team_*.duckdb"))
    cfg = load_config(target / "config.json")
    found: list[tuple[float, str, list]] = []
    real_write = sql.write

    def profile(con, text: str, params, label: str) -> None:
        """EXPLAIN ANALYZE of one statement: its time and its three largest scans."""
        t = time.perf_counter()
        rows = con.execute(f"EXPLAIN (ANALYZE, FORMAT json) {text}", sql.params_for(text, params or {})).fetchall()
        seconds = time.perf_counter() - t
        scans: list = []
        try:
            _scans(json.loads(rows[0][1]), scans)
        except (ValueError, IndexError, TypeError):
            pass
        found.append((seconds, label, sorted(scans, key=lambda s: -s[1])[:3]))

    def profiled_write(con, tgt, select_sql, params=None, journal_load_id=False):
        profile(con, select_sql, params, tgt.table)
        return real_write(con, tgt, select_sql, params, journal_load_id)

    real_checks = sql.run_checks

    def profiled_checks(con, params):
        for path in sql.check_files():
            profile(con, sql.read_sql(path), params, f"check {path.stem}")
        return real_checks(con, params)

    # the previous batch first, unprofiled, as the bench's incremental case does
    assert process_files(cfg, [split / PREVIOUS_FILE], move=False, refresh_gold=False).ok
    sql.write, sql.run_checks = profiled_write, profiled_checks
    try:
        run = process_files(cfg, [split / BATCH_FILE], move=False, refresh_gold=False)
    finally:
        sql.write, sql.run_checks = real_write, real_checks
    assert run.ok, [f.line() for f in run.files]
    print(f"history {args.history:,} events; the 16k batch's SELECTs, slowest first (EXPLAIN ANALYZE; "
          "largest table scans: rows read, row groups read of the table's); checks too")
    for seconds, table, scans in sorted(found, reverse=True)[: args.top]:
        what = "; ".join(f"{_one_line(t)} {n:,} rows ({g}/{total} row groups)" for t, n, g, total in scans)
        print(f"{seconds:7.3f} s  {table:32s} {what}")
    shutil.rmtree(target, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
