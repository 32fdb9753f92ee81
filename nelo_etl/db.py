"""Opening the warehouse: read-write only for a transaction's span, with a bounded wait."""
from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import duckdb

from .cpus import usable_cpus
from .sql import SQL_DIR, run_script

log = logging.getLogger("nelo_etl.db")

DDL_ORDER = ("stg_events", "dead_letter_messages", "etl_batches", "dim_platforms", "dim_dates",
             "dim_item_lists", "dim_experiments", "dim_campaigns", "dim_products", "silver_event_sessions",
             "dim_users", "fct_product_campaigns",
             "publish_journal", "publish_gens", "warehouse_meta")


class DatabaseBusy(Exception):
    """Another process holds the database file."""


def connect(path: Path, timeout_s: float, read_only: bool = False,
            memory_limit: str | None = None, vacuum: bool = True) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, retrying while another process holds its lock (DuckDB does not wait).
    ``memory_limit`` goes through DuckDB's connect config, never through SQL text. ``vacuum``
    False: checkpoints keep deleted rows marked instead of compacting them (see vacuum_due)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    config: dict = {"memory_limit": memory_limit} if memory_limit else {}
    if not vacuum:
        config["max_vacuum_tasks"] = 0
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() >= deadline:
                holder = re.search(r"\(PID (\d+)\)", str(exc))
                who = f"process {holder.group(1)}" if holder else "another process"
                raise DatabaseBusy(f"database {path} is held by {who}; gave up after {timeout_s:.0f} s "
                                   f"(analysts should use the published read-only copy)") from None
            log.info("database busy, retrying: %s", str(exc).splitlines()[0])
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        # now() and casts of TIMESTAMPTZ follow the session time zone, which DuckDB takes from TZ:
        # every timestamp the pipeline writes is UTC, whatever TZ the job runs under
        con.execute("SET TimeZone = 'UTC'").fetchall()
        # DuckDB sizes its threads by the machine's CPUs and its own cgroup's quota: it ignores the
        # affinity (taskset, a cpuset) and a quota on a parent cgroup (a systemd slice)
        allowed = usable_cpus()
        if allowed < con.execute("SELECT current_setting('threads')").fetchall()[0][0]:
            con.execute("SET threads = $n", {"n": allowed}).fetchall()
        return con


#: A checkpoint (every commit of a batch writes one) compacts the row groups that lost rows to
#: deletes, rewriting them whole: the Silver tables' rewritten sessions leave deletes across the
#: last days' row groups, so a 16k batch's checkpoint on a 5M-event warehouse took 2.8 s, 1.9 s of
#: it this compaction (0.9 s without). DuckDB's max_vacuum_tasks = 0 keeps the deleted rows
#: marked instead (correct, a little more to scan and store); once every ``vacuum_minutes`` a
#: run lets its checkpoints compact them, for the warehouse and for each analytics generation.
def vacuum_due(cfg: Any, name: str) -> bool:
    """Whether this run's checkpoints of the file ``name`` (``warehouse``, or an analytics
    generation's file name) may compact deleted rows: its last compaction is older than
    ``vacuum_minutes``, unknown, or in the future (a clock set back)."""
    try:
        age = time.time() - _vacuum_marker(cfg, name).stat().st_mtime
    except OSError:
        return True
    return not 0 <= age < cfg.vacuum_minutes * 60


def mark_vacuumed(cfg: Any, name: str) -> None:
    """Note that the file ``name`` was just checkpointed with compaction. A note that cannot be
    written costs only an early compaction next run: warned, never raised (the batches are
    committed by now, and the run must go on to publish them)."""
    marker = _vacuum_marker(cfg, name)
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError as exc:
        log.warning("could not note the compaction of %s in %s (%s); the next run compacts again",
                    name, marker, exc)


def _vacuum_marker(cfg: Any, name: str) -> Path:
    return Path(cfg.work_dir) / "vacuumed" / name


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN ... COMMIT, or ROLLBACK on any error. DuckDB's COMMIT after a failed statement
    silently rolls back, so errors are never swallowed inside: they propagate here."""
    con.execute("BEGIN TRANSACTION").fetchall()
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK").fetchall()
        raise
    con.execute("COMMIT").fetchall()


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the staging and ops tables if missing (idempotent DDL from sql/ddl/)."""
    for name in DDL_ORDER:
        run_script(con, SQL_DIR / "ddl" / f"{name}.sql")
