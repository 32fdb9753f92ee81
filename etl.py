#!/usr/bin/env python3
"""Drain the SQS queue into an immutable batch file, stage and archive it, then process staging.

Cron runs this every 15 minutes (see README.md for the crontab line and the recovery rules);
``--status`` is the health check a monitor calls.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from datetime import datetime, timezone
from typing import Any

from nelo_etl import cli
from nelo_etl.config import Config
from nelo_etl.ingest import (Ingestor, LockHeld, RunSummary, acquire_lock, dry_run_report, queue_target,
                             release_lock)

log = logging.getLogger("nelo_etl.etl")


class Terminated(BaseException):
    """SIGTERM during processing: unwinds the open transaction (rolled back; the file stays in
    staging/). A BaseException, so no per-file ``except Exception`` turns it into a failed file."""


class Terminator:
    """The SIGTERM handler. While ingesting it only asks the poll loop to stop at its next safe
    point (what was received is sealed, published and only then deleted); while processing it
    unwinds the current transaction."""

    def __init__(self) -> None:
        self.requested = False
        self.raise_now = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.requested = True
        log.warning("SIGTERM: stopping at the next safe point")
        if self.raise_now:
            raise Terminated()


def main(args: argparse.Namespace, cfg: Config) -> int:
    if args.status:
        from nelo_etl import status
        return status.main(cfg, json_mode=args.json, max_age_minutes=args.max_age)
    queue_url, endpoint = queue_target(cfg)
    if args.dry_run:
        report = dry_run_report(cfg, queue_url, endpoint)
        cli.say(report, args.json)
        if args.json:
            cli.emit_json({"status": "dry_run", "exit_code": cli.EXIT_OK, "report": report})
        return cli.EXIT_OK
    stopper = Terminator()
    signal.signal(signal.SIGTERM, stopper)
    try:
        lock = acquire_lock(cfg)
    except LockHeld as exc:
        if exc.stale:
            outcome = {"status": "failed", "exit_code": cli.EXIT_FAILED, "error": str(exc)}
            _record(cfg, outcome)
            raise cli.Failure(str(exc), report=outcome) from None
        cli.say(f"skipped: {exc}", json_mode=True)        # stderr and the log, never stdout text
        if args.json:
            cli.emit_json({"status": "skipped", "exit_code": cli.EXIT_SKIPPED, "reason": str(exc)})
        return cli.EXIT_SKIPPED
    try:
        return _run(args, cfg, queue_url, endpoint, stopper)
    finally:
        release_lock(lock, cfg)


def _run(args: argparse.Namespace, cfg: Config, queue_url: str, endpoint: str | None, stopper: Terminator) -> int:
    ingestor = Ingestor(cfg, queue_url, endpoint, should_stop=lambda: stopper.requested)
    try:
        summary = ingestor.run()
    finally:
        ingestor.close()
    files: list[Any] = []
    gold: Any = None
    lake: Any = None
    processing_error = None
    if not args.no_process and summary.error is None and not stopper.requested:
        from nelo_etl.staging import StagingBusy, process_files, staging_files, staging_lock
        from nelo_etl.upgrade import ensure_current

        stopper.raise_now = True
        try:
            lock = staging_lock(cfg)     # a loader run by hand has the files: leave them to it
            try:
                upgraded = ensure_current(cfg)
                if upgraded and upgraded.rebuilt:    # a stamp alone is only logged
                    cli.say(upgraded.line, args.json)
                run = process_files(cfg, staging_files(cfg), lock=False)
                files, gold, lake = run.files, run.gold, run.lake
            finally:
                lock.release()
        except StagingBusy as exc:
            cli.say(f"processing skipped: {exc}", args.json)
        except Terminated:
            pass
        except Exception as exc:  # noqa: BLE001 - the batch is safe in staging/; say why it was not loaded
            log.exception("processing staging failed")
            text = str(exc).strip().splitlines()
            processing_error = (f"ingested, but processing staging failed: {type(exc).__name__}: "
                                f"{text[0][:300] if text else ''}")
        finally:
            stopper.raise_now = False
        for f in files:
            cli.say(f.line(), args.json, to_log=False)      # staging logged it
        if isinstance(gold, dict) or isinstance(gold, str):
            line = gold if isinstance(gold, str) else (
                f"gold: views {gold['gold_views_s']:.2f} s, analytics file published in {gold['publish_s']:.2f} s")
            cli.say(line, args.json)
        if lake is not None:
            cli.say(lake if isinstance(lake, str) else lake.line(), args.json)
            if isinstance(lake, str) and processing_error is None:
                processing_error = lake     # the batches are committed; the next run exports again
    outcome = _outcome(summary, files, gold, stopper.requested, processing_error)
    _record(cfg, outcome)
    cli.say(_summary_line(outcome, summary), args.json)
    if outcome["status"] == "terminated":
        print("stopped by SIGTERM at a safe point: what was received is sealed and published; "
              "the next run carries on", file=sys.stderr)
        if args.json:
            cli.emit_json(outcome)
        return cli.EXIT_TERMINATED
    if outcome["error"]:
        raise cli.Failure(outcome["error"], report=outcome)
    if args.json:
        cli.emit_json(outcome)
    return cli.EXIT_OK


def _outcome(summary: RunSummary, files: list[Any], gold: Any, terminated: bool,
             processing_error: str | None = None) -> dict[str, Any]:
    """The run's one JSON object (and what --status reads back)."""
    failed = [f for f in files if f.status == "failed"]
    error = None
    if summary.error:
        where = (f"what was received is safe in {summary.batch_file}" if summary.batch_file
                 else "nothing was received, nothing is lost")
        error = f"{summary.error} ({where})"
    elif failed:
        error = f"ingested, but {len(failed)} of {len(files)} staging file(s) failed; first: {failed[0].line()}"
    elif processing_error:
        error = processing_error
    elif isinstance(gold, str):
        error = gold
    committed = [f for f in files if f.status == "committed"]
    if terminated:
        status = "terminated"
    elif error:
        status = "failed"
    elif summary.received or summary.recovered_batches or files:
        status = "done"
    else:
        status = "nothing_to_do"
    code = {"terminated": cli.EXIT_TERMINATED, "failed": cli.EXIT_FAILED}.get(status, cli.EXIT_OK)
    return dict(summary.as_dict(), status=status, exit_code=code, error=error,
                finished_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                files=[{"file_name": f.file_name, "status": f.status, "received": f.received,
                        "loaded_events": f.loaded_events, "duplicate_events": f.duplicate_events,
                        "dead_lettered": f.dead_lettered, "seconds": round(f.seconds, 3), "error": f.error}
                       for f in files],
                loaded_events=sum(f.loaded_events for f in committed),
                dead_lettered=sum(f.dead_lettered for f in committed),
                gold=gold)


