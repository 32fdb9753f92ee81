"""One SQL source, two engines: the DuckDB SQL of sql/silver and sql/gold, transpiled to Spark SQL.

The DuckDB files stay the only source. At run time each file is parsed by sqlglot (the version
pinned in requirements.txt; its optimizer is never used: it re-qualified the attribution's
tie-break columns and made results silently wrong), its ``$name`` parameters become Spark SQL
literals in the syntax tree (never string formatting of values), and it is written out in
Spark's dialect. Constructs that sqlglot translates wrongly or not at all are kept out of the
SQL by a lint (:data:`FORBIDDEN`, enforced by tests/test_portable.py); the portable spelling of
each is in its reason.
"""
from __future__ import annotations

import datetime as dt
import decimal
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import sqlglot
from sqlglot import exp

from . import sql

#: The sqlglot version the transpile was proven with (tests/test_spark_engine.py); another one is
#: refused rather than trusted to give the same Spark SQL.
SQLGLOT_VERSION = "30.30.0"


@dataclass(frozen=True)
class Forbidden:
    name: str
    pattern: re.Pattern[str]
    reason: str


def _rx(text: str) -> re.Pattern[str]:
    return re.compile(text, re.IGNORECASE)


#: DuckDB constructs that do not transpile to Spark (or transpile to something silently wrong),
#: with the portable spelling to use instead. Measured with pyspark 4.3.0 and sqlglot 30.x.
FORBIDDEN: list[Forbidden] = [
    Forbidden("epoch_us", _rx(r"\bepoch_us\s*\("),
              "epoch_us() passes through to Spark untranslated; write "
              "date_diff('microsecond', TIMESTAMP '1970-01-01', ts)"),
    Forbidden("epoch_ms", _rx(r"\bepoch_ms\s*\("),
              "epoch_ms() becomes TIMESTAMP_MILLIS in Spark (the inverse function); write "
              "date_diff('millisecond', TIMESTAMP '1970-01-01', ts)"),
    Forbidden("to_microseconds", _rx(r"\bto_microseconds\s*\("),
              "to_microseconds() (an interval) has no Spark translation; compare "
              "date_diff('microsecond', x, y) <= n instead of interval arithmetic"),
    Forbidden("isodow", _rx(r"\bisodow\s*\("),
              "isodow() becomes (DAYOFWEEK(d) % 7) + 1 in Spark, wrong on every row; write "
              "(date_diff('day', DATE '2000-01-03', d) % 7 + 7) % 7 + 1"),
    Forbidden("dayofweek", _rx(r"\b(dayofweek|dow)\s*\("),
              "dayofweek() counts from 0 (Sunday) in DuckDB and from 1 in Spark; write "
              "(date_diff('day', DATE '2000-01-03', d) % 7 + 7) % 7 + 1 (ISO, Monday 1)"),
    Forbidden("len", _rx(r"(?<![\w.])len\s*\("),
              "len(list) becomes LENGTH in Spark, which takes strings only; write array_length(list)"),
    Forbidden("list_has_any", _rx(r"\blist_has_any\s*\("),
              "list_has_any(a, b) becomes a && b in Spark; write "
              "array_length(array_intersect(a, b)) > 0 (or = 0 for NOT)"),
    Forbidden("generate_series in FROM", _rx(r"(\bFROM|,|\bJOIN)\s+(generate_series|range)\s*\("),
              "generate_series(..) AS d(day) in FROM does not transpile to Spark; select "
              "unnest(generate_series(..)) AS day in a subquery instead"),
]

QUALIFY_STAR_REASON = ("QUALIFY on SELECT * leaks the window column (_w) when transpiled to Spark; "
                       "name the selected columns")


def lint(text: str) -> list[str]:
    """The forbidden constructs in one SQL file's text, each as ``name: reason`` (empty: portable)."""
    body = sql.strip_comments(text)
    found = [f"{f.name}: {f.reason}" for f in FORBIDDEN if f.pattern.search(body)]
    tree = sqlglot.parse_one(body, read="duckdb")
    for select in tree.find_all(exp.Select):
        if select.args.get("qualify") and any(isinstance(e, exp.Star) for e in select.expressions):
            found.append(f"QUALIFY on SELECT *: {QUALIFY_STAR_REASON}")
            break
    return found


