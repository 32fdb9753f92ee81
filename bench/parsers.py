"""Benchmark: the two staging parsers on one simulated batch file (the compiled one and the contract parser).

    python -m bench.parsers --events 1000000

Each parser parses the same file into the temp tables parsed_items and rejected_lines of a fresh
in-memory DuckDB (what process_staging does before staging); prints events/s and the ratio, and
DuckDB's plain read_json of the same bytes as the floor. Not a test: figures only.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from nelo_etl.config import ROOT, load_config
from nelo_etl.simulate import SimConfig, Simulator, write_batches
import duckdb

from nelo_etl.staging import create_parse_tables, parse_with_native, parse_with_python


def workspace(base: Path) -> Path:
    for name in ("staging", "processed", "archive", "dead_letter", "warehouse"):
        (base / name).mkdir(parents=True, exist_ok=True)
    cfg = json.loads((ROOT / "config.json").read_text())
    (base / "config.json").write_text(json.dumps(cfg))
    return base / "config.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--parsers", nargs="+", default=["python", "native"], choices=["python", "native"])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nelo-bench-"))
    try:
        t0 = time.perf_counter()
        messages = Simulator(SimConfig.chaos(events=args.events, seed=1)).messages()
        (batch,) = write_batches(messages, str(root / "data"), batches=1)
        print(f"file: {args.events} events, {len(messages)} messages, "
              f"{Path(batch).stat().st_size / 1e6:.0f} MB, made in {time.perf_counter() - t0:.1f} s")
        medians = {}
        cfg = load_config(workspace(root / "ws"))
        con = duckdb.connect()
        t = time.perf_counter()
        con.execute("SELECT count(*) FROM read_json($p, format = 'newline_delimited', "
                    "columns = {'MessageId': 'VARCHAR', 'Attributes': 'JSON', 'Body': 'VARCHAR'})",
                    {"p": batch}).fetchall()
        floor = time.perf_counter() - t
        print(f"floor   read_json: {floor:.1f} s, {args.events / floor:,.0f} events/s")
        for name in args.parsers:
            times = []
            for _ in range(args.runs):
                con = duckdb.connect()
                dead: list = []
                t = time.perf_counter()
                create_parse_tables(con)
                fallback = parse_with_python(con, cfg, Path(batch), dead) if name == "python" else \
                    parse_with_native(con, cfg, Path(batch), dead)
                rows = con.execute("SELECT count(DISTINCT line_number) FROM parsed_items").fetchall()[0][0]
                times.append(time.perf_counter() - t)
                con.close()
            medians[name] = statistics.median(times)
            print(f"{name:7s} parser: median {medians[name]:.1f} s over {args.runs} run(s), "
                  f"{args.events / medians[name]:,.0f} events/s, {len(messages) / medians[name]:,.0f} messages/s "
                  f"({rows} lines parsed, {len(dead)} rejected, lines left to Python: {fallback if fallback is not None else 'all'})")
        if len(medians) == 2:
            print(f"time ratio python/native: {medians['python'] / medians['native']:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
