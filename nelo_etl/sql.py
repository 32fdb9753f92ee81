"""SQL files and how their SELECTs are written to tables.

Each transform is a plain SELECT in its own file (portable to Spark); *how* its rows reach a table
(append, merge by key, replace) is decided here, in one small piece of Python. Values enter SQL
only as bound ``$name`` parameters; the identifiers formatted in below come from this code and the
SQL file names, never from config or data.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import duckdb

from .config import ROOT

SQL_DIR = ROOT / "sql"
_PARAM_RE = re.compile(r"(?<![\w$])\$([A-Za-z_]\w*)")
_COMMENT_RE = re.compile(r"--[^\n]*")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Mode = Literal["append", "merge", "overwrite_partitions", "overwrite_from", "replace"]


@lru_cache(maxsize=None)
def read_sql(path: Path) -> str:
    return Path(path).read_text(encoding="utf-8")


def strip_comments(sql: str) -> str:
    """Drop ``--`` comments (the SQL files keep no ``--`` inside string literals)."""
    return _COMMENT_RE.sub("", sql)


def sql_path(layer: str, name: str) -> Path:
    return SQL_DIR / layer / f"{name}.sql"


def run_script(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Run a file of several ``;``-separated statements (DDL, macros), one by one."""
    for statement in strip_comments(read_sql(path)).split(";"):
        if statement.strip():
            con.execute(statement).fetchall()


def journal_whole_table(con: duckdb.DuckDBPyConnection, table: str, load_id: int | None) -> None:
    """Note in ``publish_journal`` that all of ``table`` changed (``*``): the next analytics
    publication copies it whole."""
    con.execute("INSERT INTO publish_journal (load_id, table_name, key_json) VALUES ($l, $t, '*')",
                {"l": load_id, "t": table}).fetchall()


