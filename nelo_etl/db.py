"""Opening the warehouse: read-write only for a transaction's span, with a bounded wait."""
from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from .sql import SQL_DIR, run_script

log = logging.getLogger("nelo_etl.db")

DDL_ORDER = ("stg_events", "dead_letter_messages", "etl_batches", "dim_platforms", "dim_dates",
             "dim_item_lists", "dim_experiments", "dim_campaigns", "dim_products", "silver_event_sessions",
             "dim_users", "fct_product_campaigns",
             "publish_journal", "publish_gens", "warehouse_meta")


class DatabaseBusy(Exception):
    """Another process holds the database file."""


def connect(path: Path, timeout_s: float, read_only: bool = False,
            memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, retrying while another process holds its lock (DuckDB does not wait).
    ``memory_limit`` goes through DuckDB's connect config, never through SQL text."""
    deadline = time.monotonic() + timeout_s
    delay = 0.1
    config = {"memory_limit": memory_limit} if memory_limit else {}
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
        return con


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
