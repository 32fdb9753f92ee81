#!/usr/bin/env python3
"""Load each batch file in staging/ into DuckDB (stg_events, Silver, checks, ledger) atomically:
waiting files together in one transaction (one ledger row each), or one at a time when that
fails; then move them to processed/. Bad messages go to dead_letter/, with their reason."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nelo_etl import cli
from nelo_etl.config import Config
from nelo_etl.staging import StagingBusy, process_files, staging_files, staging_lock


def main(args: argparse.Namespace, cfg: Config) -> int:
    if args.reason is not None and not args.replay_dead_letters:
        raise cli.UsageError("--reason goes with --replay-dead-letters")
    if args.replay_dead_letters:
        return replay(args, cfg)
    if args.reprocess:
        paths = [Path(p).resolve() for p in args.reprocess]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise cli.UsageError(f"no such batch file: {missing[0]} (give a file in archive/ or processed/)")
    else:
        paths = staging_files(cfg)
    if args.dry_run:
        for p in paths:
            print(f"would {'reprocess' if args.reprocess else 'load'} {p}")
        print(f"dry run: {len(paths)} file(s); nothing loaded or moved")
        return cli.EXIT_OK
    from nelo_etl.status import record_files
    from nelo_etl.upgrade import ensure_current

    # the loader's lock first: a second loader must skip at once, not wait for the warehouse
    try:
        lock = staging_lock(cfg)
    except StagingBusy as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        return cli.EXIT_SKIPPED
    try:
        upgraded = ensure_current(cfg)
        if upgraded and upgraded.rebuilt:    # a stamp alone is only logged
            print(upgraded.line)
        run = process_files(cfg, paths, reprocess=bool(args.reprocess), lock=False)
    finally:
        lock.release()
    for f in run.files:
        print(f.line())
    record_files(cfg, [{"file_name": f.file_name, "status": f.status, "error": f.error} for f in run.files])
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


def replay(args: argparse.Namespace, cfg: Config) -> int:
    """--replay-dead-letters: re-parse dead letters with the current parser, load those now valid."""
    from nelo_etl.replay import candidates, replay_dead_letters
    from nelo_etl.staging import refresh_gold_layer
    from nelo_etl.upgrade import ensure_current

    if args.dry_run:
        rows = candidates(cfg, args.reason)
        print(f"dry run: {len(rows)} unresolved dead letter(s)"
              + (f" with a reason starting {args.reason!r}" if args.reason else "") + "; nothing loaded")
        return cli.EXIT_OK
    ensure_current(cfg)
    result = replay_dead_letters(cfg, args.reason)
    print(result.line())
    if result.still_invalid:
        print("still invalid: " + ", ".join(f"{k}={v}" for k, v in sorted(result.still_invalid.items())))
    if result.batch_file:
        gold = refresh_gold_layer(cfg)
        if isinstance(gold, str):
            raise cli.Failure(gold)
    return cli.EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("process_staging.py", __doc__, [
        "./process_staging.py",
        "./process_staging.py --config /etc/nelo/config.json",
        "./process_staging.py --reprocess archive/processing_batch_20251017T155740_ab12cd34.jsonl",
        "./process_staging.py --dry-run",
        "./process_staging.py --replay-dead-letters --reason bad_item_value   # after a parser fix",
    ])
    parser.add_argument("--reprocess", nargs="+", metavar="FILE",
                        help="load these batch files again (e.g. from archive/), even if already loaded")
    parser.add_argument("--replay-dead-letters", action="store_true",
                        help="re-parse unresolved dead letters with the current parser; load and resolve "
                             "those now valid, in one transaction")
    parser.add_argument("--reason", metavar="PREFIX",
                        help="with --replay-dead-letters: only dead letters whose reason starts with PREFIX")
    return parser


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser(), log_name="process_staging"))