def check_version() -> None:
    if sqlglot.__version__ != SQLGLOT_VERSION:
        raise RuntimeError(f"sqlglot {sqlglot.__version__} is installed; the Spark transpile is proven with "
                           f"{SQLGLOT_VERSION} (pip install -r requirements.txt)")


def literal(value: Any) -> exp.Expression:
    """A Python value as a typed SQL literal node (the value never passes through SQL text)."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int):
        return exp.cast(exp.Literal.number(value), "BIGINT")
    if isinstance(value, float):
        return exp.cast(exp.Literal.number(repr(value)), "DOUBLE")
    if isinstance(value, decimal.Decimal):
        return exp.Literal.number(str(value))
    if isinstance(value, str):
        return exp.Literal.string(value)
    if isinstance(value, dt.datetime):
        return exp.cast(exp.Literal.string(value.isoformat(sep=" ")), "TIMESTAMP")
    if isinstance(value, dt.date):
        return exp.cast(exp.Literal.string(value.isoformat()), "DATE")
    raise TypeError(f"no SQL literal for a {type(value).__name__}")


def _double(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.DOUBLE):
        return node
    return exp.cast(node, exp.DataType.build("DOUBLE"))


def _float_division(node: exp.Expression) -> exp.Expression:
    """DuckDB's ``/`` always divides as DOUBLE (integers and DECIMAL money alike); Spark divides
    DECIMALs as DECIMAL (a rate of money comes out rounded to six places) and Trino divides
    integers as integers. Both operands as DOUBLE gives every engine DuckDB's meaning."""
    if isinstance(node, exp.Div):
        return exp.Div(this=_double(node.this.copy()), expression=_double(node.expression.copy()))
    return node


def _bind(params: Mapping[str, Any]) -> Callable[[exp.Expression], exp.Expression]:
    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder) and node.name:
            if node.name not in params:
                raise KeyError(f"SQL needs parameter {node.name!r}")
            return literal(params[node.name])
        if isinstance(node, exp.UnixToTime):
            # make_timestamp(us) is a plain TIMESTAMP in DuckDB; Spark's TIMESTAMP_MICROS is zoned:
            # cast it to the plain (NTZ) timestamp so types and comparisons match DuckDB's
            return exp.cast(node.copy(), exp.DataType.build("TIMESTAMP", dialect="duckdb"))
        return node
    return replace


def to_spark(text: str, params: Mapping[str, Any] | None = None) -> str:
    """One DuckDB SELECT as Spark SQL, with ``params`` bound as literals."""
    check_version()
    problems = lint(text)
    if problems:
        raise ValueError("not portable: " + "; ".join(problems))
    tree = sqlglot.parse_one(sql.strip_comments(text), read="duckdb")
    tree = tree.transform(_bind(params or {}), copy=True)
    tree = tree.transform(_float_division, copy=False)
    return tree.sql(dialect="spark")


def to_athena(text: str, database: str | None = None, tables: set[str] | frozenset[str] = frozenset()) -> str:
    """One Gold view's SELECT in Athena's (Trino) dialect, for the Glue DDL; references to
    ``tables`` are qualified with ``database`` (a view must not depend on the session's schema)."""
    check_version()
    tree = sqlglot.parse_one(sql.strip_comments(text), read="duckdb").transform(_float_division, copy=False)
    if database:
        for table in tree.find_all(exp.Table):
            if table.name in tables and not table.args.get("db"):
                table.set("db", exp.to_identifier(database))
    return tree.sql(dialect="athena", pretty=True)


def portable_files() -> list[Path]:
    """Every SQL file both engines run: the Silver models and the Gold views."""
    return sorted((sql.SQL_DIR / "silver").glob("*.sql")) + sorted((sql.SQL_DIR / "gold").glob("*.sql"))
