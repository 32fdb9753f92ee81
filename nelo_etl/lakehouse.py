"""The lakehouse: the staged events and every Silver table as hive-partitioned Parquet under
``lakehouse_path`` (a local folder or an ``s3://`` URI), where Spark, Athena or DuckDB read them.

Layout (``event_date`` is the partition column of every partitioned table)::

    <lake>/staging/stg_events/event_date=2025-10-17/part-0.parquet
    <lake>/staging/stg_events/event_date=2025-10-17/part-after-57.parquet   (append-only: the loads after 57)
    <lake>/silver/fct_events/event_date=2025-10-17/part-0.parquet
    <lake>/silver/dim_products/part-0.parquet              (small tables: one file, no partitions)
    <lake>/silver/<table>/_manifest.json                    (what the lake holds: the export's journal)
    <lake>/gold/<view>/part-*.parquet                       (written by the Spark engine)

**The export** (:func:`export`, after each committed run) fingerprints the partitions of each
table in DuckDB (row count and the sum of the rows' hashes) from the earliest date the loads
since the last export can have changed (:func:`changed_since`), compares with the table's
``_manifest.json`` and rewrites only the partitions whose fingerprint changed (and removes the
ones that are gone). So it rewrites exactly the partitions the batches since the last export
touched, wherever in history a late event landed, and nothing else.

**Append-only tables** (``stg_events``, ``fct_events``, ``fct_event_items``: a load adds rows and
changes none) get a load's rows of a partition as a file of their own,
``part-after-<mark>.parquet`` (the rows of the loads after the table's manifest mark), when the
partition's fingerprint is exactly the manifest's plus theirs; otherwise, and once a partition
holds MAX_PART_FILES files, the partition is rewritten whole as ``part-0.parquet`` (compaction).
A batch's late events touch several full days: rewriting them was 2.6 s of a 3.0 s export at 5M
events.

**Atomic per file.** A file is replaced in one step: locally by writing a hidden temp file
beside it and renaming it over the old one, on S3 by one PUT of the object (an object is replaced
whole). A reader sees the old file or the new one, never half. A partition of one file (every
table but the append-only ones, and those after a compaction) is replaced atomically; a
compaction puts the new ``part-0`` and then removes the partition's other files, so a reader
listing the folder in between sees their rows twice (the manifest lists the files of each
partition).

**Crash-safe and idempotent.** The manifest is rewritten (atomically) after every partition
replaced, so it never claims a partition the lake does not hold. A crash mid-export leaves some
partitions new and the manifest behind for the rest: the next export finds their fingerprints
differ and finishes them (an added file is named after the mark, which moves only once the whole
table is exported, so the next export writes the same name again, or, when more loads came and
the sums no longer add up, rewrites the partition). Running the export twice changes nothing the
second time.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import duckdb
import pyarrow.fs as pafs

from . import silver

log = logging.getLogger(__name__)

PARTITION = "event_date"
MANIFEST = "_manifest.json"
PART_FILE = "part-0.parquet"
#: A partition of an append-only table holding this many files is rewritten as one (compaction):
#: at a batch every 15 minutes today's partition is compacted every six hours.
MAX_PART_FILES = 24
#: How the export writes a Parquet file (COPY options): zstd at its cheapest level.
PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1"
#: Every decimal (money) column is written with this type, by either engine.
LAKE_DECIMAL = "DECIMAL(38, 6)"


@dataclass(frozen=True)
class LakeTable:
    """A table of the lake: its layer folder and how its rows map to an event date (None: one file)."""

    name: str
    layer: str
    date_expr: str | None
    #: for an append-only table, the column naming the load that added each row
    load_column: str | None = None

    @property
    def folder(self) -> str:
        return f"{self.layer}/{self.name}"


#: Partition columns: the table's own date where it has one (a session belongs to its start date,
#: an order to its order date), else the date of its event time. Dimensions and the small
#: product x campaign table are one file each.
_DATES = {
    "fct_events": "event_date",
    "fct_event_items": "event_date",
    "silver_event_sessions": "CAST(event_ts AS DATE)",
    "silver_user_sessions": "session_date",
    "silver_session_features": "session_date",
    "fct_orders": "order_date",
    "silver_list_impressions": "CAST(event_ts AS DATE)",
    "silver_event_list_attribution": "CAST(event_ts AS DATE)",
}

TABLES: list[LakeTable] = [LakeTable("stg_events", "staging", "CAST(event_ts AS DATE)", "load_id")] + [
    LakeTable(m.name, "silver", _DATES.get(m.name),
              "first_load_id" if m.incremental.mode == "append" and _DATES.get(m.name) else None)
    for m in silver.MODELS]


def table(name: str) -> LakeTable:
    return next(t for t in TABLES if t.name == name)


# --------------------------------------------------------------------------------------------
# where the lake is: a local folder or s3://bucket/prefix

@dataclass
class Lake:
    """The lake's filesystem (pyarrow's, local or S3) and its root inside it."""

    uri: str
    fs: pafs.FileSystem
    root: str
    is_s3: bool = False

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def uri_of(self, *parts: str) -> str:
        """A URI other engines understand (s3://... or an absolute local path)."""
        return ("s3://" if self.is_s3 else "") + self.path(*parts)

    def read_text(self, *parts: str) -> str | None:
        try:
            with self.fs.open_input_stream(self.path(*parts)) as f:
                return f.read().decode("utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            if "NoSuchKey" in str(exc) or "does not exist" in str(exc) or "Path does not exist" in str(exc):
                return None
            raise

    def write_atomic(self, data: bytes, *parts: str) -> None:
        """Replace one file whole: S3 PUT, or a temp file renamed over the old one."""
        target = self.path(*parts)
        if self.is_s3:
            with self.fs.open_output_stream(target) as out:
                out.write(data)
            return
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(target).parent / f".{Path(target).name}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)

    def temp_for(self, scratch: Path, *parts: str) -> Path:
        """Where to write the next version of ``parts`` before :meth:`put_file`: locally a hidden
        file beside it (so the publish is a rename), for S3 a file in ``scratch``."""
        if self.is_s3:
            return scratch / f"{uuid.uuid4().hex}.parquet"
        target = Path(self.path(*parts))
        target.parent.mkdir(parents=True, exist_ok=True)
        return target.parent / f".{target.name}.tmp-{uuid.uuid4().hex}"

    def put_file(self, local: Path, *parts: str) -> None:
        """Publish a finished local file at ``parts``, replacing what is there in one step; the
        local file is gone afterwards."""
        target = self.path(*parts)
        if self.is_s3:
            # one PUT (multipart for big files, still committed whole): readers see old or new
            pafs.copy_files(str(local), target, source_filesystem=pafs.LocalFileSystem(),
                            destination_filesystem=self.fs)
            local.unlink()
            return
        if local.parent != Path(target).parent:         # not made by temp_for: copy beside first
            tmp = Path(target).parent / f".{Path(target).name}.tmp-{uuid.uuid4().hex}"
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, tmp)
            local.unlink()
            local = tmp
        with open(local, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(local, target)

    def delete_dir(self, *parts: str) -> None:
        try:
            self.fs.delete_dir(self.path(*parts))
        except FileNotFoundError:
            pass

    def files(self, *parts: str) -> list[str]:
        """Every visible Parquet file under ``parts`` (hidden temp files and manifests excluded)."""
        base = self.path(*parts)
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except FileNotFoundError:
            return []
        # hidden below the folder asked for (temp files, _manifest, Spark's _temporary), not above it
        return sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                      and not any(seg.startswith((".", "_")) for seg in i.path[len(base):].split("/")))


def open_lake(uri: str, endpoint_url: str | None = None, region: str | None = None) -> Lake:
    """The lake at ``uri``: an absolute local folder (created if missing) or ``s3://bucket/prefix``.
    S3 credentials come from boto's usual chain (environment, .env, instance role);
    ``AWS_ENDPOINT_URL_S3`` in the environment wins over ``endpoint_url`` (a local S3 server)."""
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or endpoint_url
        kwargs: dict[str, Any] = {"region": region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"}
        if endpoint:
            ep = urlparse(endpoint)
            kwargs.update(endpoint_override=ep.netloc or ep.path, scheme=ep.scheme or "https")
        fs = pafs.S3FileSystem(**kwargs)
        return Lake(uri, fs, (parsed.netloc + parsed.path).rstrip("/"), is_s3=True)
    root = Path(uri).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return Lake(str(root), pafs.LocalFileSystem(), str(root))


def lake_of(cfg: Any) -> Lake:
    """The configured lake; a relative local path resolves against the config file's folder."""
    uri = cfg.lakehouse_path
    if not uri.startswith("s3://"):
        uri = str((Path(cfg.path).parent / Path(uri).expanduser()).resolve())
    return open_lake(uri, cfg.lakehouse_endpoint_url, cfg.queue.region)


# --------------------------------------------------------------------------------------------
# the export: DuckDB warehouse -> lake

@dataclass
class ExportResult:
    written: dict[str, int] = field(default_factory=dict)     # table -> partitions rewritten
    removed: dict[str, int] = field(default_factory=dict)     # table -> partitions removed
    checked: dict[str, int] = field(default_factory=dict)     # table -> partitions fingerprinted
    #: table -> rows written (a rewritten partition's all, an added file's new ones): what a batch
    #: costs the lake is its late events' whole day partitions, not its own rows
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def line(self) -> str:
        return (f"lake: {sum(self.written.values())} partition(s) rewritten, {sum(self.removed.values())} removed, "
                f"{sum(self.rows.values()):,} rows written in {self.seconds:.2f} s")


def table_columns(con: duckdb.DuckDBPyConnection, name: str) -> list[tuple[str, str]]:
    """A warehouse table's (column, type) in order."""
    # the warehouse's own: the publication may have a generation attached meanwhile (same names)
    return con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = $t "
                       "AND database_name = current_database() AND schema_name = 'main' AND NOT internal "
                       "ORDER BY column_index", {"t": name}).fetchall()


def _export_select(con: duckdb.DuckDBPyConnection, t: LakeTable,
                   columns: list[tuple[str, str]] | list[list[str]] | None = None) -> str:
    """The table's columns as written: JSON as text, HUGEINT sums as BIGINT (Spark's types), money
    as LAKE_DECIMAL, and without the partition column (its value is in the folder name).
    ``columns``: the table's (column, type) when the caller has them."""
    out = []
    for name, dtype in (columns if columns is not None else table_columns(con, t.name)):
        if t.date_expr is not None and name == PARTITION:
            continue
        if dtype == "JSON":
            out.append(f"CAST({name} AS VARCHAR) AS {name}")
        elif dtype == "HUGEINT":
            out.append(f"CAST({name} AS BIGINT) AS {name}")
        elif dtype.startswith("DECIMAL("):
            # one money type in the lake, whichever engine wrote a partition: engines derive
            # different precisions (DuckDB's price * quantity is DECIMAL(37, 6), Spark's (38, 6)),
            # and Spark refuses to read a table whose files disagree
            out.append(f"CAST({name} AS {LAKE_DECIMAL}) AS {name}")
        else:
            out.append(name)
    return ", ".join(out)


def fingerprints(con: duckdb.DuckDBPyConnection, t: LakeTable, since: dt.date | None = None,
                 after_load: int | None = None, hashed: bool = True) -> dict[str, str]:
    """Per partition (ISO date, or ``*``), the row count and the sum of the rows' hashes; only
    the partitions from ``since`` on when given, only the rows of the loads after ``after_load``
    when given (an append-only table's). ``hashed=False``: the row counts alone (``count:``),
    which read the partition column only."""
    part = f"CAST({t.date_expr} AS VARCHAR)" if t.date_expr else "'*'"
    conditions, params = [], {}
    if since is not None and t.date_expr:
        conditions.append(f"{t.date_expr} >= $since{_range(t, '>=')}")
        params["since"] = since
    if after_load is not None and t.load_column:
        conditions.append(f"{t.load_column} > $after")
        params["after"] = after_load
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    digest = "sum(hash(x))" if hashed else "''"
    rows = con.execute(f"SELECT {part} AS p, count(*), {digest} FROM {t.name} AS x {where} GROUP BY ALL",
                       params).fetchall()
    return {p if p is not None else "__null__": f"{n}:{h}" for p, n, h in rows}


def _appended(con: duckdb.DuckDBPyConnection, t: LakeTable, since: dt.date | None, held: dict[str, str],
              in_scope: set[str], new_rows: dict[str, str]) -> dict[str, str] | None:
    """An append-only table's fingerprints from ``since`` on without hashing its older rows: the
    manifest's (``held``; ``in_scope``: its partitions from ``since`` on) plus those of the loads
    since (``new_rows``), when every partition's row count is
    the manifest's plus theirs. Its rows never change once loaded (a change of their types, as an
    upgrade makes, changes the table's columns, and then the export rewrites it whole), so the
    counts tell a removal; hashing the rows again would read every column of the days in scope
    (0.24 CPU s for stg_events' at 5M events, session 13). None when a count disagrees or a
    partition is mid-rewrite: then every row is hashed, as for any other table."""
    counts = fingerprints(con, t, since, hashed=False)
    if set(counts) != in_scope | set(new_rows):
        return None
    now: dict[str, str] = {}
    for p, count in counts.items():
        before, added = held.get(p), new_rows.get(p)
        fingerprint = before if added is None else added if before is None else _added(before, added)
        try:
            if fingerprint is None or _count(fingerprint) != _count(count):
                return None
        except ValueError:              # REWRITING: the partition's files are not its fingerprint
            return None
        now[p] = fingerprint
    return now


def _count(fingerprint: str) -> int:
    """The row count of a partition's fingerprint (``count:hash-sum``)."""
    return int(fingerprint.split(":", 1)[0])


def _added(before: str, rows: str) -> str | None:
    """The fingerprint of a partition after ``rows`` were added to it (counts and sums add up);
    None when ``before`` is no fingerprint (REWRITING)."""
    try:
        (n1, h1), (n2, h2) = (f.split(":") for f in (before, rows))
        return f"{int(n1) + int(n2)}:{int(h1) + int(h2)}"
    except ValueError:
        return None


#: A partition's fingerprint in the manifest while it is rewritten whole over added files: a
#: crash between the new part-0 and the removal of the others leaves it marked, so the next
#: export rewrites it again instead of adding to it.
REWRITING = "rewriting"


def _only_own_files(lake: "Lake", t: LakeTable, p: str, own: list[str], mark: int) -> bool:
    """Whether the partition's folder holds only the export's files (part-0, the added files the
    manifest names, the one this export may write again): another engine's output there (say
    Spark's, after a switch) must go, which only a rewrite does."""
    return set(_files_in(lake, _partition_dir(t, p))) <= {PART_FILE, added_file(mark), *own}


def added_file(mark: int) -> str:
    """The file of an append-only partition holding the rows of the loads after ``mark``."""
    return f"part-after-{mark}.parquet"


def _range(t: LakeTable, op: str) -> str:
    """For a partition date that is ``CAST(<timestamp column> AS DATE)``: the same condition on the
    column itself (implied, added beside it), which DuckDB checks against each row group's
    min/max, so a partition's scan skips the rest of the table instead of casting every row.
    ``op`` is ``>=`` ($since) or ``=`` ($p)."""
    found = re.fullmatch(r"CAST\((\w+) AS DATE\)", t.date_expr or "")
    if not found:
        return ""
    column = found.group(1)
    if op == ">=":
        return f" AND {column} >= CAST($since AS TIMESTAMP)"
    return f" AND {column} >= CAST(CAST($p AS DATE) AS TIMESTAMP) AND {column} < CAST(CAST($p AS DATE) + 1 AS TIMESTAMP)"


def changed_since(con: duckdb.DuckDBPyConnection, load_id: int) -> dt.date | None:
    """The earliest date partition the loads after ``load_id`` can have changed: per (user,
    platform) they added events to, the start of the session holding its earliest new event (a
    late event changes rows from the session in force on, and a session belongs to its start
    date), or that event's date. None when no load came after ``load_id``."""
    # The session in force at a pair's earliest new event is the session of its own row in
    # silver_event_sessions (the load put it there; sessions follow each other in time, so no
    # earlier row has a later start): an equality join, which DuckDB bounds by the new events'
    # times and so skips the older row groups. A pair without that row (none is known; kept
    # exact all the same) takes the session of its latest earlier row, which reads the pair's
    # whole history: 0.3-0.5 CPU s at 5M events when every pair did (session 13).
    row = con.execute("""
        WITH new_events AS (
            SELECT user_id, platform, min(event_timestamp_us) AS since_us
            FROM stg_events WHERE load_id > $load_id GROUP BY user_id, platform
        ),
        own_row AS (
            SELECT n.user_id, n.platform, n.since_us, max(s.session_start_ts) AS start_ts
            FROM new_events AS n
            LEFT JOIN silver_event_sessions AS s
              ON s.user_id = n.user_id AND s.platform = n.platform AND s.event_timestamp_us = n.since_us
            GROUP BY n.user_id, n.platform, n.since_us
        ),
        earlier_row AS (
            SELECT n.since_us, max(s.session_start_ts) AS start_ts
            FROM (SELECT * FROM own_row WHERE start_ts IS NULL) AS n
            LEFT JOIN silver_event_sessions AS s
              ON s.user_id = n.user_id AND s.platform = n.platform AND s.event_timestamp_us <= n.since_us
            GROUP BY n.user_id, n.platform, n.since_us
        ),
        in_force AS (
            SELECT since_us, start_ts FROM own_row WHERE start_ts IS NOT NULL
            UNION ALL
            SELECT since_us, start_ts FROM earlier_row
        )
        SELECT min(least(CAST(coalesce(start_ts, make_timestamp(since_us)) AS DATE),
                         CAST(make_timestamp(since_us) AS DATE)))
        FROM in_force
    """, {"load_id": load_id}).fetchall()
    return row[0][0]


def _manifest(lake: Lake, t: LakeTable) -> tuple[dict[str, str], int | None, list | None, dict[str, list[str]]]:
    """The partitions the lake holds (with their fingerprints), the last load they include, the
    table's columns they were all written with (None: not recorded, by an older release), and
    each partition's files beside ``part-0`` (an append-only table's added files)."""
    text = lake.read_text(t.folder, MANIFEST)
    if not text:
        return {}, None, None, {}
    body = json.loads(text)
    return body["partitions"], body.get("load_id"), body.get("columns"), body.get("added_files", {})


def _save_manifest(lake: Lake, t: LakeTable, parts: dict[str, str], load_id: int | None,
                   columns: list | None, added: dict[str, list[str]]) -> None:
    body = {"table": t.name, "partition_column": PARTITION if t.date_expr else None,
            "load_id": load_id, "columns": columns, "partitions": dict(sorted(parts.items())),
            "added_files": {p: files for p, files in sorted(added.items()) if files and p in parts}}
    lake.write_atomic(json.dumps(body, indent=1).encode("utf-8"), t.folder, MANIFEST)


def _partition_dir(t: LakeTable, p: str) -> tuple[str, ...]:
    return (t.folder,) if t.date_expr is None else (t.folder, f"{PARTITION}={p}")


def _remove_foreign_files(lake: Lake, folder: tuple[str, ...]) -> None:
    """Other Parquet files in a partition the export just rewrote whole (an append-only table's
    added files, now in ``part-0``; a Spark engine's output in the same lake) would double its
    rows: they go. One engine should own a lake's Silver folders (README); this keeps a switch
    between them from double counting."""
    for name, path in _files_in(lake, folder).items():
        if name != PART_FILE:
            lake.fs.delete_file(path)


def _files_in(lake: Lake, folder: tuple[str, ...]) -> dict[str, str]:
    """The visible Parquet files directly in a partition's folder: {name: path}."""
    prefix = lake.path(*folder) + "/"
    return {path[len(prefix):]: path for path in lake.files(*folder) if "/" not in path[len(prefix):]}


#: The manifest is saved after a partition is put in place only when this many seconds passed
#: since its last save (and always once the table is done): a crash leaves the next export to
#: write again what the manifest does not name yet (at most this long of work; the same file
#: names, so nothing doubles), and a 16k batch saves it about once per table instead of once per
#: partition (50 fsynced JSON files, 0.1-0.2 CPU s at 5M events, session 13).
MANIFEST_SAVE_SECONDS = 1.0

#: Partitions written at once: DuckDB writes a Parquet file on one thread (0.97 s for five
#: partitions of stg_events at 5M one after the other, 0.69 s two at a time, on 2 cores).
WRITERS = 2


def _utc_cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A cursor of ``con`` in UTC, as db.connect sets its connections: a cursor does not inherit
    the session's TimeZone."""
    cur = con.cursor()
    cur.execute("SET TimeZone = 'UTC'").fetchall()
    return cur


def _write_partition(con: duckdb.DuckDBPyConnection, t: LakeTable, p: str, columns: str, local: Path,
                     after_load: int | None = None, stop: "StopSignal | None" = None) -> Path:
    """One partition's rows (only those of the loads after ``after_load`` when given) as a Parquet
    file at ``local`` (a temp file), on a cursor of its own (``stop`` can interrupt it)."""
    conditions, params = [], {}
    if t.date_expr is not None:
        conditions.append(f"{t.date_expr} IS NULL" if p == "__null__"
                          else f"{t.date_expr} = CAST($p AS DATE){_range(t, '=')}")
        if p != "__null__":
            params["p"] = p
    if after_load is not None:
        conditions.append(f"{t.load_column} > $after")
        params["after"] = after_load
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    # COPY's target cannot be a bound parameter: the path (ours: lake root + uuid) is quoted
    target = str(local).replace("'", "''")
    cur = _utc_cursor(con)
    try:                        # the caller removes ``local`` whatever happens here
        with (stop.running(cur) if stop else contextlib.nullcontext()):
            cur.execute(f"COPY (SELECT {columns} FROM {t.name} {where}) TO '{target}' ({PARQUET_OPTIONS})",
                        params).fetchall()
    finally:
        cur.close()
    return local


def export(con: duckdb.DuckDBPyConnection, lake: Lake, work_dir: Path,
           tables: list[LakeTable] | None = None, crash_after: int | None = None,
           full: bool = False, stop: "StopSignal | None" = None) -> ExportResult:
    """Bring the lake in line with the warehouse, rewriting only the partitions that differ.

    Each table's manifest names the last load it includes. A table whose manifest is current is
    skipped without reading it; otherwise only its partitions from :func:`changed_since` on are
    fingerprinted (all of them for a new table, an unpartitioned one, or ``full``: after
    ``silver_transforms.py --rebuild``, which rewrites history without a new load). The
    manifest's load mark moves only once all of a table's partitions are written, so a crash
    leaves the next export the same range to check. ``crash_after`` (tests) raises after that
    many partitions were replaced. ``stop`` (ExportThread): raise ExportStopped at the next
    partition, and interrupt the statements running.
    """
    started = time.monotonic()
    result = ExportResult()
    existing = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = "
                                          "current_database() AND schema_name = 'main'").fetchall()}
    if "stg_events" not in existing:
        return result
    latest = con.execute("SELECT max(load_id) FROM stg_events").fetchall()[0][0]
    since_of: dict[int, dt.date | None] = {}
    work_dir.mkdir(parents=True, exist_ok=True)
    replaced = 0
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="lake-export-") as tmp:
        for t in tables or TABLES:
            if stop:
                stop.check()
            if t.name not in existing:
                continue
            held, mark, shape, added = _manifest(lake, t)
            columns_now = [list(c) for c in table_columns(con, t.name)]
            # a table whose columns changed (an upgrade rebuilt Silver in a new shape) is rewritten
            # whole: readers of a folder need one schema in every file. Its manifest keeps the old
            # columns until the last partition is written, so a crash leaves the rest still owed
            reshaped = shape != columns_now
            scoped = not full and not reshaped and mark is not None and latest is not None and mark <= latest
            if scoped and mark == latest:
                continue                                    # no load since this table's export
            since = None
            if scoped and t.date_expr is not None:
                if mark not in since_of:
                    since_of[mark] = changed_since(con, mark)
                since = since_of[mark]
            in_scope = {p for p in held if since is None or p >= since.isoformat()}
            new_rows: dict[str, str] = {}
            now = None
            if t.load_column and scoped:
                # an append-only table's rows of the loads since the manifest's: what it gained
                new_rows = fingerprints(con, t, since, after_load=mark)
                now = _appended(con, t, since, held, in_scope, new_rows)
            if now is None:
                now = fingerprints(con, t, since)
            result.checked[t.name] = len(now)
            changed = sorted(p for p, fp in now.items() if reshaped or held.get(p) != fp)
            gone = sorted(p for p in in_scope if p not in now)
            columns = _export_select(con, t, columns_now) if changed else ""
            # an append-only table's partition that only gained rows (its fingerprint is the one
            # recorded plus that of the rows of the loads since) gets them as a file of its own
            appendable: set[str] = set()
            if t.load_column and scoped and changed:
                appendable = {p for p in changed if p in held and p in new_rows
                              and _added(held[p], new_rows[p]) == now[p]
                              and 1 + len(set(added.get(p, [])) | {added_file(mark)}) <= MAX_PART_FILES
                              and _only_own_files(lake, t, p, added.get(p, []), mark)}
            # the partitions are written two at a time (DuckDB writes one Parquet file on one
            # thread), at most WRITERS ahead of the one being put in place and recorded, in order
            saved = time.monotonic()
            with ThreadPoolExecutor(max_workers=WRITERS) as pool:
                writing: dict[str, tuple[Any, Path]] = {}
                queue = iter(changed)

                def name_of(p: str) -> str:
                    return added_file(mark) if p in appendable else PART_FILE

                def write_next() -> None:
                    p = next(queue, None)
                    if p is not None:
                        local = lake.temp_for(Path(tmp), *_partition_dir(t, p), name_of(p))
                        after = mark if p in appendable else None
                        writing[p] = (pool.submit(_write_partition, con, t, p, columns, local, after, stop), local)

                try:
                    for _ in range(WRITERS):
                        write_next()
                    for p in changed:
                        future, local = writing.pop(p)
                        try:
                            future.result()
                            if stop:
                                stop.check()
                            write_next()
                            if p not in appendable and (added.get(p) or (t.load_column and p in held)):
                                # until its added files are gone, and until the manifest names the
                                # new part-0: an append-only partition's new part-0 holds the rows
                                # of the loads after the mark, and a crash before the manifest is
                                # saved must not leave the old fingerprint beside it (the next
                                # export would add those rows up and write them again as an added
                                # file: found by review)
                                held[p] = REWRITING
                                _save_manifest(lake, t, held, mark, shape, added)
                            lake.put_file(local, *_partition_dir(t, p), name_of(p))
                        finally:
                            local.unlink(missing_ok=True)   # a failed write leaves no temp file
                        if p in appendable:
                            added[p] = sorted(set(added.get(p, [])) | {name_of(p)})
                        else:
                            _remove_foreign_files(lake, _partition_dir(t, p))
                            added.pop(p, None)
                        held[p] = now[p]
                        if time.monotonic() - saved >= MANIFEST_SAVE_SECONDS:
                            _save_manifest(lake, t, held, mark, shape, added)
                            saved = time.monotonic()
                        result.written[t.name] = result.written.get(t.name, 0) + 1
                        result.rows[t.name] = result.rows.get(t.name, 0) + _count(new_rows[p] if p in appendable else now[p])
                        replaced += 1
                        if crash_after is not None and replaced >= crash_after:
                            raise RuntimeError(f"simulated crash after {replaced} partition(s)")
                finally:
                    # a failure: the writes in flight finish (or never start), and their temp
                    # files (beside the partition in a local lake) go
                    for future, local in writing.values():
                        future.cancel()
                        try:
                            future.result()
                        except BaseException:  # noqa: BLE001 - the first error is the one raised
                            pass
                        local.unlink(missing_ok=True)
            for p in gone:
                lake.delete_dir(*_partition_dir(t, p))
                held.pop(p, None)
                added.pop(p, None)
                _save_manifest(lake, t, held, mark, shape, added)
                result.removed[t.name] = result.removed.get(t.name, 0) + 1
            if changed or gone or mark != latest or reshaped:
                _save_manifest(lake, t, held, latest, columns_now, added)  # the table now includes every load
    result.seconds = time.monotonic() - started
    return result


