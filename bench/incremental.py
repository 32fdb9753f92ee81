"""Benchmark: one ~16k-event batch on top of a history (the Silver layer's incremental cost).

    python -m bench.incremental --history 1000000 --batch 16000

The history is loaded once (as one file), then the next batch of the same traffic is loaded and
timed three times on copies of that warehouse; prints the median. Not a test: figures only.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from nelo_etl.config import load_config
from nelo_etl.simulate import SimConfig, Simulator, write_batches
from nelo_etl.staging import load_file

from .parsers import workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=16_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nelo-bench-inc-"))
    try:
        messages = Simulator(SimConfig.chaos(events=args.history + args.batch, seed=2,
                                             days=14 * (args.history + args.batch) / 1_000_000 + 1)).messages()
        cut = int(len(messages) * args.history / (args.history + args.batch))
        (history,) = write_batches(messages[:cut], str(root / "history"), batches=1)
        (batch,) = write_batches(messages[cut:], str(root / "batch"), batches=1)
        cfg = load_config(workspace(root / "base"))
        t = time.perf_counter()
        load_file(cfg, Path(history))
        print(f"history: {cut} messages loaded in {time.perf_counter() - t:.1f} s")
        times = []
        for run in range(args.runs):
            copy = root / f"run{run}"
            shutil.copytree(root / "base", copy)
            run_cfg = load_config(copy / "config.json")
            t = time.perf_counter()
            result = load_file(run_cfg, Path(batch))
            times.append(time.perf_counter() - t)
            shutil.rmtree(copy)
        print(f"batch: {len(messages) - cut} messages ({result.loaded_events} new events) on a {args.history}-event "
              f"history: median {statistics.median(times):.2f} s over {args.runs} runs "
              f"({', '.join(f'{x:.2f}' for x in times)})")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
