"""The warehouse's schema version, and upgrading an older warehouse at start, in one transaction.

``schema_version`` records the shape of the file. A warehouse without it was made before
versioning (version 0: the release up to b55cf29, or older ones whose Silver tables lack the
``recomputed_from_ts`` column). Every entry script calls :func:`ensure_current` before it loads,
rebuilds or publishes; an older warehouse is upgraded there, in ONE transaction:

1. tables declared in ``sql/ddl/`` that are missing are created; columns they gained are added
   (nullable) to the existing tables (the staging tables and the ledger keep their rows);
2. if any Silver table's columns differ from the current SQL's (or the SQL cannot even bind to
   them: the ``BinderException`` of a table without ``recomputed_from_ts``), every Silver table is
   dropped and rebuilt from ``stg_events`` with the current SQL (Silver is derived from staging,
   so this is always correct, and it gives each table the current shape);
3. the new version is recorded.

A failure rolls everything back and is one line; the warehouse stays as it was. Raising
``SCHEMA_VERSION`` (and saying why in ``NOTES``) is how a release that changes a shape asks for
this upgrade.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from . import silver, sql
from .config import Config
from .db import connect, ensure_schema, transaction

log = logging.getLogger("nelo_etl.upgrade")

SCHEMA_VERSION = 4
NOTES = {1: "versioned; Silver rebuilt with recomputed_from_ts and the current shapes",
         2: "money DECIMAL(18, 6) from staging on (out-of-range values dead-lettered); Silver rebuilt",
         3: "fct_orders loaded from the session in force (recomputed_from_ts); Silver rebuilt",
         4: "stg_events without raw_body (archive/<source_file> keeps each line)"}
#: stg_events' money columns: DOUBLE before version 2, DECIMAL(18, 6) since.
MONEY_COLUMNS = ("price_in_usd", "price", "item_revenue_in_usd", "item_revenue", "item_refund_in_usd",
                 "item_refund", "discount_value", "total_price", "installment_price")
VERSION_DDL = sql.SQL_DIR / "ddl" / "schema_version.sql"


def recorded_version(con: Any) -> int | None:
    """The warehouse's version; 0 for a warehouse made before versioning; None for an empty file."""
    tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}
    if "schema_version" in tables:
        return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0]
    return 0 if tables else None


@dataclass
class Upgraded:
    line: str
    rebuilt: bool      # the Silver tables were rebuilt


def ensure_current(cfg: Config) -> Upgraded | None:
    """Upgrade the warehouse if it is older than this release (one transaction); stamp a new one.
    Returns what was done, or None when it was already current. A warehouse lost after loads
    (processed/ holds files) is an error here: opening it would create a new, empty one."""
    from .warehouse import check_present

    check_present(cfg)
    con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, memory_limit=cfg.duckdb_memory_limit)
    try:
        con.execute("SET TimeZone = 'UTC'").fetchall()
        version = recorded_version(con)
        if version is not None and version >= SCHEMA_VERSION:
            return None
        if version is None:              # a new warehouse: the current shape from the start
            with transaction(con):
                ensure_schema(con)
                sql.run_script(con, VERSION_DDL)
                _stamp(con, "created")
            return None
        t0 = time.monotonic()
        with transaction(con):
            rebuilt = upgrade(con, cfg)
            _stamp(con, NOTES[SCHEMA_VERSION])
        line = (f"upgraded {cfg.database_path} from schema version {version} to {SCHEMA_VERSION} "
                f"in {time.monotonic() - t0:.1f} s ({'Silver rebuilt' if rebuilt else 'shapes already current'})")
        log.warning("%s", line)
        return Upgraded(line, rebuilt)
    finally:
        con.close()


def _stamp(con: Any, note: str) -> None:
    sql.run_script(con, VERSION_DDL)
    con.execute("INSERT OR REPLACE INTO schema_version VALUES ($v, now()::TIMESTAMP, $n)",
                {"v": SCHEMA_VERSION, "n": note}).fetchall()


def upgrade(con: Any, cfg: Config) -> bool:
    """Steps 1 and 2 (the caller holds the transaction); True when Silver was rebuilt."""
    add_missing_columns(con)
    money_to_decimal(con)
    drop_raw_bodies(con)
    if silver_shapes_current(con, cfg):
        return False
    rebuild_silver(con, cfg)
    sql.run_checks(con, silver.model_params(cfg, {"load_id": None, "batch_id": None}))
    return True


def drop_raw_bodies(con: Any) -> bool:
    """Version 4: stg_events keeps no copy of each body. The immutable batch file in archive/
    keeps the line (``source_file``, ``line_number``), every byte of it; the copy was half of the
    warehouse's bytes and of each load's staging time. Runs after money_to_decimal, whose
    dead letters take their bodies from it. True when the column was dropped."""
    columns = {c for (c,) in con.execute("SELECT column_name FROM duckdb_columns() "
                                         "WHERE table_name = 'stg_events' AND NOT internal").fetchall()}
    if "raw_body" not in columns:
        return False
    con.execute("ALTER TABLE stg_events DROP COLUMN raw_body").fetchall()
    return True


