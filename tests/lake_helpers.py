"""Helpers for lakehouse and Spark tests: read a lake table with DuckDB and compare rows across
engines with the types normalised (HUGEINT vs BIGINT, zoned vs plain timestamps, lists)."""
from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import duckdb

from nelo_etl import lakehouse

from .silver_helpers import LOAD_METADATA


def norm(value: Any) -> Any:
    """One value in an engine-neutral form: exact numbers stay exact, integral floats become ints
    (a HUGEINT sum in DuckDB is a BIGINT in Spark), zoned timestamps become plain UTC ones."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, decimal.Decimal):
        value = float(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
            return int(value)
        return value
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if isinstance(value, (list, tuple)):
        return tuple(norm(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, norm(v)) for k, v in value.items()))
    return value


def rows(con: duckdb.DuckDBPyConnection, relation_sql: str, columns: list[str]) -> list[tuple]:
    fetched = con.execute(f"SELECT {', '.join(columns)} FROM {relation_sql}").fetchall()
    return sorted((tuple(norm(v) for v in r) for r in fetched), key=repr)


def table_columns(con: duckdb.DuckDBPyConnection, name: str, drop_metadata: bool = True) -> list[str]:
    """The columns the lake holds of a warehouse table."""
    return [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {name}").fetchall()
            if not (drop_metadata and r[0] in LOAD_METADATA)]


def lake_relation(root: str, folder: str, partitioned: bool) -> str:
    """A DuckDB relation over one lake table (local folder)."""
    pattern = f"{root}/{folder}/*/*.parquet" if partitioned else f"{root}/{folder}/*.parquet"
    return f"read_parquet('{pattern}', hive_partitioning = {'true' if partitioned else 'false'})"


def silver_relation(root: str, name: str) -> str:
    t = lakehouse.table(name)
    return lake_relation(root, t.folder, t.date_expr is not None)


def diff(a: list[tuple], b: list[tuple], limit: int = 3) -> str:
    sa, sb = set(a), set(b)
    return (f"{len(a)} vs {len(b)} rows; only left: {sorted(sa - sb, key=repr)[:limit]}; "
            f"only right: {sorted(sb - sa, key=repr)[:limit]}")
