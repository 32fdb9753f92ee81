#!/usr/bin/env python3
"""Drain the SQS queue into an immutable batch file, stage and archive it, then process staging.

Cron runs this every 15 minutes (see README.md for the crontab line and the recovery rules).
"""
from __future__ import annotations

import argparse
import sys

from nelo_etl import cli
from nelo_etl.config import Config
from nelo_etl.ingest import Ingestor, LockHeld, acquire_lock, dry_run_report, queue_target


def main(args: argparse.Namespace, cfg: Config) -> int:
    queue_url, endpoint = queue_target(cfg)
    if args.dry_run:
        print(dry_run_report(cfg, queue_url, endpoint))
        return cli.EXIT_OK
    try:
        lock = acquire_lock(cfg)
    except LockHeld as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return cli.EXIT_SKIPPED
    try:
        ingestor = Ingestor(cfg, queue_url, endpoint)
        try:
            summary = ingestor.run()
        finally:
            ingestor.close()
        processed_ok = True
        if not args.no_process and summary.error is None:
            from nelo_etl.staging import process_staging_dir
            processed_ok = process_staging_dir(cfg).ok
        print(summary.json_line() if args.json else summary.line())
        if summary.error:
            raise cli.Failure(summary.error + " (what was received is safe in a batch file)")
        if not processed_ok:
            raise cli.Failure("ingested, but processing a staging file failed (see the line above)")
        return cli.EXIT_OK
    finally:
        lock.release()


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("etl.py", __doc__, [
        "SQS_QUEUE_URL=https://sqs.us-east-1.amazonaws.com/123/q ./etl.py",
        "./etl.py --config /etc/nelo/config.json --json",
        "./etl.py --no-process      # only ingest into staging/ and archive/",
        "./etl.py --dry-run         # what would be read; nothing written or deleted",
    ])
    parser.add_argument("--no-process", action="store_true", help="only ingest; do not run process_staging")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    return parser


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser(), log_name="etl"))