def _summary_line(outcome: dict[str, Any], summary: RunSummary) -> str:
    return (f"etl: status={outcome['status']} {summary.line()} files={len(outcome['files'])} "
            f"loaded={outcome['loaded_events']} dead_lettered={outcome['dead_lettered']}")


def _record(cfg: Config, outcome: dict[str, Any]) -> None:
    from nelo_etl import status
    try:
        status.record_run(cfg, outcome)
    except OSError as exc:       # the run's result matters more than its note for --status
        log.warning("could not record the run for --status: %s", exc)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("etl.py", __doc__, [
        "SQS_QUEUE_URL=https://sqs.us-east-1.amazonaws.com/123/q ./etl.py",
        "./etl.py --config /etc/nelo/config.json --json",
        "./etl.py --no-process      # only ingest into staging/ and archive/",
        "./etl.py --dry-run         # what would be read; nothing written or deleted",
        "./etl.py --status --json   # health for a monitor: exit 0 healthy, 1 not",
    ])
    parser.add_argument("--no-process", action="store_true", help="only ingest; do not run process_staging")
    parser.add_argument("--json", action="store_true",
                        help="print exactly one JSON object on stdout (human lines go to stderr and the log)")
    parser.add_argument("--status", action="store_true",
                        help="health check: last success, backlog, failed files, dead letters, freshness")
    parser.add_argument("--max-age", type=float, default=30.0, metavar="MINUTES",
                        help="with --status: unhealthy when the last success is older (default 30: two slots)")
    return parser


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser(), log_name="etl"))