def params_for(sql: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``params`` that ``sql`` uses (DuckDB rejects unused named parameters);
    a parameter the SQL needs but nobody gave is an error naming it."""
    wanted = set(_PARAM_RE.findall(strip_comments(sql)))
    missing = wanted - set(params)
    if missing:
        raise KeyError(f"SQL needs parameters {sorted(missing)}")
    return {k: params[k] for k in wanted}


def run(con: duckdb.DuckDBPyConnection, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple]:
    """Execute and fetch everything (an unfetched result would block the next statement)."""
    return con.execute(sql, params_for(sql, params or {})).fetchall()


def _ident(name: str) -> str:
    if not _IDENT_RE.match(name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


@dataclass(frozen=True)
class Target:
    """Where a SELECT's rows go: ``table`` by ``mode``; ``key`` for merges."""

    table: str
    mode: Mode
    key: Sequence[str] = ()
    #: overwrite_from: (column of the table, column of the new rows): a partition's rows from that
    #: point on are replaced; earlier rows stay
    since: tuple[str, str] | None = None


def since_floor(con: duckdb.DuckDBPyConnection, alias: str, column: str, source: str,
                start: str) -> tuple[str, dict[str, Any]]:
    """For an overwrite_from match (``<alias>.<column> >= <source row>.<start>`` per key): the
    condition ``<alias>.<column> >= $floor AND `` with its parameter, $floor being the earliest
    ``start`` in ``source``. Implied by the per-key match, but a constant: DuckDB skips the row
    groups older than every key's start by their min/max instead of joining the whole table.
    ("", {}) when ``source`` has no start."""
    low = con.execute(f"SELECT min({start}) FROM {source}").fetchall()[0][0]
    return (f"{alias}.{column} >= $floor AND ", {"floor": low}) if low is not None else ("", {})


def write(con: duckdb.DuckDBPyConnection, target: Target, select_sql: str,
          params: Mapping[str, Any] | None = None, journal_load_id: int | None | bool = False) -> int:
    """Write the rows of ``select_sql`` to ``target``; returns the rows written.

    - append:  INSERT the rows.
    - merge:   rows whose key is among the new rows are replaced by them (DELETE + INSERT: one
               statement pair, inside the caller's transaction). The SELECT must not return a key
               twice: that is checked, since DuckDB's own MERGE would not complain.
    - overwrite_partitions: every partition (``key`` value) present in the rows is replaced by
               them: rows of those partitions that the SELECT no longer returns are removed (a
               late event can merge two sessions: the old second session must go). Spark's
               dynamic partition overwrite.
    - overwrite_from: like overwrite_partitions, but only the partition's rows whose
               ``since[0]`` is at or after the new rows' ``since[1]`` go: an SCD2 history is
               recomputed from the version a late observation can change, not from its start.
    - replace: the table becomes exactly the rows.

    Unless ``journal_load_id`` is False, the keys rewritten (merge, overwrite_*) or the whole
    table (replace: ``*``) are noted in ``publish_journal`` under that load id, in the caller's
    transaction: the analytics publication copies only those. Append targets journal nothing here;
    the caller knows how to name their new rows.
    """
    table = _ident(target.table)
    bound = params_for(select_sql, params or {})
    if target.mode == "append":
        return con.execute(f"INSERT INTO {table} BY NAME {select_sql}", bound).fetchall()[0][0]
    if target.mode not in ("merge", "overwrite_partitions", "overwrite_from", "replace"):
        raise ValueError(f"unknown write mode {target.mode!r}")
    if target.mode != "replace" and not target.key:
        raise ValueError(f"{target.mode} of {table} needs key columns")
    # materialised first: the SELECT may read the table it rewrites
    con.execute(f"CREATE OR REPLACE TEMP TABLE _new_rows AS {select_sql}", bound).fetchall()
    try:
        if target.mode == "replace":
            con.execute(f"DELETE FROM {table}").fetchall()
        else:
            keys = ", ".join(_ident(k) for k in target.key)
            if target.mode == "merge":
                dupes = con.execute(f"SELECT {keys}, count(*) FROM _new_rows GROUP BY ALL HAVING count(*) > 1 "
                                    "LIMIT 3").fetchall()
                if dupes:
                    raise ValueError(f"merge into {table}: the new rows repeat a key ({keys}): {dupes}")
            # the rows of every key (merge) or partition (overwrite) present in the new rows go
            floor, bound = "", {}
            match = " AND ".join(f"t.{k} IS NOT DISTINCT FROM n.{k}" for k in (_ident(k) for k in target.key))
            if target.mode == "overwrite_from":
                if not target.since:
                    raise ValueError(f"overwrite_from of {table} needs since=(column, new-rows column)")
                column, start = (_ident(c) for c in target.since)
                keys += f", {start}"
                match += f" AND t.{column} >= n.{start}"
                floor, bound = since_floor(con, "t", column, "_new_rows", start)
            con.execute(f"DELETE FROM {table} AS t WHERE {floor}EXISTS (SELECT 1 FROM (SELECT DISTINCT {keys} "
                        f"FROM _new_rows) AS n WHERE {match})", bound).fetchall()
        # rows in time order: the next batches' scans of this table are bounded by time, and
        # DuckDB skips a row group by its min/max only if the table's rows lie roughly in time
        # order (a rebuild's window functions return them grouped by key instead)
        order = f" ORDER BY {_ident(target.since[0])}" if target.mode == "overwrite_from" and target.since else ""
        written = con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _new_rows{order}").fetchall()[0][0]
        if journal_load_id is not False:
            if target.mode == "replace":
                journal_whole_table(con, target.table, journal_load_id)
            else:
                # overwrite_from: the key and from where its rows were replaced
                named = [_ident(c) for c in (*target.key, *(target.since[1:] if target.mode == "overwrite_from" else ()))]
                con.execute("INSERT INTO publish_journal (load_id, table_name, key_json) "
                            f"SELECT $l, $t, to_json(struct_pack({', '.join(f'{k} := {k}' for k in named)})) "
                            f"FROM (SELECT DISTINCT {', '.join(named)} FROM _new_rows)",
                            {"l": journal_load_id, "t": target.table}).fetchall()
        return written
    finally:
        try:
            con.execute("DROP TABLE IF EXISTS _new_rows").fetchall()
        except duckdb.Error:
            pass    # the transaction failed already; that error is the one to report



# --------------------------------------------------------------------------------------------
# data checks

class CheckFailed(Exception):
    """A data check returned rows. The message names the check and shows the first rows."""

    def __init__(self, name: str, columns: list[str], rows: list[tuple], total: int) -> None:
        shown = "; ".join(", ".join(f"{c}={v!r}" for c, v in zip(columns, row)) for row in rows)
        super().__init__(f"data check {name} failed: {total} offending row(s), first: {shown}")
        self.name, self.rows, self.total = name, rows, total


def check_files() -> list[Path]:
    return sorted((SQL_DIR / "checks").glob("*.sql"))


def run_checks(con: duckdb.DuckDBPyConnection, params: Mapping[str, Any]) -> int:
    """Run every ``sql/checks/*.sql`` (each returns offending rows); raise on the first failure."""
    ran = 0
    for path in check_files():
        sql = read_sql(path)
        cur = con.execute(f"SELECT * FROM ({sql}) LIMIT 5", params_for(sql, params))
        rows = cur.fetchall()
        ran += 1
        if rows:
            columns = [d[0] for d in cur.description]
            total = con.execute(f"SELECT count(*) FROM ({sql})", params_for(sql, params)).fetchall()[0][0]
            raise CheckFailed(path.stem, columns, rows, total)
    return ran
