"""What every entry script shares: exit codes, common flags, logging and one-line errors.

Exit codes mean something to cron:

====  =========================================================================
0     done (also: nothing to do)
1     failed: the one line on stderr says why; what was committed stays committed
2     bad usage or bad configuration; nothing was touched
75    skipped: another run holds the lock (EX_TEMPFAIL); try again next time
143   stopped by SIGTERM at a safe point (128 + 15); the next run carries on
====  =========================================================================

With ``--json`` a script prints exactly one JSON object on stdout, whatever the outcome; the
human lines go to stderr and the log. A reader that closes the pipe early is not an error.
"""
from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import sys
import textwrap
from pathlib import Path
from typing import Callable, Sequence

from .config import Config, ConfigError, load_config, load_env

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_SKIPPED = 75
EXIT_TERMINATED = 143

log = logging.getLogger("nelo_etl")


class Failure(Exception):
    """An expected failure with a one-line message for the operator (exit code 1). ``report``:
    the JSON object ``--json`` prints for it (default: status, exit code and the error)."""

    def __init__(self, message: str, report: dict | None = None) -> None:
        super().__init__(message)
        self.report = report


class UsageError(Exception):
    """Bad usage (a missing file named on the command line, ...): one line, exit code 2."""


_stdout_closed = False


def emit(text: str) -> None:
    """Print one line on stdout. A closed pipe (``etl.py --json | head -c0``) is not an error:
    the rest of the run's output is dropped and the log says so once."""
    global _stdout_closed
    if _stdout_closed:
        return
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_closed = True
        # point fd 1 at /dev/null, so the interpreter's final flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        log.warning("stdout was closed by its reader; output dropped (the run itself goes on)")


def say(text: str, json_mode: bool = False, to_log: bool = True) -> None:
    """A human line: on stdout, or on stderr when stdout carries JSON; in the log unless
    ``to_log`` is false (a line the code that made it already logged)."""
    if to_log:
        log.info("%s", text, extra={"console": False})
    if json_mode:
        print(text, file=sys.stderr, flush=True)
    else:
        emit(text)


def emit_json(obj: dict) -> None:
    emit(json.dumps(obj, sort_keys=True, default=str))


def _not_for_console(record: logging.LogRecord) -> bool:
    return getattr(record, "console", True)


def make_parser(prog: str, description: str, examples: Sequence[str]) -> argparse.ArgumentParser:
    """An argparse parser with ``--config`` and ``--dry-run`` and examples in ``--help``.
    ``description`` may be a whole docstring: its first paragraph, whole, is the description."""
    description = textwrap.fill(" ".join(description.strip().split("\n\n")[0].split()), width=100)
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n" + "\n".join(f"  {e}" for e in examples)
               + "\n\nexit codes: 0 done, 1 failed, 2 bad usage or config, 75 skipped (lock held)")
    parser.add_argument("--config", metavar="PATH",
                        help="config file (default: $ETL_CONFIG, else config.json beside the scripts)")
    parser.add_argument("--dry-run", action="store_true", help="say what would be done; change nothing")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    return parser


def setup_logging(cfg: Config | None, name: str, verbose: bool = False) -> None:
    """Log to ``<log_dir>/<name>.log`` (rotated) and, when stderr is a terminal, to stderr."""
    # A log that cannot be written (a full disk) must not print logging's own traceback on
    # stderr: cron gets one line, and the run's outcome does not depend on its log
    logging.raiseExceptions = False
    root = logging.getLogger("nelo_etl")
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cfg is not None:
        Path(cfg.log_dir).mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(Path(cfg.log_dir) / f"{name}.log",
                                                  maxBytes=5 * 1024 * 1024, backupCount=5, encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    if sys.stderr.isatty() or verbose:
        sh = logging.StreamHandler(sys.stderr)
        sh.setFormatter(fmt)
        sh.addFilter(_not_for_console)      # say() already printed those lines
        root.addHandler(sh)
    root.propagate = False


def run(main: Callable[[argparse.Namespace, Config], int], parser: argparse.ArgumentParser,
        argv: Sequence[str] | None = None, log_name: str = "nelo") -> int:
    """Parse args, load and validate the config, set up logging, run ``main``; map failures to
    exit codes with exactly one line on stderr (and, with ``--json``, one JSON object on stdout)."""
    args = parser.parse_args(argv)
    json_mode = bool(getattr(args, "json", False))

    def fail(code: int, line: str, report: dict | None = None) -> int:
        print(line, file=sys.stderr)
        if json_mode:
            status = {EXIT_CONFIG: "bad_usage", EXIT_FAILED: "failed"}.get(code, "failed")
            emit_json(report or {"status": status, "exit_code": code, "error": line})
        return code

    # Batch files, dead letters and the database hold user ids: owner-only from the start.
    os.umask(0o077)
    try:
        cfg = load_config(args.config)
        setup_logging(cfg, log_name, args.verbose)
        load_env(cfg)
    except ConfigError as exc:
        return fail(EXIT_CONFIG, f"config error: {exc}")
    try:
        return main(args, cfg)
    except ConfigError as exc:
        log.error("config error: %s", exc)
        return fail(EXIT_CONFIG, f"config error: {exc}")
    except UsageError as exc:
        log.error("usage error: %s", exc)
        return fail(EXIT_CONFIG, f"usage error: {exc}")
    except Failure as exc:
        log.error("%s", exc)
        return fail(EXIT_FAILED, f"error: {exc}", exc.report)
    except KeyboardInterrupt:
        return fail(EXIT_FAILED, "error: interrupted")
    except Exception as exc:  # noqa: BLE001 - cron gets one line; the log gets the traceback
        log.exception("unexpected failure")
        return fail(EXIT_FAILED, f"error: {type(exc).__name__}: {first_line(exc)}")


def first_line(exc: BaseException) -> str:
    """An exception's first line for a one-line report: never empty, never an IndexError
    (``MemoryError()`` and ``RuntimeError()`` have no message at all); callers name the class."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else "(no message)"
