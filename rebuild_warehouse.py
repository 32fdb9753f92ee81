#!/usr/bin/env python3
"""Rebuild a lost warehouse from archive/: load every archived batch file, in name order, into a
new nelo.duckdb, then publish the analysts' files. Refuses to touch a warehouse that exists.

Every batch file ever received is kept unchanged in archive/, so this gives back every event,
dead letter and Gold answer; files still in staging/ are loaded by the next run as usual.
"""
from __future__ import annotations

import argparse
import sys

from nelo_etl import cli, warehouse
from nelo_etl.config import Config


def main(args: argparse.Namespace, cfg: Config) -> int:
    files = warehouse.archive_files(cfg)
    if args.dry_run:
        for path in files:
            print(f"would load {path}")
        print(f"dry run: {len(files)} archive file(s) into a new {cfg.database_path}; nothing loaded")
        return cli.EXIT_OK
    run = warehouse.rebuild_from_archive(cfg)
    failed = [f for f in run.files if f.status == "failed"]
    if run.gold_line():
        print(run.gold_line())
    if isinstance(run.gold, str):
        raise cli.Failure(run.gold)
    if failed:
        raise cli.Failure(f"{len(failed)} of {len(run.files)} archive file(s) failed; first: {failed[0].line()}")
    print(f"rebuilt {cfg.database_path} from {len(run.files)} archive file(s): "
          f"{sum(f.loaded_events for f in run.files)} events")
    return cli.EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    return cli.make_parser("rebuild_warehouse.py", __doc__, [
        "./rebuild_warehouse.py --dry-run     # the archive files it would load",
        "./rebuild_warehouse.py               # after losing warehouse/nelo.duckdb",
    ])


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser(), log_name="rebuild_warehouse"))
