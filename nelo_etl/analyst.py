"""Connect to the analysts' files so that every new connection shows the latest publication.

For analysts, outside the project's virtualenv: this file needs only Python 3.8+ and the
``duckdb`` package, any 1.x or 2.x (put the project folder on PYTHONPATH, or copy the file).

    from nelo_etl.analyst import connect
    con = connect("/opt/nelo/warehouse/analytics.duckdb")      # or team_finance.duckdb, ...
    con.sql("FROM vw_coupon_impact").show()

The rule (README, "Fresh data"): a DuckDB connection shows the publication that was current
when its database instance opened the file, for as long as the instance lives. In one Python
process ``duckdb.connect(path)`` does NOT open the file again while any other connection to the
same path is open (a notebook's earlier cell): it returns a connection to that instance, with
its old snapshot. ``connect()`` here opens a new in-memory instance and ATTACHes the file
read-only, so each call shows the latest committed publication whatever else is open; a
connection it returned keeps its snapshot until closed.
"""
from __future__ import annotations

import os

import duckdb

#: Where the file is when no path is given: $NELO_ANALYTICS_FILE, else this, relative to the cwd.
DEFAULT_PATH = "warehouse/analytics.duckdb"


def connect(path: "str | os.PathLike[str] | None" = None, alias: str = "analytics") -> "duckdb.DuckDBPyConnection":
    """A new read-only connection to the latest publication of ``path`` (default: the
    environment variable NELO_ANALYTICS_FILE, else warehouse/analytics.duckdb)."""
    chosen = os.fspath(path or os.environ.get("NELO_ANALYTICS_FILE") or DEFAULT_PATH)
    if not os.path.isfile(chosen):
        raise FileNotFoundError(f"no published file at {chosen}")
    if not alias.isidentifier():
        raise ValueError(f"alias must be an identifier: {alias!r}")
    con = duckdb.connect(":memory:")     # a new instance every time: never a cached one
    literal = "'" + chosen.replace("'", "''") + "'"
    con.execute(f"ATTACH {literal} AS {alias} (READ_ONLY)").fetchall()
    con.execute(f"USE {alias}").fetchall()
    return con
