"""Benchmark: the two staging parsers on one simulated batch file (issue: measure both, keep the faster).

    python -m bench.parsers --events 1000000

Each parser loads the same file into a fresh warehouse (parse + stage + ledger, one transaction);
prints events/s and the ratio. Not a test: figures only.
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
from nelo_etl.staging import load_file


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
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nelo-bench-"))
    try:
        t0 = time.perf_counter()
        messages = Simulator(SimConfig.chaos(events=args.events, seed=1)).messages()
        (batch,) = write_batches(messages, str(root / "data"), batches=1)
        print(f"file: {args.events} events, {len(messages)} messages, "
              f"{Path(batch).stat().st_size / 1e6:.0f} MB, made in {time.perf_counter() - t0:.1f} s")
        medians = {}
        for name in ("python", "duckdb"):
            times = []
            for run in range(args.runs):
                cfg = load_config(workspace(root / f"{name}{run}"))
                t = time.perf_counter()
                result = load_file(cfg, Path(batch), parser=name)
                times.append(time.perf_counter() - t)
                shutil.rmtree(root / f"{name}{run}")
            medians[name] = statistics.median(times)
            print(f"{name:7s} parser: median {medians[name]:.1f} s over {args.runs} run(s), "
                  f"{len(messages) / medians[name]:,.0f} messages/s, {args.events / medians[name]:,.0f} events/s "
                  f"(loaded {result.loaded_events}, dead-lettered {result.dead_lettered}, "
                  f"python-parsed lines {result.python_parsed_lines})")
        print(f"ratio python/duckdb time: {medians['python'] / medians['duckdb']:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
