"""``make demo``: the whole path on an embedded default, on this machine only.

A local SQS-protocol server starts on 127.0.0.1, the simulator fills it with a few days of chaotic
traffic, ``etl.py`` drains it into batch files (staging + archive) and loads them, and the result
is printed. Everything happens in ``.demo/`` (wiped first), so it is repeatable and never touches
the real folders.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from . import gold
from .config import ROOT
from .localsqs import CREDENTIALS, MotoServer
from .simulate import SimConfig, Simulator, send_to_queue

DEMO = ROOT / ".demo"


def make_workspace() -> Path:
    shutil.rmtree(DEMO, ignore_errors=True)
    for name in ("staging", "processed", "archive", "dead_letter", "warehouse"):
        (DEMO / name).mkdir(parents=True)
    cfg = json.loads((ROOT / "config.json").read_text(encoding="utf-8"))
    cfg["queue"].update(wait_time_seconds=1, visibility_timeout_seconds=120)
    cfg["report_dir"] = "site"          # every committed tick rebuilds the dashboard, .demo/site/index.html
    path = DEMO / "config.json"
    path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return path


def table(con: duckdb.DuckDBPyConnection, title: str, query: str) -> None:
    cur = con.execute(query)
    rows = cur.fetchall()
    print("\n" + gold.format_report([(title, [d[0] for d in cur.description], rows)], "terminal"), end="")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nelo_etl.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=800, help="simulated events (default 800)")
    parser.add_argument("--ticks", type=int, default=4, help="cron ticks to deliver them in (default 4)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    config = make_workspace()
    with MotoServer() as server:
        print(f"local SQS server on {server.url}")
        messages = Simulator(SimConfig.chaos(events=args.events, seed=args.seed, days=2)).messages()
        os.environ.update(CREDENTIALS)
        env = dict(os.environ, SQS_QUEUE_URL=f"{server.url}/123456789012/nelo-demo", AWS_ENDPOINT_URL=server.url)
        print(f"simulated {args.events} events as {len(messages)} messages (duplicates, re-sends, late and bad "
              f"ones included); they reach the queue in {args.ticks} cron ticks, each followed by etl.py")
        size = -(-len(messages) // args.ticks)
        for tick in range(args.ticks):
            send_to_queue(messages[tick * size:(tick + 1) * size], server.url, "nelo-demo")
            print(f"\n[tick {tick + 1}] $ ./etl.py --config .demo/config.json")
            run = subprocess.run([sys.executable, str(ROOT / "etl.py"), "--config", str(config)], env=env,
                                 capture_output=True, text=True)
            print(run.stdout.rstrip())
            if run.returncode != 0:
                print(run.stderr.rstrip(), file=sys.stderr)
                return run.returncode
    con = duckdb.connect(str(DEMO / "warehouse" / "analytics.duckdb"), read_only=True)
    try:
        table(con, "The ledger (etl_batches): every received message is loaded, a duplicate or dead-lettered",
              "SELECT file_name, received, loaded_events, duplicate_events, dead_lettered, status FROM etl_batches")
        table(con, "Dead letters by reason (dead_letter_messages):",
              "SELECT reason, count(*) AS messages FROM dead_letter_messages GROUP BY ALL ORDER BY 2 DESC, 1")
        print("\n$ ./gold_transforms.py --report   (the answers to the business questions)\n")
        print(gold.format_report(gold.run_report(con), "terminal", limit=20))
    finally:
        con.close()
    print(f"\nthe dashboard (rebuilt after every committed tick): open {DEMO / 'site' / 'index.html'}")
    print(f"\ndemo done in {time.monotonic() - t0:.1f} s; files and warehouse are in .demo/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
