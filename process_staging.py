#!/usr/bin/env python3
"""Load each batch file in staging/ into DuckDB (stg_events, Silver, checks, ledger) in one
transaction per file, then move it to processed/. Bad messages go to dead_letter/."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nelo_etl import cli
from nelo_etl.config import Config
from nelo_etl.staging import process_files, staging_files


def main(args: argparse.Namespace, cfg: Config) -> int:
    if args.reprocess:
        paths = [Path(p).resolve() for p in args.reprocess]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise cli.Failure(f"no such batch file: {missing[0]}")
    else:
        paths = staging_files(cfg)
    if args.dry_run:
        for p in paths:
            print(f"would {'reprocess' if args.reprocess else 'load'} {p}")
        print(f"dry run: {len(paths)} file(s); nothing loaded or moved")
        return cli.EXIT_OK
    run = process_files(cfg, paths, reprocess=bool(args.reprocess))
    for f in run.files:
        print(f.line())
    if run.gold_line():
        print(run.gold_line())
    if run.lake is not None:
        print(run.lake if isinstance(run.lake, str) else run.lake.line())
    if isinstance(run.gold, str):
        raise cli.Failure(run.gold)
    if isinstance(run.lake, str):
        raise cli.Failure(run.lake)
    failed = [f for f in run.files if f.status == "failed"]
    if failed:
        raise cli.Failure(f"{len(failed)} of {len(run.files)} file(s) failed; first: {failed[0].line()}")
    if not run.files:
        print("nothing to do: staging/ is empty")
    return cli.EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("process_staging.py", __doc__.strip().splitlines()[0], [
        "./process_staging.py",
        "./process_staging.py --config /etc/nelo/config.json",
        "./process_staging.py --reprocess archive/processing_batch_20251017T155740_ab12cd34.jsonl",
        "./process_staging.py --dry-run",
    ])
    parser.add_argument("--reprocess", nargs="+", metavar="FILE",
                        help="load these batch files again (e.g. from archive/), even if already loaded")
    return parser


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser(), log_name="process_staging"))
