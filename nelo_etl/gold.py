"""The Gold layer: views for analysts (sql/gold/), their documentation, the read-only analytics
file analysts connect to, and the business report.

Analysts never open the warehouse itself: DuckDB lets no other process open a file that one
process holds read-write, and the job must write every 15 minutes. After each committed run the
job publishes ``analytics.duckdb`` beside the warehouse: the Silver tables, the ledger and the Gold
views. The job keeps two private generations of that file and alternates: each publication brings
the one not published now up to date with only what the loads rewrote (``publish_journal``) and
swaps it in by hard link and atomic rename, so its cost follows the batch, not the warehouse. An
analyst's open connection keeps the snapshot it opened (its inode, never written while published
or held) and sees new data on reconnect; the writer never waits for them.
"""
from __future__ import annotations

import csv
import grp
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import duckdb

from . import silver, sql
from .config import Config
from .db import mark_vacuumed, transaction, vacuum_due
from .ingest import fsync_dir

log = logging.getLogger("nelo_etl.gold")

GOLD_DIR = sql.SQL_DIR / "gold"
ANALYTICS_NAME = "analytics.duckdb"
#: The job's two private generations of the analytics file (see gen_paths).
GEN_NAMES = (".analytics_a.duckdb", ".analytics_b.duckdb")
#: Each team's file is warehouse/team_<name>.duckdb.
TEAM_PREFIX = "team_"
#: What analysts get besides Silver: the ledger (freshness) and dead letters (without raw bodies).
EXTRA_TABLES = {"etl_batches": "SELECT * FROM etl_batches",
                "dead_letter_messages": "SELECT * EXCLUDE (raw_body) FROM dead_letter_messages"}


@dataclass(frozen=True)
class View:
    name: str
    select: str
    description: str
    columns: dict[str, str]


def parse_header(text: str) -> tuple[str, dict[str, str]]:
    """A SQL file's opening comment block: (description, {column: description}).

    The description is every header line before ``-- columns:`` joined into one text (the
    ``<name>:`` the first line opens with dropped); each ``--   column: text`` line of the block
    describes a column, and a more deeply indented line continues the column above it."""
    header = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        header.append(line[2:])
    described: list[str] = []
    columns: dict[str, str] = {}
    in_columns, last = False, None
    for line in header:
        if line.strip() == "columns:":
            in_columns = True
            continue
        if not in_columns:
            described.append(line.strip())
            continue
        m = re.match(r"^\s{1,3}(\w+):\s*(.+)$", line)
        if m:
            last = m.group(1)
            columns[last] = m.group(2).strip()
        elif last and line.strip():
            columns[last] += " " + line.strip()
    description = " ".join(d for d in described if d)
    description = re.sub(r"^\w+:\s*", "", description, count=1)      # "vw_x: what it is" -> "what it is"
    return description, columns


def views() -> list[View]:
    """Every sql/gold/*.sql with its header (see parse_header)."""
    out = []
    for path in sorted(GOLD_DIR.glob("*.sql")):
        text = sql.read_sql(path)
        description, columns = parse_header(text)
        out.append(View(path.stem, text, description or path.stem, columns))
    return out


def silver_docs() -> dict[str, tuple[str, dict[str, str]]]:
    """Each Silver table's (description, {column: description}) from its sql/silver/ header."""
    return {m.name: parse_header(sql.read_sql(m.path)) for m in silver.MODELS}


def _quote(text: str) -> str:
    # comments come from our own SQL files, never from data or config
    return "'" + text.replace("'", "''") + "'"


#: Holds the fingerprint of the Gold views' SQL files a database's views were made from.
VIEWS_STATE = "_views_state"


def views_fingerprint(gold_views: list[View] | None = None,
                      docs: dict[str, tuple[str, dict[str, str]]] | None = None) -> str:
    """SHA-256 of every Gold view's file and every Silver header: what create_views writes
    (``gold_views``, ``docs``: views() and silver_docs(), when the caller has read them)."""
    digest = hashlib.sha256()
    for view in gold_views if gold_views is not None else views():
        digest.update(f"{view.name}\0{view.select}\0".encode())
    for name, (description, columns) in sorted((docs if docs is not None else silver_docs()).items()):
        digest.update(f"{name}\0{description}\0{sorted(columns.items())}\0".encode())
    return digest.hexdigest()