def export_after_run(cfg: Any, con: duckdb.DuckDBPyConnection | None = None,
                     stop: "StopSignal | None" = None) -> ExportResult | str | None:
    """The hook after a committed run: export, or the error as one line (the batches are
    committed; the next run's export finishes the job). None when no lake is configured.
    ``con``: a cursor on the open warehouse to read it through (ExportThread); otherwise the
    export opens the warehouse read-only itself."""
    if not cfg.lakehouse_path:
        return None
    from .db import connect

    try:
        own = con is None
        if own:
            con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, read_only=True,
                          memory_limit=cfg.duckdb_memory_limit)
        try:
            result = export(con, lake_of(cfg), Path(cfg.work_dir), stop=stop)
        finally:
            if own:
                con.close()
        log.info("%s", result.line())
        return result
    except Exception as exc:  # noqa: BLE001 - reported; nothing is lost, the next run exports again
        log.exception("lake export failed")
        return f"lake export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


class ExportStopped(Exception):
    """The export was asked to stop (the run is stopping); the next export redoes what is left."""


class StopSignal:
    """Asks a running export to stop: it raises ExportStopped at its next partition, and the
    statements running on the cursors it registered are interrupted (DuckDB's interrupt reaches
    only the cursor it is called on, and is lost on an idle one: hence the flag as well)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._cursors: set[duckdb.DuckDBPyConnection] = set()

    def set(self) -> None:
        self._event.set()
        with self._lock:
            running = list(self._cursors)
        for cur in running:
            try:
                cur.interrupt()
            except duckdb.Error:
                pass

    def check(self) -> None:
        if self._event.is_set():
            raise ExportStopped("the lake export was stopped (the run is stopping); the next export redoes it")

    def track(self, cur: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            self._cursors.add(cur)

    def untrack(self, cur: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            self._cursors.discard(cur)

    @contextlib.contextmanager
    def running(self, cur: duckdb.DuckDBPyConnection) -> Iterator[None]:
        """Register ``cur`` while a statement runs on it (checks the flag first)."""
        self.track(cur)
        try:
            self.check()
            yield
        finally:
            self.untrack(cur)
        self.check()                    # an interrupt that came too early to reach the statement


class ExportThread:
    """The lake export on a thread of its own, reading the warehouse through a cursor of ``con``
    while the caller publishes the analytics file on ``con`` itself. The export reads only the
    committed staging and Silver tables, which nothing writes meanwhile (the publication writes
    its own files, and in the warehouse only views, comments and ops tables the export does not
    read); together they take about the larger of the two instead of the sum: after a 16k batch at
    5M, 3.3 s -> 2.2 s, at 100k 1.6 s -> 1.0 s (ad hoc, one run each). Call ``start``, then
    ``join`` (or ``stop_and_wait``) before closing ``con``."""

    def __init__(self, cfg: Any, con: duckdb.DuckDBPyConnection) -> None:
        self.stop = StopSignal()
        self.cursor = _utc_cursor(con)
        self.result: ExportResult | str | None = None
        self._closed = False
        self.thread = threading.Thread(target=self._run, args=(cfg,), name="lake-export", daemon=True)

    def start(self) -> "ExportThread":
        self.thread.start()
        return self

    def _run(self, cfg: Any) -> None:
        # the catalog reads and fingerprints run on this cursor: registered for the whole export
        self.stop.track(self.cursor)
        try:
            self.result = export_after_run(cfg, self.cursor, stop=self.stop)
        finally:
            self.stop.untrack(self.cursor)

    def alive(self) -> bool:
        return self.thread.is_alive()

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.cursor.close()
            except duckdb.Error:
                pass

    def join(self) -> ExportResult | str | None:
        """Wait for the export; its result, or its error as one line."""
        self.thread.join()
        self._close()
        return self.result

    def stop_and_wait(self) -> None:
        """The caller is failing or stopping (SIGTERM, ^C): stop the export and wait until its
        thread is gone, so the connection is never closed under it. A second signal while waiting
        stops it again and keeps waiting: the stop takes a statement's interrupt, not the export."""
        while self.thread.is_alive():
            try:
                self.stop.set()
                self.thread.join()
            except BaseException:  # noqa: BLE001 - a second signal: the first one is re-raised by the caller
                continue
        self._close()


# --------------------------------------------------------------------------------------------
# reading the lake

def parquet_glob(lake: Lake, t_folder: str, partitioned: bool) -> str:
    return lake.uri_of(t_folder, f"*/*.parquet" if partitioned else "*.parquet")


def iter_tables(lake: Lake) -> Iterator[tuple[str, str, bool]]:
    """(name, folder, partitioned) of every table the lake holds files for, Silver and Gold."""
    for t in TABLES:
        if lake.files(t.folder):
            yield t.name, t.folder, t.date_expr is not None
    from . import gold

    for v in gold.views():
        if lake.files("gold", v.name):
            yield v.name, f"gold/{v.name}", False
