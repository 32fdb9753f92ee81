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


def _scans(plan: dict, out: list) -> None:
    """(operator, table, rows scanned) of every scan in a JSON profile tree."""
    name = plan.get("operator_name") or plan.get("operator_type") or ""
    extra = plan.get("extra_info") or {}
    if "SCAN" in name.upper():
        table = extra.get("Table") or extra.get("Function") or ""
        out.append((name.strip(), str(table), int(plan.get("operator_cardinality", 0) or 0),
                    float(plan.get("operator_timing", 0) or 0)))
    for child in plan.get("children", []):
        _scans(child, out)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--history", type=int, required=True)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    base = args.work / f"history_{args.history}"
    batch = args.work / f"split_{args.history}" / "processing_batch_99999999T999999_batch.jsonl"
    target = args.work / f"explain_{args.history}"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(base, target)
    cfg = load_config(target / "config.json")
    found: list[tuple[float, str, list]] = []
    real_write = sql.write

    def profiled_write(con, tgt, select_sql, params=None, journal_load_id=False):
        bound = sql.params_for(select_sql, params or {})
        con.execute("SET enable_profiling = 'json'").fetchall()
        con.execute("SET profiling_output = ''").fetchall()
        t = time.perf_counter()
        rows = con.execute(f"EXPLAIN ANALYZE {select_sql}", bound).fetchall()
        seconds = time.perf_counter() - t
        con.execute("RESET enable_profiling").fetchall()
        scans: list = []
        try:
            _scans(json.loads(rows[0][1]), scans)
        except (ValueError, IndexError, TypeError):
            pass
        found.append((seconds, tgt.table, sorted(scans, key=lambda s: -s[2])[:3]))
        return real_write(con, tgt, select_sql, params, journal_load_id)

    sql.write = profiled_write
    try:
        run = process_files(cfg, [batch], move=False, refresh_gold=False)
    finally:
        sql.write = real_write
    assert run.ok, [f.line() for f in run.files]
    print(f"history {args.history:,} events; the 16k batch's SELECTs, slowest first (EXPLAIN ANALYZE)")
    for seconds, table, scans in sorted(found, reverse=True)[: args.top]:
        what = "; ".join(f"{_one_line(t)} {n:,} rows" for _, t, n, _ in scans)
        print(f"{seconds:7.3f} s  {table:32s} {what}")
    shutil.rmtree(target, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