def views_current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the current database already holds what create_views would write: its state
    table names this fingerprint, every Gold view exists, and every comment (views, their
    columns, Silver tables and columns that exist) reads as its header says. A Silver table
    replaced since (CREATE OR REPLACE drops its comments) or a view dropped by hand fails it."""
    db_name = con.execute("SELECT current_database()").fetchall()[0][0]
    try:
        (state,) = con.execute(f"SELECT views_sha, views_sql_sha FROM {VIEWS_STATE}").fetchall()
    except (duckdb.Error, ValueError):
        return False
    gold_views, docs = views(), silver_docs()         # the SQL files, read once for every check below
    # the view SQL as the catalog holds it, as made: another writer's CREATE OR REPLACE VIEW (an
    # older release run by hand, a rollback) changes it while the comments may stay the same
    if (state[0] != views_fingerprint(gold_views, docs)
            or state[1] != _catalog_views_sha(con, db_name, [v.name for v in gold_views])):
        return False
    said = dict(((r[0], None), r[1]) for r in con.execute(
        "SELECT view_name, comment FROM duckdb_views() WHERE database_name = $d AND schema_name = 'main' "
        "UNION ALL SELECT table_name, comment FROM duckdb_tables() WHERE database_name = $d AND schema_name = 'main'",
        {"d": db_name}).fetchall())
    said.update(((t, c), text) for t, c, text in con.execute(
        "SELECT table_name, column_name, comment FROM duckdb_columns() WHERE database_name = $d "
        "AND schema_name = 'main'", {"d": db_name}).fetchall())
    wanted: dict[tuple[str, str | None], str] = {}
    for view in gold_views:
        wanted[(view.name, None)] = view.description
        wanted.update(((view.name, c), text) for c, text in view.columns.items())
    for name, (description, columns) in docs.items():
        if (name, None) in said:                    # tables not created yet are not commented
            wanted[(name, None)] = description
            wanted.update(((name, c), text) for c, text in columns.items() if (name, c) in said)
    return all(said.get(key, _MISSING) == text for key, text in wanted.items())


_MISSING = object()


def views_current_in(path: Path) -> bool:
    """views_current of the DuckDB file at ``path``, opened read-only (False when it is missing)."""
    if not path.exists():
        return False
    with duckdb.connect(str(path), read_only=True) as con:
        return views_current(con)


def _catalog_views_sha(con: duckdb.DuckDBPyConnection, db_name: str, names: list[str]) -> str:
    """SHA-256 of the SQL of the views ``names`` as the catalog of ``db_name`` holds it (COMMENT
    ON does not change it, and it reads the same after the file is reopened)."""
    rows = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE database_name = $d AND schema_name = 'main' "
                       "AND view_name IN $names ORDER BY view_name", {"d": db_name, "names": names}).fetchall()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def create_views(con: duckdb.DuckDBPyConnection) -> bool:
    """CREATE OR REPLACE every Gold view and COMMENT ON it and its columns (idempotent); and
    COMMENT ON every Silver table and column that exists. One transaction: some 400 catalog
    changes commit once, not one by one (8 times faster). Skipped when the database holds them
    already (views_current): about 0.15 s a run, twice (the warehouse and the publication).
    Returns whether it wrote them."""
    if views_current(con):
        return False
    gold_views = views()
    with transaction(con):
        for view in gold_views:
            con.execute(f"CREATE OR REPLACE VIEW {view.name} AS {sql.strip_comments(view.select)}").fetchall()
            con.execute(f"COMMENT ON VIEW {view.name} IS {_quote(view.description)}").fetchall()
            for column, text in view.columns.items():
                con.execute(f"COMMENT ON COLUMN {view.name}.{column} IS {_quote(text)}").fetchall()
        comment_silver(con)
        db_name = con.execute("SELECT current_database()").fetchall()[0][0]
        con.execute(f"CREATE OR REPLACE TABLE {VIEWS_STATE} AS SELECT $sha AS views_sha, $sql_sha AS views_sql_sha",
                    {"sha": views_fingerprint(gold_views),
                     "sql_sha": _catalog_views_sha(con, db_name, [v.name for v in gold_views])}).fetchall()
        con.execute(f"COMMENT ON TABLE {VIEWS_STATE} IS 'internal: the fingerprint of the Gold views this "
                    "file holds (the job makes them again when it differs)'").fetchall()
    return True


def note_views_sql(con: duckdb.DuckDBPyConnection) -> None:
    """Record in the views' state the hash of their SQL as the catalog gives it now (called on a
    reopened file: see publish)."""
    db_name = con.execute("SELECT current_database()").fetchall()[0][0]
    con.execute(f"UPDATE {VIEWS_STATE} SET views_sql_sha = $sql_sha",
                {"sql_sha": _catalog_views_sha(con, db_name, [v.name for v in views()])}).fetchall()


def comment_silver(con: duckdb.DuckDBPyConnection, database: str | None = None) -> None:
    """COMMENT ON each Silver table (of ``database``, default the current one) and its columns,
    from the sql/silver/ headers. Tables not created yet are left alone."""
    where = database or con.execute("SELECT current_database()").fetchall()[0][0]
    have = {(t, c) for t, c in con.execute(
        "SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = $d AND schema_name = 'main'",
        {"d": where}).fetchall()}
    tables = {t for t, _ in have}
    prefix = f"{database}." if database else ""
    for name, (description, columns) in silver_docs().items():
        if name not in tables:
            continue
        con.execute(f"COMMENT ON TABLE {prefix}{name} IS {_quote(description)}").fetchall()
        for column, text in columns.items():
            if (name, column) in have:
                con.execute(f"COMMENT ON COLUMN {prefix}{name}.{column} IS {_quote(text)}").fetchall()


def analytics_path(cfg: Config) -> Path:
    return Path(cfg.database_path).with_name(ANALYTICS_NAME)


def team_path(cfg: Config, team: str) -> Path:
    """The read-only file of one team's views (config ``teams``)."""
    return Path(cfg.database_path).with_name(f"{TEAM_PREFIX}{team}.duckdb")


def gen_paths(cfg: Config) -> tuple[Path, Path]:
    """The two generations of the analytics file. One is ``analytics.duckdb`` (the same inode, a
    hard link); the other is the one published before it, which the next publication updates in
    place unless an analyst still holds it open (then it is replaced by a copy of the live one)."""
    folder = Path(cfg.database_path).parent
    return folder / GEN_NAMES[0], folder / GEN_NAMES[1]


