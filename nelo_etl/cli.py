"""What every entry script shares: exit codes, common flags, logging and one-line errors.

Exit codes mean something to cron:

====  =========================================================================
0     done (also: nothing to do)
1     failed: the one line on stderr says why; what was committed stays committed
2     bad usage or bad configuration; nothing was touched
75    skipped: another run holds the lock (EX_TEMPFAIL); try again next time
====  =========================================================================
"""
from __future__ import annotations

import argparse
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

log = logging.getLogger("nelo_etl")


class Failure(Exception):
    """An expected failure with a one-line message for the operator (exit code 1)."""


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
        root.addHandler(sh)
    root.propagate = False


def run(main: Callable[[argparse.Namespace, Config], int], parser: argparse.ArgumentParser,
        argv: Sequence[str] | None = None, log_name: str = "nelo") -> int:
    """Parse args, load and validate the config, set up logging, run ``main``; map failures to
    exit codes with exactly one line on stderr."""
    args = parser.parse_args(argv)
    # Batch files, dead letters and the database hold user ids: owner-only from the start.
    os.umask(0o077)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    load_env(cfg)
    setup_logging(cfg, log_name, args.verbose)
    try:
        return main(args, cfg)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Failure as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - cron gets one line; the log gets the traceback
        log.exception("unexpected failure")
        print(f"error: {type(exc).__name__}: {_first_line(exc)}", file=sys.stderr)
        return EXIT_FAILED


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else "(no message)"