def money_to_decimal(con: Any) -> int:
    """Version 2: stg_events' money becomes DECIMAL(18, 6). An event with a value the new range
    refuses (|v| >= 10^12, which older releases loaded) leaves stg_events for dead_letter_messages,
    reason ``bad_item_value:<column>``, with its body, as a new load would have done with it.
    Returns the events moved."""
    types = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'stg_events' "
                             "AND NOT internal").fetchall())
    todo = [c for c in MONEY_COLUMNS if c in types and not types[c].startswith("DECIMAL")]
    if not todo:
        return 0
    # the first column out of range names the reason; identifiers come from this module's list
    reason = "CASE " + " ".join(
        f"WHEN abs(round({c}, 6)) >= 1e12 OR isnan({c}) OR isinf({c}) THEN 'bad_item_value:{c}'" for c in todo) + " END"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _out_of_range AS SELECT event_id, min({reason}) AS reason "
                f"FROM stg_events WHERE ({reason}) IS NOT NULL GROUP BY event_id").fetchall()
    moved = con.execute("SELECT count(*) FROM _out_of_range").fetchall()[0][0]
    if moved:
        con.execute(
            "INSERT INTO dead_letter_messages (load_id, batch_id, source_file, source_sha256, line_number, message_id, "
            "reason, detail, raw_body) "
            "SELECT s.load_id, s.batch_id, s.source_file, coalesce(b.sha256, ''), s.line_number, s.message_id, o.reason, "
            "'out of range (|value| < 10^12) when money became DECIMAL(18, 6)', s.raw_body "
            "FROM stg_events AS s JOIN _out_of_range AS o USING (event_id) "
            "LEFT JOIN etl_batches AS b ON b.load_id = s.load_id "
            "WHERE coalesce(s.item_index, 0) = 0").fetchall()
        con.execute("DELETE FROM stg_events WHERE event_id IN (SELECT event_id FROM _out_of_range)").fetchall()
        log.warning("upgrade: %d event(s) with money out of range moved to dead_letter_messages", moved)
    con.execute("DROP TABLE _out_of_range").fetchall()
    for column in todo:
        # TRY_CAST: DuckDB's ALTER also visits the rows deleted above in this same transaction
        # (they are all out of range); every row that stays is inside it and converts exactly
        con.execute(f'ALTER TABLE stg_events ALTER COLUMN "{column}" TYPE DECIMAL(18, 6) '
                    f'USING TRY_CAST("{column}" AS DECIMAL(18, 6))').fetchall()
    return moved


def _columns(con: Any, table: str, temporary: bool = False) -> list[tuple[str, str]]:
    return con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = $t "
                       "AND (database_name = 'temp') = $tmp ORDER BY column_index", {"t": table, "tmp": temporary}).fetchall()


def silver_shapes_current(con: Any, cfg: Config) -> bool:
    """Whether every existing Silver table has the columns (names and types, in order) its
    current SELECT produces; a SELECT that no longer binds to the tables it reads means no."""
    import duckdb

    bound = silver.model_params(cfg, {"load_id": None, "batch_id": None})
    existing = silver.existing_tables(con)
    for model in silver.MODELS:
        if model.name not in existing:
            continue
        select_sql = sql.read_sql(model.path)
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE _shape AS SELECT * FROM ({select_sql}) LIMIT 0",
                        sql.params_for(select_sql, bound)).fetchall()
        except duckdb.Error as exc:
            log.info("Silver model %s no longer binds to this warehouse: %s", model.name, str(exc).splitlines()[0])
            return False
        wanted = _columns(con, "_shape", temporary=True)
        con.execute("DROP TABLE _shape").fetchall()
        if _columns(con, model.name) != wanted:
            log.info("Silver table %s has another shape than its SQL", model.name)
            return False
    return True


def add_missing_columns(con: Any) -> list[str]:
    """Create missing ``sql/ddl/`` tables; add the columns an existing one lacks (nullable)."""
    import duckdb

    wanted = duckdb.connect(":memory:")
    try:
        ensure_schema(wanted)
        shape = wanted.execute("SELECT table_name, column_name, data_type FROM duckdb_columns() "
                               "WHERE NOT internal ORDER BY table_name, column_index").fetchall()
    finally:
        wanted.close()
    ensure_schema(con)                   # creates the missing tables (and runs the DDL's own ALTERs)
    have = {(t, c) for t, c in con.execute("SELECT table_name, column_name FROM duckdb_columns() "
                                           "WHERE NOT internal").fetchall()}
    have_tables = {t for t, _ in have}
    added = []
    for table, column, data_type in shape:
        if table in have_tables and (table, column) not in have:
            con.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {data_type}').fetchall()
            added.append(f"{table}.{column}")
    if added:
        log.info("added columns: %s", ", ".join(added))
    return added


def rebuild_silver(con: Any, cfg: Config) -> dict[str, int]:
    """Drop every Silver table and rebuild it from ``stg_events`` with the current SQL, so each
    table gets the current shape (``silver_transforms.py --rebuild``; the caller holds the
    transaction). Gold views bind at query time, so they survive the drop."""
    for model in silver.MODELS:
        con.execute(f'DROP TABLE IF EXISTS "{model.name}"').fetchall()
    ensure_schema(con)                   # the self-reading Silver tables come from sql/ddl/
    return silver.rebuild(con, cfg)