def live_gen(cfg: Config) -> int | None:
    """Which generation (index into gen_paths) is ``analytics.duckdb`` now; None when none is
    (none published yet, or an older version's file)."""
    target = analytics_path(cfg)
    return next((i for i, gen in enumerate(gen_paths(cfg)) if _same_file(gen, target)), None)


def published_mark(cfg: Config, con: duckdb.DuckDBPyConnection) -> int | None:
    """The journal mark of the generation that is ``analytics.duckdb`` now (``publish_gens``);
    None when no generation is it."""
    live = live_gen(cfg)
    if live is None:
        return None
    sql.run_script(con, sql.SQL_DIR / "ddl" / "publish_gens.sql")       # a warehouse made before it
    row = con.execute("SELECT journal_id FROM publish_gens WHERE gen_name = $g",
                      {"g": gen_paths(cfg)[live].name}).fetchall()
    return row[0][0] if row else None


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except FileNotFoundError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


#: What an earlier version kept: the private base the analytics file was copied from each run.
LEGACY_NAMES = {".analytics_base.duckdb", ".analytics_base.duckdb.wal"}
#: Temp files of a publication: .analytics.duckdb.<pid>.tmp, .analytics_a.duckdb.<pid>.tmp,
#: .team_<name>.duckdb.<pid>.tmp (+ .wal).
_TMP_RE = re.compile(r"^\.(?:analytics|analytics_[ab]|team_\w+)\.duckdb\.\d+\.tmp(?:\.wal)?$")


def clean_leftovers(cfg: Config) -> list[str]:
    """Remove what killed publications left: their temp files (full-size copies, forever
    otherwise), an earlier version's private base copy, and a WAL beside a published file (DuckDB would replay it into the next file and
    refuse to open it). Only one process publishes at a time (it holds the warehouse read-write),
    so every temp file found here is stale. Returns the names removed."""
    folder = Path(cfg.database_path).parent
    removed = []
    for path in folder.iterdir():
        if (_TMP_RE.match(path.name) or path.name in LEGACY_NAMES
                or (path.name.endswith(".duckdb.wal") and path.name[:-4] in _published_names(cfg))):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    if removed:
        log.warning("removed leftovers of killed publications: %s", ", ".join(sorted(removed)))
    return removed


def _published_names(cfg: Config) -> set[str]:
    return {ANALYTICS_NAME} | {team_path(cfg, t).name for t in cfg.teams}


def _install(tmp: Path, target: Path, group: str | None) -> None:
    """Make a finished temp file the published one: fsync, read-only for its owner and group
    (``group`` if set), no stale WAL beside the target, atomic rename, fsync the folder."""
    _seal(tmp, target, group)
    Path(str(target) + ".wal").unlink(missing_ok=True)
    os.replace(tmp, target)
    fsync_dir(target.parent)


def _install_link(gen: Path, target: Path, group: str | None) -> None:
    """Publish a finished generation as ``target``: a hard link to it under a temp name, installed
    (the generation keeps its own name; sealing the link seals the generation, one inode)."""
    tmp = _tmp_for(target)
    os.link(gen, tmp)
    _install(tmp, target, group)


def _seal(tmp: Path, target: Path, group: str | None) -> None:
    """fsync, then read-only for its owner and group (``group`` if set)."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
            os.chown(tmp, -1, gid)
        except (KeyError, PermissionError) as exc:
            raise RuntimeError(f"cannot give {target.name} to group {group!r}: {exc}") from None
        folder = target.parent.stat()
        if not folder.st_mode & (stat.S_IXGRP if folder.st_gid == gid else stat.S_IXOTH):
            log.warning("group %s cannot reach %s: its folder lets them not through (chgrp %s %s; chmod g+x)",
                        group, target, group, target.parent)
    os.chmod(tmp, 0o440)            # read-only, for the owner and the analysts' group


def _tmp_for(target: Path) -> Path:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    for leftover in (tmp, Path(str(tmp) + ".wal")):
        leftover.unlink(missing_ok=True)
    return tmp


def publish(cfg: Config, con: duckdb.DuckDBPyConnection, teams: bool | None = None) -> dict[str, Any]:
    """Bring the generation not published now up to date, with the ledger, the dead letters and
    the views, and publish it as the analytics file; then each team's file when it is due
    (``teams``: None = when due, True/False = always/never).

    The spare generation takes only the rows the loads since its last publication rewrote (the
    keys ``publish_journal`` names), so the cost follows the batch, not the warehouse. When an
    analyst still holds the spare open (a DuckDB reader locks it), or it is missing or broken, it
    is replaced by a byte copy of the live one (its readers keep the old inode) and brought up to
    date from there, as is one made from another warehouse or another state of this one (its
    mark and token are not in ``publish_gens``); with neither usable, Silver is copied whole
    once. Every file is written in the storage format ``analytics_storage_version`` so DuckDB
    1.x clients can open it."""
    clean_leftovers(cfg)
    target = analytics_path(cfg)
    gens = gen_paths(cfg)
    live = live_gen(cfg)
    spare, donor = (gens[1 - live], gens[live]) if live is not None else (gens[0], gens[1])
    # the generation's checkpoints compact its deleted rows once every vacuum_minutes (db.py)
    vacuum = vacuum_due(cfg, spare.name)
    con.execute("SET max_vacuum_tasks = 100" if vacuum else "SET max_vacuum_tasks = 0").fetchall()
    stats = update_generation(con, spare, donor, cfg.analytics_storage_version)
    pub_config = {} if vacuum else {"max_vacuum_tasks": 0}
    pub = duckdb.connect(str(spare), config=pub_config)
    try:
        made = create_views(pub)
        pub.execute("CHECKPOINT").fetchall()
    finally:
        pub.close()
    if made:
        # A file in an older storage format (analytics_storage_version) gives its views' SQL back
        # re-serialized once reopened (CROSS JOIN as a comma, other parentheses): noted as it reads
        # back, or views_current fails there next time and every publication makes them again
        pub = duckdb.connect(str(spare), config=pub_config)
        try:
            note_views_sql(pub)
            pub.execute("CHECKPOINT").fetchall()
        finally:
            pub.close()
    if vacuum:
        mark_vacuumed(cfg, spare.name)
    stats["vacuumed"] = vacuum
    _install_link(spare, target, cfg.analysts_group)
    due = teams_due(cfg) if teams is None else (sorted(cfg.teams) if teams else [])
    t = time.monotonic()
    stats["teams"] = publish_teams(cfg, con, due)
    stats["teams_s"] = time.monotonic() - t
    return stats


def teams_due(cfg: Config) -> list[str]:
    """The teams whose file is missing, older than ``team_refresh_minutes``, or holds other views
    than its configuration names."""
    due = []
    for team, team_cfg in sorted(cfg.teams.items()):
        path = team_path(cfg, team)
        try:
            age_minutes = (time.time() - path.stat().st_mtime) / 60
        except FileNotFoundError:
            due.append(team)
            continue
        if age_minutes >= cfg.team_refresh_minutes or age_minutes < 0:      # a clock set back: refresh
            due.append(team)
            continue
        try:
            with duckdb.connect(str(path), read_only=True) as tcon:
                held = {r[0] for r in tcon.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        except duckdb.Error:
            held = set()
        if held != set(team_cfg.views):
            due.append(team)
    return due


def publish_teams(cfg: Config, con: duckdb.DuckDBPyConnection, teams: Sequence[str] | None = None) -> list[str]:
    """Each team's own file (``teams``, default all): only its Gold views, materialised as tables
    (so nothing beneath them, no Silver row and no user-level detail a view does not show, is in
    the file), with the views' documentation. Needs the Gold views in ``con``'s database. A file
    of a team no longer configured is removed. Returns the teams published.

    Gold views aggregate the whole history, so a team file costs what its views cost over the
    warehouse; publish() therefore refreshes them every ``team_refresh_minutes``, not every run."""
    docs = {v.name: v for v in views()}
    wanted = sorted(cfg.teams) if teams is None else sorted(teams)
    for team, team_cfg in sorted(cfg.teams.items()):
        if team not in wanted:
            continue
        target = team_path(cfg, team)
        tmp = _tmp_for(target)
        con.execute("ATTACH $path AS team_db (STORAGE_VERSION $version)",
                    {"path": str(tmp), "version": cfg.analytics_storage_version}).fetchall()
        try:
            with transaction(con):      # writes the team's file only; one commit for all its tables
                for name in team_cfg.views:
                    con.execute(f"CREATE TABLE team_db.{name} AS SELECT * FROM main.{name}").fetchall()
                    con.execute(f"COMMENT ON TABLE team_db.{name} IS {_quote(docs[name].description)}").fetchall()
                    for column, text in docs[name].columns.items():
                        con.execute(f"COMMENT ON COLUMN team_db.{name}.{column} IS {_quote(text)}").fetchall()
            con.execute("CHECKPOINT team_db").fetchall()
        finally:
            con.execute("DETACH team_db").fetchall()
        _install(tmp, target, team_cfg.group)
    folder = Path(cfg.database_path).parent
    for path in folder.glob(f"{TEAM_PREFIX}*.duckdb"):
        if path.name not in _published_names(cfg):
            log.warning("removing %s: its team is no longer in the config", path.name)
            path.unlink(missing_ok=True)
    return wanted


def update_generation(con: duckdb.DuckDBPyConnection, gen: Path, donor: Path,
                      storage_version: str = "v1.0.0") -> dict[str, Any]:
    """Bring the generation ``gen`` up to date (one transaction on it), then note it in
    ``publish_gens`` and trim the journal to what the older of the two generations still needs
    (one transaction on the warehouse). ``donor`` is the live generation: when ``gen`` is held
    open by a reader, missing or broken, ``gen`` becomes a byte copy of it first.
    Returns {"publish_mode": "full" | "copy" | "incremental", "publish_keys": keys applied}."""
    tables = [m.name for m in silver.MODELS]
    for ddl in ("warehouse_meta", "publish_gens"):                       # a warehouse made before them
        sql.run_script(con, sql.SQL_DIR / "ddl" / f"{ddl}.sql")
    warehouse_id = con.execute("SELECT warehouse_id FROM warehouse_meta").fetchall()[0][0]
    known = {(j, t) for j, t in con.execute("SELECT journal_id, publication_token FROM publish_gens").fetchall()}
    upto = con.execute("SELECT coalesce(max(journal_id), 0) FROM publish_journal").fetchall()[0][0]
    copied = _attach_base(con, gen, donor, storage_version)
    new_token = uuid.uuid4().hex
    try:
        done = _base_state(con, tables, warehouse_id, known)
        if done is None and not copied and donor.exists():     # stale (e.g. orphaned by a crash): copy the live one
            con.execute("DETACH pub_base").fetchall()
            copied = _attach_base(con, gen, donor, storage_version, replace=True)
            done = _base_state(con, tables, warehouse_id, known)
        pending = [] if done is None else journal_pending(con, done, upto)
        column_types = table_column_types(con, tables)
        full = done is None
        with transaction(con):           # writes the generation only: DuckDB writes one database a transaction
            if full:
                for name in tables:
                    con.execute(f"CREATE OR REPLACE TABLE pub_base.{name} AS SELECT * FROM main.{name}").fetchall()
                con.execute("CREATE OR REPLACE TABLE pub_base._publish_state (journal_id BIGINT, tables VARCHAR, "
                            "warehouse_id VARCHAR, publication_token VARCHAR)").fetchall()
                con.execute("INSERT INTO pub_base._publish_state VALUES (0, $t, $w, NULL)",
                            {"t": ",".join(tables), "w": warehouse_id}).fetchall()
            for name, whole, _count, key_json in pending:
                if whole:
                    con.execute(f"DELETE FROM pub_base.{name}").fetchall()
                    con.execute(f"INSERT INTO pub_base.{name} SELECT * FROM main.{name}").fetchall()
                else:
                    _apply_keys(con, name, done, upto, column_types[name], list(json.loads(key_json)))
            for name, select in EXTRA_TABLES.items():     # small: rewritten whole
                con.execute(f"CREATE OR REPLACE TABLE pub_base.{name} AS {select}").fetchall()
            con.execute("UPDATE pub_base._publish_state SET journal_id = $upto, publication_token = $token",
                        {"upto": upto, "token": new_token}).fetchall()
        con.execute("CHECKPOINT pub_base").fetchall()     # the published file must hold everything, no WAL
    finally:
        con.execute("DETACH pub_base").fetchall()
    # The generation holds everything up to `upto` now under the new token. A crash before this
    # commit leaves the warehouse without that token, so the generation is rebuilt next time:
    # never a row twice or missed. The journal keeps what the other generation still lacks.
    with transaction(con):
        con.execute("DELETE FROM publish_gens WHERE gen_name = $g", {"g": gen.name}).fetchall()
        con.execute("INSERT INTO publish_gens VALUES ($g, $upto, $token)",
                    {"g": gen.name, "upto": upto, "token": new_token}).fetchall()
        con.execute("DELETE FROM publish_gens WHERE gen_name NOT IN $names", {"names": list(GEN_NAMES)}).fetchall()
        con.execute("DELETE FROM publish_journal WHERE journal_id <= (SELECT min(journal_id) FROM publish_gens)"
                    ).fetchall()
        con.execute("UPDATE warehouse_meta SET publication_token = $token, "
                    "publication_generation = publication_generation + 1", {"token": new_token}).fetchall()
    mode = "full" if full else "copy" if copied else "incremental"
    return {"publish_mode": mode, "publish_keys": sum(row[2] for row in pending)}


def journal_pending(con: duckdb.DuckDBPyConnection, done: int, upto: int) -> list[tuple[str, bool, int, str | None]]:
    """Per table the journal names in (done, upto]: whether a load rewrote it whole, its key
    count, and one of its keys (their shape)."""
    return con.execute(
        "SELECT table_name, max(key_json = '*') AS whole, count(*), any_value(key_json) FILTER (key_json <> '*') "
        "FROM publish_journal WHERE journal_id > $done AND journal_id <= $upto GROUP BY table_name",
        {"done": done, "upto": upto}).fetchall()


def table_column_types(con: duckdb.DuckDBPyConnection, tables: list[str],
                       database: str | None = None) -> dict[str, dict[str, str]]:
    """{table: {column: type}} of ``tables`` in ``database`` (the connection's own by default)."""
    types: dict[str, dict[str, str]] = {}
    for table, column, data_type in con.execute(
            "SELECT table_name, column_name, data_type FROM duckdb_columns() WHERE database_name = "
            "coalesce($db, current_database()) AND schema_name = 'main' AND table_name IN $t",
            {"db": database, "t": tables}).fetchall():
        types.setdefault(table, {})[column] = data_type
    return types


def _attach_base(con: duckdb.DuckDBPyConnection, gen: Path, donor: Path, storage_version: str,
                 replace: bool = False) -> bool:
    """ATTACH ``gen`` read-write as ``pub_base`` in ``storage_version``. A generation that a
    reader holds (DuckDB's lock), that is missing, unreadable or in another storage format
    (DuckDB cannot lower a file's version) is replaced by a byte copy of ``donor`` (or, failing
    that, an empty file) under its name: readers of the old one keep their inode. Returns whether
    it was replaced by a copy (``replace``: replace it in any case)."""
    problem = "replaced" if replace else None
    if gen.exists() and not replace:
        try:
            os.chmod(gen, 0o640)            # sealed read-only when it was published; we own it
        except OSError:
            pass
        try:
            _attach_checked(con, gen, storage_version)
            return False
        except (duckdb.Error, ValueError) as exc:
            problem = str(exc).splitlines()[0]
    for candidate in (donor, None):
        tmp = gen.with_name(f"{gen.name}.{os.getpid()}.tmp")
        try:
            if candidate is not None:
                if not candidate.exists():
                    continue
                shutil.copyfile(candidate, tmp)
                os.replace(tmp, gen)        # never written in place: a reader keeps its inode
            else:
                gen.unlink(missing_ok=True)
            Path(str(gen) + ".wal").unlink(missing_ok=True)
            _attach_checked(con, gen, storage_version)
        except (duckdb.Error, ValueError, OSError) as exc:
            log.warning("publication: %s unusable as a start (%s)", candidate or "an empty file",
                        str(exc).splitlines()[0])
            tmp.unlink(missing_ok=True)
            continue
        if problem:
            log.info("publication: %s was unusable (%s); started from %s", gen.name, problem,
                     candidate.name if candidate else "an empty file")
        return candidate is not None
    raise RuntimeError(f"cannot create the publication file {gen}")


def _attach_checked(con: duckdb.DuckDBPyConnection, path: Path, storage_version: str) -> None:
    con.execute("ATTACH $path AS pub_base (STORAGE_VERSION $version)",
                {"path": str(path), "version": storage_version}).fetchall()
    tags = con.execute("SELECT tags FROM duckdb_databases() WHERE database_name = 'pub_base'").fetchall()[0][0]
    if dict(tags).get("storage_version", "").rstrip("+") != storage_version:
        con.execute("DETACH pub_base").fetchall()
        raise ValueError(f"storage version {dict(tags).get('storage_version')}, not {storage_version}")


def _base_state(con: duckdb.DuckDBPyConnection, tables: list[str], warehouse_id: str,
                known: set[tuple[int, str]]) -> int | None:
    """The journal id the attached generation is complete up to; None when it must be built
    whole: new, from another version of the Silver models, columns that no longer match, or
    made from another warehouse or another state of this one (a restored backup, a crash between
    the generation's commit and the warehouse's: its (journal id, token) is not in publish_gens)."""
    try:
        (state,) = con.execute("SELECT journal_id, tables, warehouse_id, publication_token "
                               "FROM pub_base._publish_state").fetchall()
    except (duckdb.Error, ValueError):
        return None
    if state[1] != ",".join(tables) or state[2] != warehouse_id or (state[0], state[3]) not in known:
        return None
    shapes = con.execute(
        "SELECT database_name = 'pub_base', table_name, list(column_name || ' ' || data_type ORDER BY column_index) "
        "FROM duckdb_columns() WHERE database_name IN ('pub_base', current_database()) AND schema_name = 'main' "
        "GROUP BY ALL").fetchall()
    mine = {t: cols for is_base, t, cols in shapes if not is_base and t in tables}
    theirs = {t: cols for is_base, t, cols in shapes if is_base and t in tables}
    return state[0] if mine == theirs else None


def _apply_keys(con: duckdb.DuckDBPyConnection, name: str, done: int, upto: int,
                columns: dict[str, str], keys: list[str]) -> None:
    """Replace in the base the rows of ``name`` whose key the journal names (delete, then copy).
    ``columns``: the table's column types; ``keys``: the key columns (of one journal row)."""
    if "rowid" in columns:
        # a column of that name would hide DuckDB's row id, and the fetch by rowid below would
        # copy the rows its values happen to number
        raise ValueError(f"{name} has a column named rowid: the publication fetches rows by DuckDB's rowid")
    # the JSON structure comes from our own catalog (column names and types), never from data
    structure = json.dumps({k: columns[k] for k in keys})
    # DISTINCT around the unnest, not on it: DuckDB 2.0's SELECT DISTINCT unnest(<struct>) dedupes on
    # the struct's first field only, which would drop keys
    con.execute(f"CREATE OR REPLACE TEMP TABLE _publish_keys AS SELECT DISTINCT * FROM (SELECT unnest(json_transform("
                f"key_json, {_quote(structure)})) FROM publish_journal WHERE table_name = $t AND journal_id > $done "
                "AND journal_id <= $upto)", {"t": name, "done": done, "upto": upto}).fetchall()
    target = next(m.incremental for m in silver.MODELS if m.name == name)
    match = " AND ".join(f"x.{k} IS NOT DISTINCT FROM k.{k}" for k in target.key or keys)
    floor, bound = "", {}
    if target.mode == "overwrite_from" and target.since:
        # only the key's rows from where the load replaced them (several loads: any of them)
        match += f" AND x.{target.since[0]} >= k.{target.since[1]}"
        floor, bound = sql.since_floor(con, "x", target.since[0], "_publish_keys", target.since[1])
    con.execute(f"DELETE FROM pub_base.{name} AS x WHERE {floor}EXISTS (SELECT 1 FROM _publish_keys AS k WHERE {match})",
                bound).fetchall()
    # the keys' rows are found on the key columns first, then fetched whole by rowid: joined
    # directly, every column of the days the keys reach was read and decompressed, though the
    # keys name about a fifth of those rows (at 5M: 0.109 -> 0.052 CPU s for one batch's
    # silver_list_impressions)
    con.execute(f"INSERT INTO pub_base.{name} SELECT * FROM main.{name} AS x WHERE {floor}x.rowid IN "
                f"(SELECT x.rowid FROM main.{name} AS x WHERE {floor}EXISTS (SELECT 1 FROM _publish_keys AS k "
                f"WHERE {match}))", bound).fetchall()
    con.execute("DROP TABLE _publish_keys").fetchall()


class DashboardFailed(Exception):
    """The analytics file is published, but the dashboard could not be rebuilt (the old page stays)."""


def dashboard_cache(cfg: Config) -> Path:
    """Where the dashboard keeps its JavaScript bundle between runs (it takes seconds to make)."""
    return Path(cfg.work_dir) / "dashboard"


def refresh(cfg: Config, con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """After committed batches: Gold views in the warehouse, then the analytics file, then (when
    ``report_dir`` is set) the dashboard from the analytics file. Timed."""
    t0 = time.monotonic()
    create_views(con)
    t1 = time.monotonic()
    stats = publish(cfg, con)
    seconds = time.monotonic() - t1
    log.info("analytics file published (%s, %d journal keys) in %.2f s; team files refreshed: %s (%.2f s)",
             stats["publish_mode"], stats["publish_keys"], seconds - stats["teams_s"],
             ", ".join(stats["teams"]) or "none due", stats["teams_s"])
    timings = {"gold_views_s": t1 - t0, "publish_s": seconds - stats["teams_s"], "teams_s": stats["teams_s"]}
    if cfg.report_dir is not None:
        from . import dashboard

        t2 = time.monotonic()
        try:
            dashboard.write_from_file(analytics_path(cfg), cfg.report_dir, dashboard_cache(cfg))
        except Exception as exc:  # noqa: BLE001 - the data is committed and published; say so
            log.exception("dashboard failed")
            raise DashboardFailed(f"analytics file published, but the dashboard in {cfg.report_dir} was not "
                                  f"rebuilt ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
                                  ) from exc
        timings["dashboard_s"] = time.monotonic() - t2
    return timings


# --------------------------------------------------------------------------------------------
# the report

REPORT: list[tuple[str, str]] = [
    ("Funnel and bounce by platform (all days)",
     "SELECT platform, sum(sessions) AS sessions, sum(bounced_sessions) / sum(sessions) AS bounce_rate, "
     "sum(sessions_with_product_view) AS product_view_sessions, sum(sessions_with_checkout) AS checkout_sessions, "
     "sum(sessions_with_purchase) AS purchase_sessions, sum(orders) AS orders, sum(revenue) AS revenue, "
     "sum(revenue_usd) AS revenue_usd, sum(revenue) / nullif(sum(orders), 0) AS aov "
     "FROM vw_platform_daily_performance_sessions GROUP BY platform ORDER BY platform"),
    ("Daily funnel, drop-offs and conversion",
     "SELECT session_date, platform, sessions, bounce_rate, view_to_checkout_rate, checkout_to_purchase_rate, "
     "view_to_purchase_rate, orders, aov_usd, installment_adoption_rate "
     "FROM vw_platform_daily_performance_sessions ORDER BY session_date, platform"),
    ("AOV of cart abandoners vs the rest",
     "SELECT * FROM vw_abandoned_cart_aov ORDER BY platform, cohort"),
    ("Targeting list: checkout drop-offs with no purchase since (by cart value)",
     "SELECT user_id, platform, last_abandon_ts, cart_value_usd, cart_products "
     "FROM gold_segment_abandon_no_purchase_since_v ORDER BY cart_value_usd DESC NULLS LAST, user_id"),
    ("Segments: sizes",
     "SELECT 'bounce' AS segment, count(*) AS sessions FROM gold_segment_bounce_v UNION ALL "
     "SELECT 'checkout_abandon', count(*) FROM gold_segment_checkout_abandon_v UNION ALL "
     "SELECT 'high_value_abandon', count(*) FROM gold_segment_high_value_abandon_v UNION ALL "
     "SELECT 'abandon_then_bought_different', count(*) FROM gold_segment_abandon_then_bought_different_v UNION ALL "
     "SELECT 'abandon_no_purchase_since (users)', count(*) FROM gold_segment_abandon_no_purchase_since_v"),
    ("Lists compared (all days)",
     "SELECT platform, item_list_id, any_value(item_list_name) AS item_list_name, sum(list_impressions) AS impressions, "
     "sum(sessions_exposed) AS sessions_exposed, sum(sessions_with_click) / sum(sessions_exposed) AS ctr_sessions, "
     "sum(sessions_with_purchase) / sum(sessions_exposed) AS purchase_rate_on_exposure, "
     "sum(attributed_revenue_usd) AS attributed_revenue_usd "
     "FROM vw_list_daily_performance_sessions GROUP BY ALL ORDER BY platform, item_list_id"),
    ("Campaigns compared (all days)",
     "SELECT campaign_id, platform, sum(sessions_exposed) AS sessions_exposed, "
     "sum(sessions_with_purchase) / sum(sessions_exposed) AS session_conversion_rate, sum(orders) AS orders, "
     "sum(revenue_usd) AS revenue_usd, sum(discount_value) AS discount_value "
     "FROM vw_campaign_performance_daily GROUP BY ALL ORDER BY campaign_id, platform"),
    ("Growth engagement by campaign and list (by exposure)",
     "SELECT campaign_id, item_list_id, platform, sum(sessions_exposed) AS sessions_exposed, "
     "sum(sessions_with_click) AS sessions_with_click, sum(attributed_revenue_usd) AS attributed_revenue_usd "
     "FROM vw_growth_engagement_daily GROUP BY ALL ORDER BY sessions_exposed DESC, campaign_id, item_list_id"),
    ("Experiments vs AOV",
     "SELECT * FROM vw_experiment_performance ORDER BY experiment_id, variant, platform"),
    ("Coupons vs AOV",
     "SELECT * FROM vw_coupon_impact ORDER BY platform, has_coupon"),
    ("Price changes during current campaigns",
     "SELECT campaign_id, item_id, change_ts, old_price, new_price, delta_pct FROM "
     "vw_gold_product_campaign_price_change_events WHERE is_current_campaign ORDER BY campaign_id, item_id, change_ts"),
    ("Current campaigns: product status on the as-of date",
     "SELECT * FROM vw_gold_product_campaign_current_status "
     "ORDER BY has_discount_on_as_of_date DESC, max_discount_rate_on_as_of_date DESC NULLS LAST, campaign_id, item_id"),
    ("Discounts by day",
     "SELECT * FROM vw_daily_purchase_discounts ORDER BY order_date, platform"),
    ("Discounts by product and campaign (by discount)",
     "SELECT * FROM vw_product_campaign_discounts ORDER BY discount_value DESC, item_id, campaign_id"),
    ("Products: views to purchases (by revenue)",
     "SELECT item_id, sum(views) AS views, sum(sessions_viewed) AS sessions_viewed, "
     "sum(sessions_viewed_and_purchased) / nullif(sum(sessions_viewed), 0) AS view_to_purchase_rate, "
     "sum(units) AS units, sum(revenue_usd) AS revenue_usd FROM vw_product_daily_performance "
     "GROUP BY item_id ORDER BY revenue_usd DESC, item_id"),
    ("Installment adoption by day",
     "SELECT * FROM vw_installment_adoption_daily ORDER BY order_date, platform"),
]


#: Report columns in Mexican pesos (the producer's prices); the report names them <name>_mxn, as
#: the US-dollar ones are <name>_usd, so no money figure leaves without its currency.
MXN_COLUMNS = frozenset({
    "revenue", "aov", "cart_value", "avg_abandoned_cart_value", "discount_value", "gross_revenue",
    "net_revenue", "old_price", "new_price", "current_price", "attributed_revenue"})


def report_column(name: str) -> str:
    return f"{name}_mxn" if name in MXN_COLUMNS else name


def run_report(con: duckdb.DuckDBPyConnection) -> list[tuple[str, list[str], list[tuple]]]:
    """Every REPORT section as (title, column names with their currency, rows)."""
    out = []
    for title, query in REPORT:
        cur = con.execute(query)
        rows = cur.fetchall()
        out.append((title, [report_column(d[0]) for d in cur.description], rows))
    return out


def report_file_name(index: int, title: str) -> str:
    """``03_aov_of_cart_abandoners_vs_the_rest``: the section's place and title, file-safe."""
    return f"{index + 1:02d}_" + re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def _cell(value: Any) -> str:
    """A terminal or markdown cell: thousands separators, 2 or 4 decimals."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _plain(value: Any) -> Any:
    """A CSV cell a program reads back: numbers as plain digits (full precision, no separators),
    lists joined by ';', booleans true/false, empty for null."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return ";".join(map(str, value))
    return str(value)


def write_csv_report(sections: Sequence[tuple[str, list[str], list[tuple]]], folder: Path) -> list[Path]:
    """One CSV file per section in ``folder`` (header row, then every row, plain numbers), each
    written to a temp name and renamed. Returns the files."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, (title, columns, rows) in enumerate(sections):
        target = folder / f"{report_file_name(index, title)}.csv"
        tmp = folder / f".{target.name}.tmp"
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows([_plain(v) for v in row] for row in rows)
        os.replace(tmp, target)
        written.append(target)
    return written


def format_report(sections: Sequence[tuple[str, list[str], list[tuple]]], fmt: str, limit: int | None = None) -> str:
    """The report as one text: ``terminal`` or ``markdown`` tables (``limit`` rows each, then a
    line saying how many more), or ``json`` (every row). CSV is write_csv_report's."""
    if fmt == "json":
        return json.dumps([{"title": t, "rows": [dict(zip(c, r)) for r in rows]} for t, c, rows in sections],
                          default=str, indent=1)
    parts = []
    for title, columns, rows in sections:
        more = max(0, len(rows) - limit) if limit else 0
        cells = [[_cell(v) for v in row] for row in (rows[:limit] if limit else rows)]
        tail = [f"... {more:,} more row{'s' if more != 1 else ''} (--limit 0 shows all; csv and json have all)"] if more else []
        if fmt == "markdown":
            lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
            parts.append("\n".join(lines) + ("\n\n_(no rows)_" if not rows else "") + ("\n\n_" + tail[0] + "_" if tail else ""))
        else:
            widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
            line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
            body = ["  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)) for r in cells]
            parts.append("\n".join([f"== {title} ==", line, "-" * len(line)] + (body or ["(no rows)"]) + tail))
    return "\n\n".join(parts) + "\n"


def _numeric(text: str) -> bool:
    return bool(re.fullmatch(r"-?[\d,]+(\.\d+)?", text))
