"""process_staging.py's work: each staging file into DuckDB, atomically, then to processed/.

For one file, in one transaction: the parsed batch is staged (``sql/staging/stg_events.sql``,
deduplicated by ``event_id`` over all history), rejected lines go to ``dead_letter_messages`` (and,
before the commit, to ``dead_letter/<file>``), the Silver transforms run, the data checks run, and a
row goes into the ``etl_batches`` ledger. Only after the commit does the file move to
``processed/``; a crash anywhere before leaves it in ``staging/`` and the database as it was.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import itertools
import json
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from . import gold, lakehouse, silver, sql, warehouse, wire
from .cli import first_line
from .config import Config
from .cpus import usable_cpus
from .db import DatabaseBusy, connect, ensure_schema, mark_vacuumed, vacuum_due
from .ingest import crash_point, durable_copy, fsync_dir, try_lock

log = logging.getLogger("nelo_etl.staging")

CHUNK_LINES = 10_000     # lines parsed into one Arrow chunk: bounds the parser's memory
STG_EVENTS = sql.Target("stg_events", "append")
# keyed by batch name and line: a later load of the same file (a reprocess, or the whole file after
# a truncated copy) rewrites its dead letters instead of adding a second row per message
DEAD_LETTERS = sql.Target("dead_letter_messages", "merge", ("source_file", "line_number"))

_ARM = pa.struct([("code", pa.string()), ("experiment_id", pa.string()), ("variant", pa.string())])
#: Money, exact from the parser on (wire.parse_money): DECIMAL(18, 6).
MONEY = pa.decimal128(18, wire.MONEY_SCALE)
PARSED_SCHEMA = pa.schema([
    ("line_number", pa.int32()), ("message_id", pa.string()), ("sent_timestamp_ms", pa.int64()),
    ("receive_count", pa.int32()), ("event_id", pa.string()), ("event_timestamp_us", pa.int64()),
    ("user_id", pa.string()), ("event_name", pa.string()), ("platform", pa.string()),
    ("replay_timestamp", pa.string()), ("item_count", pa.int32()), ("item_index", pa.int32()),
    *[(k, pa.string()) for k in wire.TEXT_KEYS],
    *[(k, MONEY) for k in sorted(wire.NUMBER_KEYS)],
    ("quantity", pa.int64()), ("is_in_stock", pa.bool_()),
    ("discount_codes", pa.list_(pa.string())), ("campaign_codes", pa.list_(pa.string())),
    ("experiment_arms", pa.list_(_ARM)), ("discount_value", MONEY), ("total_price", MONEY),
    ("installments", pa.int64()), ("installment_price", MONEY),
    ("item_params_extra", pa.map_(pa.string(), pa.string())), ("extra_fields", pa.string()),
])
#: The compiled parser's rows: money as decimal64 (DuckDB's DECIMAL(18, 6) is 64 bits, so it
#: takes these values as they are; decimal128 made DuckDB convert every one).
NATIVE_SCHEMA = pa.schema([pa.field(f.name, pa.decimal64(18, wire.MONEY_SCALE)) if f.type == MONEY else f
                           for f in PARSED_SCHEMA])
REJECTED_SCHEMA = pa.schema([
    ("line_number", pa.int32()), ("message_id", pa.string()), ("reason", pa.string()),
    ("detail", pa.string()), ("raw_body", pa.string()),
])


@dataclass
class FileResult:
    file_name: str
    status: str                     # committed | skipped | failed | waiting (not ready) | ignored (not a file)
    received: int = 0
    loaded_events: int = 0
    duplicate_events: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0
    error: str | None = None
    python_parsed_lines: int = 0     # lines the compiled parser left to the contract parser (-1: all)
    isolated: int = 0                # lines dead-lettered as load_error:... by the bisection
    group_size: int = 1              # files committed in the same transaction as this one
    timings: dict[str, float] = field(default_factory=dict)   # seconds per stage (parse, stage, silver...)

    def line(self) -> str:
        if self.status == "skipped":
            return f"{self.file_name}: skipped (already loaded; --reprocess to load again)"
        if self.status == "failed":
            return f"{self.file_name}: FAILED: {self.error}"
        if self.status in ("waiting", "ignored"):
            return f"{self.file_name}: {self.status}: {self.error}"
        return (f"{self.file_name}: received={self.received} loaded={self.loaded_events} "
                f"duplicates={self.duplicate_events} dead_lettered={self.dead_lettered} "
                + (f"isolated={self.isolated} " if self.isolated else "")
                + f"seconds={self.seconds:.2f}")


@dataclass
class RunResult:
    files: list[FileResult] = field(default_factory=list)
    gold: dict[str, float] | str | None = None      # timings, or the error of the Gold refresh
    lake: Any = None                                # lakehouse.ExportResult, or the export's error

    @property
    def ok(self) -> bool:
        return (all(f.status != "failed" for f in self.files) and not isinstance(self.gold, str)
                and not isinstance(self.lake, str))

    def gold_line(self) -> str | None:
        if self.gold is None:
            return None
        if isinstance(self.gold, str):
            return self.gold
        line = f"gold: views {self.gold['gold_views_s']:.2f} s, analytics file published in {self.gold['publish_s']:.2f} s"
        if "dashboard_s" in self.gold:
            line += f", dashboard in {self.gold['dashboard_s']:.2f} s"
        return line


# --------------------------------------------------------------------------------------------
# parsing: lines to Arrow

class _Columns:
    """Column lists for one chunk of parsed rows."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {name: [] for name in PARSED_SCHEMA.names}
        self.rejected: dict[str, list[Any]] = {name: [] for name in REJECTED_SCHEMA.names}

    def add_event(self, number: int, env: wire.Envelope, event: wire.ParsedEvent) -> None:
        c = self.cols
        # text DuckDB can store: a lone surrogate (a JSON "\\udcff" escape) becomes U+FFFD here; the
        # raw bytes stay in the archived batch file
        extra = _db_text(json.dumps(event.extra_fields, ensure_ascii=False)) if event.extra_fields else None
        message_id = _db_text(env.message_id)
        replay = None if event.replay_timestamp is None else _db_text(event.replay_timestamp)
        rows = event.items or [None]
        for i, item in enumerate(rows):
            c["line_number"].append(number)
            c["message_id"].append(message_id)
            c["sent_timestamp_ms"].append(env.sent_timestamp_ms)
            c["receive_count"].append(env.receive_count)
            c["event_id"].append(event.event_id)
            c["event_timestamp_us"].append(event.event_timestamp)
            c["user_id"].append(event.user_id)
            c["event_name"].append(event.event_name)
            c["platform"].append(event.platform)
            c["replay_timestamp"].append(replay)
            c["item_count"].append(len(event.items))
            c["extra_fields"].append(extra)
            if item is None:
                c["item_index"].append(None)
                for key in _ITEM_COLUMNS:
                    c[key].append(None)
                continue
            c["item_index"].append(item.item_index)
            values = item.values
            for key in _VALUE_KEYS:
                c[key].append(values[key])
            c["is_in_stock"].append(item.is_in_stock)
            c["discount_codes"].append(item.discount_codes)
            c["campaign_codes"].append(item.campaign_codes)
            c["experiment_arms"].append([{"code": a.code, "experiment_id": a.experiment_id, "variant": a.variant}
                                         for a in item.experiment_arms])
            c["discount_value"].append(item.discount_value)
            c["total_price"].append(item.total_price)
            c["installments"].append(item.installments)
            c["installment_price"].append(item.installment_price)
            c["item_params_extra"].append(list(item.item_params_extra.items()) or None)

    def add_rejected(self, number: int, message_id: str | None, reason: str, detail: str, raw: str) -> None:
        r = self.rejected
        r["line_number"].append(number)
        r["message_id"].append(message_id)
        r["reason"].append(reason)
        r["detail"].append(detail)
        r["raw_body"].append(raw)

    def tables(self) -> tuple[pa.Table, pa.Table]:
        return (pa.table(self.cols, schema=PARSED_SCHEMA), pa.table(self.rejected, schema=REJECTED_SCHEMA))


_VALUE_KEYS = tuple(wire.TEXT_KEYS) + tuple(sorted(wire.NUMBER_KEYS)) + ("quantity",)
_ITEM_COLUMNS = _VALUE_KEYS + ("is_in_stock", "discount_codes", "campaign_codes", "experiment_arms",
                               "discount_value", "total_price", "installments", "installment_price",
                               "item_params_extra")


def _db_text(text: str) -> str:
    """Text DuckDB can store: invalid UTF-8 (kept as surrogate escapes) becomes U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        # a lone surrogate that is no escaped byte (a JSON "\\ude00" in a rejected body)
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def parse_lines(lines: Iterable[tuple[int, str]], experiment_pattern: str,
                dead_letters: list[dict[str, Any]]) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Parse batch-file lines with the contract parser, in chunks of Arrow tables
    (parsed item rows, rejected lines). Rejections are also appended to ``dead_letters``."""
    chunk: list[tuple[int, str]] = []
    for number, line in lines:
        chunk.append((number, line))
        if len(chunk) == CHUNK_LINES:
            yield _parse_chunk_lines(chunk, experiment_pattern, dead_letters)
            chunk = []
    yield _parse_chunk_lines(chunk, experiment_pattern, dead_letters)


def _parse_line(cols: _Columns, number: int, line: str, experiment_pattern: str,
                dead_letters: list[dict[str, Any]]) -> None:
    """One line into ``cols``: its item rows, or a rejection with its reason code. An unexpected
    error is this line's alone: it is dead-lettered as ``load_error:<class>``, never the file's."""
    message_id = None
    raw = line
    try:
        env = wire.parse_envelope(line)
        message_id, raw = env.message_id, env.body
        event = wire.parse_body(env.body, experiment_pattern, env.sent_timestamp_ms)
    except wire.RejectedMessage as exc:
        reason, detail = exc.reason, exc.detail
    except Exception as exc:  # noqa: BLE001 - a parser bug must cost one message, not the batch
        reason, detail = f"load_error:{type(exc).__name__}", first_line(exc)
    else:
        cols.add_event(number, env, event)
        return
    dead_letters.append({"MessageId": message_id, "line_number": number, "reason": reason,
                         "detail": detail, "Body": raw})
    cols.add_rejected(number, message_id and _db_text(message_id), reason, detail, _db_text(raw))


def _parse_chunk_lines(chunk: Sequence[tuple[int, str]], experiment_pattern: str,
                       dead_letters: list[dict[str, Any]]) -> tuple[pa.Table, pa.Table]:
    """A chunk of lines as Arrow tables. If a value cannot become Arrow (which would fail the
    whole file on every run), the chunk is rebuilt line by line and the offending lines are
    dead-lettered as ``load_error:<class>``."""
    records: list[dict[str, Any]] = []
    cols = _Columns()
    for number, line in chunk:
        _parse_line(cols, number, line, experiment_pattern, records)
    try:
        tables = cols.tables()
    except Exception:  # noqa: BLE001 - isolated below, line by line
        log.warning("a chunk of lines could not be converted to Arrow; isolating the offending lines")
        records, parsed, rejected = [], [], []
        for number, line in chunk:
            one: list[dict[str, Any]] = []
            single = _Columns()
            _parse_line(single, number, line, experiment_pattern, one)
            try:
                p, r = single.tables()
            except Exception as exc:  # noqa: BLE001
                one = [{"MessageId": None, "line_number": number, "reason": f"load_error:{type(exc).__name__}",
                        "detail": first_line(exc), "Body": line}]
                single = _Columns()
                single.add_rejected(number, None, one[0]["reason"], one[0]["detail"], _db_text(line))
                p, r = single.tables()
            records.extend(one)
            parsed.append(p)
            rejected.append(r)
        tables = (pa.concat_tables(parsed) if parsed else PARSED_SCHEMA.empty_table(),
                  pa.concat_tables(rejected) if rejected else REJECTED_SCHEMA.empty_table())
    dead_letters.extend(records)
    return tables


# --------------------------------------------------------------------------------------------
# one file

def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_dead_letter_file(dead_dir: Path, file_name: str, records: Sequence[dict[str, Any]]) -> None:
    """dead_letter/<batch file name>: JSONL of MessageId, Body, reason, detail (temp + rename).
    ensure_ascii keeps invalid UTF-8 recoverable as \\udcXX escapes."""
    if not records:
        return
    target = dead_dir / file_name
    tmp = dead_dir / f".{file_name}.tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        for r in records:
            fh.write(json.dumps({"MessageId": r["MessageId"], "line_number": r["line_number"],
                                 "reason": r["reason"], "detail": r["detail"], "Body": r["Body"]}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)


def already_loaded(con: Any, sha: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM etl_batches WHERE sha256 = $sha AND status = 'committed'",
                            {"sha": sha}).fetchall()[0][0])


def utc_now() -> datetime:
    """Now in UTC as a naive timestamp (the warehouse's TIMESTAMPs are UTC, whatever TZ says)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class FileWaiting(Exception):
    """The file is not ready (still being written, or it changed during its load): nothing was
    committed and it stays in staging/ for the next run. Not a failure."""


class ContentChanged(Exception):
    """A batch name was loaded before with other content: archived batches are immutable."""


class NotRegularFile(Exception):
    """A symlink, FIFO, device or folder where a batch file should be: never read, left alone."""


def open_regular(path: Path) -> os.stat_result:
    """The stat of ``path`` if it is a regular file, opened without following links and without
    blocking (a FIFO would hang a plain open forever); raises NotRegularFile otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if os.path.islink(path):
            raise NotRegularFile(f"{path.name}: a symbolic link, not a regular file; left alone") from None
        raise
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(f"{path.name}: {_file_kind(st.st_mode)}, not a regular file; left alone")
    return st


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a file"


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


def last_line_complete(path: Path, size: int) -> bool:
    """Whether the file ends with a newline (an empty file counts as complete)."""
    if size == 0:
        return True
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) == b"\n"


def sha256_prefix(path: Path, length: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        left = length
        while left > 0 and (block := fh.read(min(1 << 20, left))):
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def check_immutable(con: Any, path: Path, sha: str, size: int) -> None:
    """Refuse a batch name whose loaded content differs: batch files never change once written.
    The one exception: a file whose earlier load was of a cut copy (a truncated staging file) may
    be completed by the whole file, whose first bytes are exactly what was loaded."""
    rows = con.execute(
        "SELECT sha256, file_bytes FROM etl_batches WHERE file_name = $f AND status = 'committed' "
        "ORDER BY load_id DESC", {"f": path.name}).fetchall()
    for loaded_sha, loaded_bytes in rows:
        if loaded_sha == sha:
            continue
        if loaded_bytes is not None and size > loaded_bytes and sha256_prefix(path, loaded_bytes) == loaded_sha:
            continue
        raise ContentChanged(
            f"{path.name} was loaded before with other content (sha256 {loaded_sha[:12]}.., now {sha[:12]}..): "
            "batch files are immutable; refusing to load it (restore the archived original)")


def move_to(path: Path, folder: Path) -> Path:
    """Move a batch file into ``folder``: a rename, or, when ``folder`` is on another filesystem,
    a durable copy (temp + fsync + rename) and then the unlink of the source."""
    dest = folder / path.name
    try:
        os.replace(path, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        durable_copy(path, folder)
        path.unlink()
        fsync_dir(path.parent)
    os.chmod(dest, 0o600)       # it holds user ids, whoever dropped it into staging/
    fsync_dir(folder)
    return dest


#: Errors that come from the data of some message(s), not from the machine: the loader isolates
#: the offending lines (bisection) and dead-letters them as load_error:<check or class>.
DATA_ERRORS: tuple[type[BaseException], ...] = (
    sql.CheckFailed, duckdb.DataError, duckdb.IntegrityError, duckdb.InvalidInputException, ValueError)
#: Bounds on isolating: beyond them the file fails as a whole, as before (a systematic fault).
ISOLATE_MAX_TRIALS = 64
ISOLATE_MAX_BAD_LINES = 16      # and never more than half of a file's messages


def is_data_error(exc: BaseException) -> bool:
    return isinstance(exc, DATA_ERRORS) and not isinstance(exc, (duckdb.OperationalError, MemoryError))


def load_error_reason(exc: BaseException) -> str:
    """``load_error:<check name>`` for a failing data check, ``load_error:<error class>`` else."""
    if isinstance(exc, sql.CheckFailed):
        return f"load_error:{exc.name}"
    return f"load_error:{type(exc).__name__}"


@dataclass
class _Load:
    """What one file's load works with, across its attempts. With the compiled parser
    (``streamed``) the file is parsed inside its transaction, chunk by chunk straight into
    stg_events. Otherwise (the contract parser, or the bisection after a failed load) its parsed
    rows wait in the temp tables ``parsed_items_<tag>`` and ``rejected_lines_<tag>``; while it is
    staged they carry the names the staging SQL reads (parsed_items, rejected_lines)."""

    cfg: Config
    path: Path
    sha: str
    batch_id: str
    reprocess: bool
    started: datetime
    identity: tuple[int, int, int]
    result: FileResult
    dead_letters: list[dict[str, Any]]
    tag: int = 0
    t0: float = 0.0
    #: ``hook(con, load_id)``, run inside the load's transaction after its staging (a replay marks
    #: its dead letters resolved there, so both commit or neither)
    hook: Any = None
    streamed: bool = False


#: Several waiting files (a backfill, a catch-up, a day of archives) load in one transaction, up
#: to these bounds: the per-file fixed cost (Silver's 16 models, 8 checks, the commit) is then
#: paid once per group. A group that fails falls back to one file at a time. Each group's commit
#: checkpoints (about 1.2 s at 1M events), so fewer, larger groups are cheaper; with the compiled
#: parser memory does not grow with a group (its files are parsed one after the other inside the
#: transaction, in pieces, and the 1M-event file, 2.2 GB, loads in 1.2 GB; the contract parser's
#: temp tables spill to disk past duckdb_memory_limit). 1M events as 64 files (2.2 GB): 256 MiB groups
#: 70.9 s (commits 10.9 s), 1 GiB groups 55.1 s (commits 2.3 s), against 45.9 s as one file.
GROUP_MAX_FILES = 64
GROUP_MAX_BYTES = 1024 * 2**20


def load_file(cfg: Config, path: Path, reprocess: bool = False, parser: str | None = None,
              in_transaction: Any = None) -> FileResult:
    """Load one batch file in one transaction. Raises on failure (the database is unchanged);
    raises FileWaiting when the file is not ready and NotRegularFile for anything but a file.
    ``in_transaction(con, load_id)``, if given, runs inside that transaction (dead-letter replay).

    When the transaction fails for a data reason (a data check, a cast or overflow), the lines
    that cause it are isolated by bisection (trial transactions, rolled back) and dead-lettered as
    ``load_error:<check or class>``; the rest of the file commits. Infrastructure errors (disk,
    lock, memory) fail the file as a whole."""
    con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, memory_limit=cfg.duckdb_memory_limit)
    try:
        ensure_schema(con)
        load = _prepare(con, cfg, path, reprocess, parser, tag=0)
        if isinstance(load, FileResult):
            return load
        load.hook = in_transaction
        _load_alone(con, load)
    finally:
        con.close()
    return load.result


def _prepare(con: Any, cfg: Config, path: Path, reprocess: bool, parser: str | None,
             tag: int) -> "_Load | FileResult":
    """Everything before a file's transaction: is it a regular, complete, new and unchanged
    batch file; then parse it into its own temp tables. A FileResult when there is nothing to load."""
    t0 = time.monotonic()
    st = open_regular(path)
    if not reprocess and not last_line_complete(path, st.st_size) \
            and time.time() - st.st_mtime < cfg.staging_settle_seconds:
        raise FileWaiting(f"{path.name}: its last line is incomplete (still being written?); "
                          "it waits for the next run")
    sha = sha256_of(path)
    if not reprocess and already_loaded(con, sha):
        return FileResult(path.name, "skipped")
    check_immutable(con, path, sha, st.st_size)
    load = _Load(cfg, path, sha, path.name.removesuffix(".jsonl"), reprocess, utc_now(), _identity(st),
                 FileResult(path.name, "committed"), [], tag, t0)
    clock = _Clock(load.result.timings)
    if (parser or cfg.parser) == "native" and native_parser() is not None:
        # parsed in the transaction, straight into stg_events: a copy of every row into a temp
        # table first cost as much as the parse itself (1M events: 9.3 s against 5.5 s without)
        load.streamed = True
        clock.lap("parse")
        return load
    if (parser or cfg.parser) == "native":
        log.warning("the compiled parser is not available (run `make install`); using the contract parser alone")
    # the contract parser fills temp tables, before the transaction
    create_parse_tables(con)
    parse_with_python(con, cfg, path, load.dead_letters)
    load.result.python_parsed_lines = -1
    _rename_parse_tables(con, "", f"_{tag}")
    clock.lap("parse")
    return load


def _parse_into_tables(con: Any, load: _Load) -> None:
    """A streamed load's rows into the canonical temp tables (parsed_items, rejected_lines), for
    the bisection's trial loads; its dead letters start again from this parse."""
    load.dead_letters.clear()
    create_parse_tables(con)
    load.result.python_parsed_lines = parse_with_native(con, load.cfg, load.path, load.dead_letters)
    load.streamed = False


def _rename_parse_tables(con: Any, old: str, new: str) -> None:
    """parsed_items<old> -> parsed_items<new>, and rejected_lines likewise (transactional DDL)."""
    for table in ("parsed_items", "rejected_lines"):
        con.execute(f"ALTER TABLE {table}{old} RENAME TO {table}{new}").fetchall()


def _drop_parse_tables(con: Any, load: _Load) -> None:
    """Drop the load's temp tables, under their tagged and their canonical names."""
    for table in ("parsed_items", "rejected_lines"):
        for name in (f"{table}_{load.tag}", table):
            con.execute(f"DROP TABLE IF EXISTS {name}").fetchall()


def _load_alone(con: Any, load: _Load) -> None:
    """One file in its own transaction; on a data error, isolate and dead-letter the offending
    lines and commit the rest."""
    clock = _Clock(load.result.timings)
    if not load.streamed:
        _rename_parse_tables(con, f"_{load.tag}", "")
    try:
        try:
            _transaction(con, [load], clock)
        except Exception as exc:  # noqa: BLE001 - only data errors are isolated; others re-raised
            if not is_data_error(exc):
                raise
            log.warning("%s: the load failed for a data reason (%s); isolating the offending lines",
                        load.path.name, first_line(exc))
            if load.streamed:
                _parse_into_tables(con, load)
            bad = _isolate(con, load, exc)
            _exclude(con, load, bad)
            load.result.isolated = len(bad)
            _transaction(con, [load], clock)
    finally:
        _drop_parse_tables(con, load)
    load.result.seconds = time.monotonic() - load.t0
    log.info("%s timings: %s", load.path.name, ", ".join(f"{k}={v:.3f}" for k, v in load.result.timings.items()))


def _load_group(con: Any, loads: list[_Load]) -> bool:
    """Several files in one transaction (one ledger row each); False, with nothing committed,
    when it fails (the caller then loads them one at a time)."""
    clock = _Clock(loads[0].result.timings)
    try:
        _transaction(con, loads, clock)
    except warehouse.WarehouseMissing:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure: one file at a time decides
        log.warning("loading %d files in one transaction failed (%s: %s); loading them one at a time",
                    len(loads), type(exc).__name__, first_line(exc))
        return False
    for load in loads:
        _drop_parse_tables(con, load)
        load.result.seconds = time.monotonic() - load.t0
        load.result.group_size = len(loads)
    return True


def _stage_one(con: Any, load: _Load, load_id: int) -> None:
    """Stage one file's parsed rows (its tables carry the canonical names now), its dead letters
    and its ledger row, inside the caller's transaction."""
    path, result = load.path, load.result
    params = {"load_id": load_id, "batch_id": load.batch_id, "source_file": path.name, "source_sha256": load.sha}
    if load.streamed:
        messages = _stage_streamed(con, load, params)
    else:
        messages, params["min_event_ts_us"] = con.execute(
            "SELECT count(DISTINCT line_number), min(event_timestamp_us) FROM parsed_items").fetchall()[0]
        sql.write(con, STG_EVENTS, sql.read_sql(sql.sql_path("staging", "stg_events")), params)
    sql.write(con, DEAD_LETTERS, sql.read_sql(sql.sql_path("staging", "dead_letter_messages")), params)
    # earlier dead letters of this batch name whose line loaded now (a truncated copy that the
    # whole file completed) are resolved: superseded, no longer open
    con.execute(
        "UPDATE dead_letter_messages SET resolved_ts = $now, resolved_by_load_id = $load_id, "
        "resolution = 'superseded' WHERE source_file = $file AND resolved_ts IS NULL AND load_id <> $load_id "
        "AND line_number NOT IN (SELECT line_number FROM rejected_lines)",
        {"now": utc_now(), "load_id": load_id, "file": path.name}).fetchall()
    result.loaded_events = con.execute(
        "SELECT count(DISTINCT event_id) FROM stg_events WHERE load_id = $l", {"l": load_id}).fetchall()[0][0]
    result.dead_lettered = len(load.dead_letters)
    result.duplicate_events = messages - result.loaded_events
    result.received = messages + result.dead_lettered
    con.execute(
        "INSERT INTO etl_batches (load_id, batch_id, file_name, sha256, received, loaded_events, "
        "duplicate_events, dead_lettered, started_ts, finished_ts, status, is_reprocess, error, file_bytes) "
        "VALUES ($load_id, $batch_id, $file, $sha, $received, $loaded, $dupes, $dead, $started, $finished, "
        "'committed', $reprocess, NULL, $bytes)",
        {"load_id": load_id, "batch_id": load.batch_id, "file": path.name, "sha": load.sha,
         "received": result.received, "loaded": result.loaded_events, "dupes": result.duplicate_events,
         "dead": result.dead_lettered, "started": load.started, "finished": utc_now(),
         "reprocess": load.reprocess, "bytes": load.identity[1]}).fetchall()


#: Parsed rows staged per statement. Each statement's duplicate search scans the rows staged
#: before it in the transaction, so fewer, larger statements are cheaper; the rows held wait as
#: Arrow (about 480 bytes a row). Measured on the 1M-event file (parse + stage, one run each):
#: 100k rows 12.8 s, 250k 11.1-11.4 s, 400k 9.4-9.7 s, 800k 9.6 s; peak RSS 1.21-1.24 GB for all
#: (the peak is Silver's).
STAGE_ROWS = 500_000


class _ArrowSlot:
    """An Arrow table registered once under a name, its rows swapped chunk by chunk. DuckDB keeps
    whatever is registered inside a transaction until the transaction ends (its catalog is
    versioned), so registering each chunk held the whole file's rows until the commit (1M events:
    2.1 GB peak against 1.3 GB); a slot holds one chunk at a time. DuckDB reads it through the
    Arrow PyCapsule stream interface, anew at each scan."""

    def __init__(self, schema: pa.Schema) -> None:
        self.table = schema.empty_table()

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self.table.__arrow_c_stream__(requested_schema)


def _stage_streamed(con: Any, load: _Load, params: dict[str, Any]) -> int:
    """Parse the file with the compiled parser and stage it chunk by chunk: each chunk is
    registered as ``parsed_items`` for sql/staging/stg_events.sql, its rejected lines go into a
    temp ``rejected_lines`` (made here, inside the transaction). Chunks come in file order and each
    one's staging sees the ones before in stg_events, so the first line of an event wins as when
    the whole file is staged at once. Returns the count of parsed messages."""
    load.dead_letters.clear()           # a failed group's attempt may have filled them
    _create_temp_table(con, "rejected_lines", REJECTED_SCHEMA)
    select = sql.read_sql(sql.sql_path("staging", "stg_events"))
    messages, declined = 0, [0]
    held: list[pa.Table] = []
    held_rows = 0
    slot, rejected_slot = _ArrowSlot(NATIVE_SCHEMA), _ArrowSlot(REJECTED_SCHEMA)
    con.register("parsed_items", slot)
    con.register("_rejected_chunk", rejected_slot)

    def stage(tables: list[pa.Table]) -> None:
        slot.table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
        # the earliest event time bounds the duplicate search (see stg_events.sql)
        params["min_event_ts_us"] = pc.min(slot.table["event_timestamp_us"]).as_py()
        try:
            sql.write(con, STG_EVENTS, select, params)
        finally:
            slot.table = NATIVE_SCHEMA.empty_table()

    for parsed, rejected in _native_chunks(load.cfg, load.path, load.dead_letters, NATIVE_CHUNK_BYTES, declined):
        # a piece ends only where a byte chunk does: a chunk's declined lines come after its
        # accepted ones (the contract parser takes them), and an event's first line must meet its
        # later copies in one piece, or in a piece after them (review: a declined first line lost
        # to a later accepted copy)
        if parsed.schema == NATIVE_SCHEMA and held and held_rows >= STAGE_ROWS:
            stage(held)
            held, held_rows = [], 0
        if rejected.num_rows:
            rejected_slot.table = rejected
            con.execute("INSERT INTO rejected_lines BY NAME SELECT * FROM _rejected_chunk").fetchall()
            rejected_slot.table = REJECTED_SCHEMA.empty_table()
        if not parsed.num_rows:
            continue
        messages += pc.count_distinct(parsed["line_number"]).as_py()
        held.append(parsed if parsed.schema == NATIVE_SCHEMA else parsed.cast(NATIVE_SCHEMA))
        held_rows += parsed.num_rows
    if held:
        stage(held)
    con.unregister("parsed_items")
    con.unregister("_rejected_chunk")
    load.result.python_parsed_lines = declined[0]
    return messages


def _transaction(con: Any, loads: list[_Load], clock: "_Clock | None", trial: bool = False) -> None:
    """Stage the files, then Silver, the checks and COMMIT, all in one transaction; ROLLBACK when
    ``trial`` (a trial only asks whether the rows load). A streamed load is parsed here, in its
    staging. Otherwise, with one file its parse tables already carry the canonical names; with
    several, each is renamed in and out for its staging (the renames are transactional too).
    Silver and the checks run once, scoped to every load from the first one on (``$load_id``:
    the loads of this transaction)."""
    cfg = loads[0].cfg
    grouped = len(loads) > 1
    con.execute("BEGIN TRANSACTION").fetchall()
    try:
        load_ids = []
        for load in loads:
            load_id = con.execute("SELECT nextval('etl_load_id_seq')").fetchall()[0][0]
            load_ids.append(load_id)
            if grouped and not load.streamed:
                _rename_parse_tables(con, f"_{load.tag}", "")
            _stage_one(con, load, load_id)
            if load.hook is not None:
                load.hook(con, load_id)
            if grouped and not load.streamed:
                _rename_parse_tables(con, "", f"_{load.tag}")
            elif load.streamed:
                con.execute("DROP TABLE rejected_lines").fetchall()
        crash_point("during_load")
        if clock:
            clock.lap("stage")
        params = {"load_id": load_ids[0], "load_ids": load_ids, "batch_id": loads[0].batch_id}
        for model, seconds in silver.apply_batch(con, cfg, params).items():
            if clock:
                clock.into[f"silver.{model}"] = seconds
        if clock:
            clock.lap("silver")
        sql.run_checks(con, silver.model_params(cfg, params))
        if clock:
            clock.lap("checks")
        if trial:
            con.execute("ROLLBACK").fetchall()
            return
        for load in loads:
            # a file that changed while it was read is not committed: it waits for the next run
            try:
                now = _identity(os.stat(load.path))
            except FileNotFoundError:
                now = None
            if now != load.identity:
                raise FileWaiting(f"{load.path.name}: changed during its load (size, time or inode); "
                                  "nothing committed, it waits for the next run")
        # the warehouse file deleted while this transaction ran: committing would write into a
        # file nobody can open again, and the batch files would move on as if loaded
        if not Path(cfg.database_path).exists():
            warehouse.check_present(cfg)
            raise warehouse.WarehouseMissing(f"the warehouse {cfg.database_path} disappeared during the load")
        for load in loads:
            write_dead_letter_file(Path(cfg.dead_letter_dir), load.path.name, load.dead_letters)
        crash_point("before_commit")
    except BaseException:
        con.execute("ROLLBACK").fetchall()
        raise
    con.execute("COMMIT").fetchall()
    if clock:
        clock.lap("commit")
    # DuckDB's COMMIT can roll back silently: make sure the ledger rows are really there
    stored = con.execute("SELECT count(*) FROM etl_batches WHERE load_id IN (SELECT unnest($ids))",
                         {"ids": load_ids}).fetchall()[0][0]
    if stored != len(load_ids):
        raise RuntimeError(f"commit of {', '.join(l.path.name for l in loads)} did not persist")


def _isolate(con: Any, load: _Load, first_error: BaseException) -> dict[int, tuple[str, str]]:
    """The lines whose rows make the load fail, by bisection over trial transactions (each rolled
    back): {line_number: (reason, detail)}. Raises ``first_error`` when the fault cannot be pinned
    on a few lines (it needs several lines together, or it is everywhere: a systematic fault)."""
    con.execute("CREATE OR REPLACE TEMP TABLE parsed_all AS SELECT * FROM parsed_items").fetchall()
    lines = [n for (n,) in con.execute("SELECT DISTINCT line_number FROM parsed_all ORDER BY 1").fetchall()]
    trials = 0
    bad: dict[int, tuple[str, str]] = {}

    def fails(subset: list[int]) -> BaseException | None:
        nonlocal trials
        trials += 1
        if trials > ISOLATE_MAX_TRIALS or len(bad) > ISOLATE_MAX_BAD_LINES:
            raise first_error
        con.execute("CREATE OR REPLACE TEMP TABLE parsed_items AS SELECT * FROM parsed_all "
                    "WHERE line_number IN (SELECT unnest($lines::INTEGER[]))", {"lines": subset}).fetchall()
        trial = dataclasses.replace(load, result=FileResult(load.path.name, "trial"))
        try:
            _transaction(con, [trial], None, trial=True)
        except Exception as exc:  # noqa: BLE001
            if not is_data_error(exc):
                raise
            return exc
        return None

    def search(subset: list[int], error: BaseException) -> None:
        if len(subset) == 1:
            bad[subset[0]] = (load_error_reason(error), first_line(error))
            return
        half = len(subset) // 2
        found = len(bad)
        for part in (subset[:half], subset[half:]):
            part_error = fails(part)
            if part_error is not None:
                search(part, part_error)
        if len(bad) == found:
            raise first_error       # only the lines together fail: nothing to pin on one message

    try:
        search(lines, first_error)
    finally:
        con.execute("CREATE OR REPLACE TEMP TABLE parsed_items AS SELECT * FROM parsed_all").fetchall()
    if len(bad) > max(1, len(lines) // 2):
        raise first_error           # most of the file: a systematic fault, not a poison message
    log.warning("%s: isolated %d line(s) in %d trial loads: %s", load.path.name, len(bad), trials,
                ", ".join(f"{n} ({r})" for n, (r, _) in sorted(bad.items())))
    return bad


def _exclude(con: Any, load: _Load, bad: dict[int, tuple[str, str]]) -> None:
    """Move the isolated lines from parsed_items to the rejected lines, with their reasons and
    their bodies as the file holds them (parsed rows carry no body)."""
    bodies = _bodies_of(load.path, set(bad))
    for number, (reason, detail) in sorted(bad.items()):
        message_id = con.execute("SELECT any_value(message_id) FROM parsed_items WHERE line_number = $n",
                                 {"n": number}).fetchall()[0][0]
        body = bodies.get(number)
        con.execute("INSERT INTO rejected_lines VALUES ($n, $m, $r, $d, $b)",
                    {"n": number, "m": message_id, "r": reason, "d": detail,
                     "b": None if body is None else _db_text(body)}).fetchall()
        con.execute("DELETE FROM parsed_items WHERE line_number = $n", {"n": number}).fetchall()
        load.dead_letters.append({"MessageId": message_id, "line_number": number, "reason": reason,
                                  "detail": detail, "Body": body})


def _bodies_of(path: Path, numbers: set[int]) -> dict[int, str]:
    """The Body of each of these lines of a batch file (their lines parsed before, so each has one)."""
    bodies = {}
    for number, line in wire.iter_batch_lines(str(path)):
        if number in numbers:
            bodies[number] = wire.parse_envelope(line).body
    return bodies


def create_parse_tables(con: Any) -> None:
    """Empty temp tables parsed_items and rejected_lines, typed by the Arrow schemas."""
    _create_temp_table(con, "parsed_items", PARSED_SCHEMA)
    _create_temp_table(con, "rejected_lines", REJECTED_SCHEMA)


def _create_temp_table(con: Any, name: str, schema: pa.Schema) -> None:
    con.register("_empty", schema.empty_table())
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _empty").fetchall()
    finally:
        con.unregister("_empty")


#: Parsed rows appended per transaction. Committed insert by insert, a 100k-event file's 14
#: appends paused for most of a second every few of them (2.2 s against 0.56 s in one
#: transaction); but a transaction holds its rows uncompressed, so the 1M-event file's two
#: million rows in one peaked at 2.2 GB. Measured on that file (parse alone, 1GB DuckDB limit,
#: 16 MiB chunks): a commit every 110k rows 16.6 s / 0.84 GB peak, 225k 9.8 s / 1.31 GB, 450k
#: 8.4 s / 1.40-1.50 GB, never 8.7 s / 2.22 GB; with 8 MiB chunks, 300k: 9.2 s / 1.34 GB.
PARSE_COMMIT_ROWS = 300_000


def append_parsed(con: Any, chunks: Iterable[tuple[pa.Table, pa.Table]]) -> None:
    """Append Arrow chunks to the temp tables (DuckDB spills them to disk if needed, so a file of
    any size streams through in bounded memory), PARSE_COMMIT_ROWS to a transaction; an error
    rolls back the open one (the caller fails the file)."""
    held = 0
    con.execute("BEGIN TRANSACTION").fetchall()
    try:
        for parsed, rejected in chunks:
            con.register("_chunk", parsed)
            con.register("_rejected_chunk", rejected)
            con.execute("INSERT INTO parsed_items BY NAME SELECT * FROM _chunk").fetchall()
            con.execute("INSERT INTO rejected_lines BY NAME SELECT * FROM _rejected_chunk").fetchall()
            con.unregister("_chunk")
            con.unregister("_rejected_chunk")
            held += parsed.num_rows
            if held >= PARSE_COMMIT_ROWS:
                con.execute("COMMIT").fetchall()
                con.execute("BEGIN TRANSACTION").fetchall()
                held = 0
    except BaseException:
        con.execute("ROLLBACK").fetchall()
        raise
    con.execute("COMMIT").fetchall()


#: Files of at least this size (about 40k messages) are parsed on every core (worker processes);
#: judged by the size, so deciding costs no extra read of the file.
PARALLEL_MIN_BYTES = 80 * 2**20


def parse_with_python(con: Any, cfg: Config, path: Path, dead_letters: list[dict[str, Any]],
                      only: set[int] | None = None, workers: int | None = None) -> None:
    """The contract parser (nelo_etl.wire) over the file's lines, or over the ``only`` line numbers.
    A large file is parsed in chunks on every core; the chunks come back in file order, so the
    result is the same as a serial parse (tests hold them equal)."""
    lines = wire.iter_batch_lines(str(path))
    if only is not None:
        lines = ((n, line) for n, line in lines if n in only)
    workers = workers if workers is not None else usable_cpus()
    if workers > 1 and only is None and path.stat().st_size >= PARALLEL_MIN_BYTES:
        append_parsed(con, _parse_in_parallel(lines, cfg.experiment_pattern, dead_letters, workers))
    else:
        append_parsed(con, parse_lines(lines, cfg.experiment_pattern, dead_letters))


def _parse_chunk(args: tuple[list[tuple[int, str]], str]) -> tuple[list[tuple[pa.Table, pa.Table]], list[dict]]:
    """Worker side: one chunk of lines to Arrow tables and dead-letter records."""
    chunk, pattern = args
    dead: list[dict[str, Any]] = []
    return list(parse_lines(chunk, pattern, dead)), dead


def _parse_in_parallel(lines: Iterable[tuple[int, str]], pattern: str, dead_letters: list[dict[str, Any]],
                       workers: int) -> Iterator[tuple[pa.Table, pa.Table]]:
    import itertools
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    def chunks() -> Iterator[tuple[list[tuple[int, str]], str]]:
        it = iter(lines)
        while batch := list(itertools.islice(it, CHUNK_LINES)):
            yield batch, pattern

    # spawn, not fork: this process holds a DuckDB connection and threads
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: list = []
        source = chunks()
        for job in itertools.islice(source, workers * 2):      # a bounded window keeps memory flat
            pending.append(pool.submit(_parse_chunk, job))
        while pending:
            tables, dead = pending.pop(0).result()
            nxt = next(source, None)
            if nxt is not None:
                pending.append(pool.submit(_parse_chunk, nxt))
            dead_letters.extend(dead)
            yield from tables


#: Bytes of the file the compiled parser takes at a time (cut at a line end): one chunk per core
#: and one more in flight bound its memory (8 MiB: 0.1 GB less at the 1M-event file's peak than
#: 16 MiB, at the same speed), and a chunk's Arrow columns stay far below 32-bit offsets.
NATIVE_CHUNK_BYTES = 8 * 2**20


def native_parser() -> Any:
    """The compiled module (nelo_etl/_wirefast.c, built by `make install`), or None when it is
    not built or was built from another version of its source (a `git pull` without `make`:
    its rows could differ from what this code expects, say money in another width)."""
    try:
        from . import _wirefast
    except ImportError:
        return None
    source = Path(__file__).with_name("_wirefast.c")
    if source.exists() and getattr(_wirefast, "SOURCE_SHA", "") != hashlib.sha256(source.read_bytes()).hexdigest():
        log.warning("the compiled parser was built from another version of nelo_etl/_wirefast.c; "
                    "run `make install` to rebuild it")
        return None
    return _wirefast


def parse_with_native(con: Any, cfg: Config, path: Path, dead_letters: list[dict[str, Any]],
                      chunk_bytes: int | None = None) -> int:
    """The compiled single pass (nelo_etl/_wirefast.c) over the file, a chunk per core at a time;
    the lines it declines go to the contract parser (so reason codes have one source). Returns how
    many lines the contract parser took. Rows come in file order, chunk by chunk."""
    declined = [0]
    append_parsed(con, _native_chunks(cfg, path, dead_letters, chunk_bytes or NATIVE_CHUNK_BYTES, declined))
    return declined[0]


def _native_chunks(cfg: Config, path: Path, dead_letters: list[dict[str, Any]], chunk_bytes: int,
                   declined: list[int]) -> Iterator[tuple[pa.Table, pa.Table]]:
    from concurrent.futures import ThreadPoolExecutor

    native = native_parser()
    if native is None:
        raise RuntimeError("the compiled parser nelo_etl._wirefast is not built: run `make install`")
    pattern = cfg.experiment_pattern
    workers = min(usable_cpus(), 8)

    def parse(job: tuple[memoryview, int]) -> tuple[memoryview, int, tuple]:
        data, first = job
        return data, first, native.parse(data, first, pattern)

    with open(path, "rb") as fh, ThreadPoolExecutor(workers) as pool:
        pending: list = []
        chunks = _byte_chunks(fh, chunk_bytes)
        for job in itertools.islice(chunks, workers + 1):      # a bounded window keeps memory flat
            pending.append(pool.submit(parse, job))
        while pending:
            data, first, (rows, columns, left) = pending.pop(0).result()
            nxt = next(chunks, None)
            if nxt is not None:
                pending.append(pool.submit(parse, nxt))
            yield _native_table(rows, columns), REJECTED_SCHEMA.empty_table()
            lines = []
            for number, start, end in left:
                text = bytes(data[start:end]).decode("utf-8", "surrogateescape")
                if text.strip():                     # as wire.iter_batch_lines skips blank lines
                    lines.append((number, text))
            declined[0] += len(lines)
            if lines:
                yield from parse_lines(lines, pattern, dead_letters)


def _byte_chunks(fh: Any, size: int) -> Iterator[tuple[memoryview, int]]:
    """(bytes, number of its first line): the file in pieces of about ``size``, cut after a newline.
    Each piece is read into its own buffer (the parser may still hold the one before), after the
    unfinished line the previous read left over; nothing else is copied."""
    line = 1
    rest = b""
    while True:
        buf = bytearray(len(rest) + size)
        buf[:len(rest)] = rest
        got = fh.readinto(memoryview(buf)[len(rest):])
        end = len(rest) + got
        if not got:
            if rest:
                yield memoryview(bytes(rest)), line
            return
        cut = buf.rfind(b"\n", 0, end)
        if cut < 0:                      # one line longer than a piece: read on
            rest = bytes(buf[:end])
            continue
        rest = bytes(buf[cut + 1:end])
        yield memoryview(buf)[:cut + 1], line
        line += buf.count(b"\n", 0, cut + 1)


def _native_table(rows: int, columns: dict[str, tuple]) -> pa.Table:
    """The compiled parser's buffers as an Arrow table of PARSED_SCHEMA (no copy of the data)."""
    def buf(b: bytes | None) -> pa.Buffer | None:
        return None if b is None else pa.py_buffer(b)

    def strings(n: int, valid: bytes | None, offsets: bytes, data: bytes) -> pa.Array:
        return pa.Array.from_buffers(pa.string(), n, [buf(valid), buf(offsets), buf(data)])

    arrays = []
    for f in PARSED_SCHEMA:
        c = columns[f.name]
        t = f.type
        if pa.types.is_string(t):
            arrays.append(strings(rows, *c))
        elif pa.types.is_boolean(t):
            arrays.append(pa.Array.from_buffers(pa.int8(), rows, [buf(c[0]), buf(c[1])]).cast(pa.bool_()))
        elif pa.types.is_map(t):
            valid, offsets, key_off, key_data, val_valid, val_off, val_data = c
            n = (len(key_off) - 4) // 4
            entries = pa.StructArray.from_arrays(
                [strings(n, None, key_off, key_data), strings(n, val_valid, val_off, val_data)],
                fields=[t.key_field, t.item_field])
            arrays.append(pa.Array.from_buffers(t, rows, [buf(valid), buf(offsets)], children=[entries]))
        elif pa.types.is_list(t) and pa.types.is_struct(t.value_type):
            valid, offsets, *parts = c
            n = (len(parts[0]) - 4) // 4
            children = [strings(n, None, parts[i], parts[i + 1]) for i in range(0, 6, 2)]
            struct = pa.StructArray.from_arrays(children, fields=list(t.value_type))
            arrays.append(pa.Array.from_buffers(t, rows, [buf(valid), buf(offsets)], children=[struct]))
        elif pa.types.is_list(t):
            valid, offsets, child_off, child_data = c
            child = strings((len(child_off) - 4) // 4, None, child_off, child_data)
            arrays.append(pa.Array.from_buffers(t, rows, [buf(valid), buf(offsets)], children=[child]))
        else:
            arrays.append(pa.Array.from_buffers(NATIVE_SCHEMA.field(f.name).type, rows, [buf(c[0]), buf(c[1])]))
    return pa.Table.from_arrays(arrays, schema=NATIVE_SCHEMA)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def record_failure(cfg: Config, path: Path, error: str, reprocess: bool) -> None:
    """Note a failed load in the ledger, in a transaction of its own (best effort)."""
    try:
        con = connect(cfg.database_path, min(5.0, cfg.db_lock_timeout_seconds))
        try:
            ensure_schema(con)
            now = utc_now()
            con.execute(
                "INSERT INTO etl_batches (load_id, batch_id, file_name, sha256, received, loaded_events, "
                "duplicate_events, dead_lettered, started_ts, finished_ts, status, is_reprocess, error) "
                "VALUES (nextval('etl_load_id_seq'), $batch_id, $file, $sha, 0, 0, 0, 0, $now, $now, 'failed', "
                "$reprocess, $error)",
                {"batch_id": path.name.removesuffix(".jsonl"), "file": path.name, "now": now,
                 "sha": sha256_of(path) if path.is_file() and not path.is_symlink() else "",
                 "reprocess": reprocess, "error": error[:1000]}).fetchall()
        finally:
            con.close()
    except Exception:  # noqa: BLE001 - the failure itself is what the operator must see
        log.exception("could not record the failure of %s in the ledger", path.name)


class _Clock:
    """Lap times into a dict: ``lap(name)`` records the seconds since the previous lap."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into, self.last = into, time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.into[name] = now - self.last
        self.last = now


# --------------------------------------------------------------------------------------------
# many files

#: Names in staging/ that are never batch files: hidden files and files being written.
def _ignored_name(name: str) -> bool:
    return name.startswith(".") or name.endswith((".tmp", ".part"))


def staging_files(cfg: Config) -> list[Path]:
    """Batch files waiting in staging/, oldest first (names start with their UTC time). Entries
    that are not regular files are listed too, so that each is reported (and left alone)."""
    return sorted(p for p in Path(cfg.staging_dir).glob("*.jsonl") if not _ignored_name(p.name))


class StagingBusy(Exception):
    """Another process is loading staging files (exit 75: the next run catches up)."""


STAGING_LOCK = "process_staging.lock"


def staging_lock(cfg: Config) -> Any:
    """The loader's own lock (``work/process_staging.lock``): two loaders at once would race for
    the same staging files. Released by the OS even on kill -9."""
    lock = try_lock(Path(cfg.work_dir), STAGING_LOCK)
    if lock is None:
        raise StagingBusy(f"another process is loading staging files "
                          f"(it holds {Path(cfg.work_dir) / STAGING_LOCK})")
    return lock


def process_files(cfg: Config, paths: Sequence[Path], reprocess: bool = False,
                  move: bool = True, refresh_gold: bool = True, lock: bool = True) -> RunResult:
    """Load each file; one failing file does not stop the others (results never depend on order).
    Raises StagingBusy when another loader runs (``lock=False``: the caller holds the staging
    lock already, taken before anything else touches the warehouse)."""
    if not lock:
        return _process_files(cfg, paths, reprocess, move, refresh_gold)
    lock = staging_lock(cfg)
    try:
        return _process_files(cfg, paths, reprocess, move, refresh_gold)
    finally:
        lock.release()


def _process_files(cfg: Config, paths: Sequence[Path], reprocess: bool, move: bool,
                   refresh_gold: bool) -> RunResult:
    run = RunResult()
    pending = list(paths)
    vacuum = vacuum_due(cfg, "warehouse")
    while pending:
        warehouse.check_present(cfg)    # lost since files were loaded: stop, never start an empty one
        group, pending = _next_group(pending)
        for path, result in _load_paths(cfg, group, reprocess, vacuum):
            if result.status in ("committed", "skipped") and move and path.parent == Path(cfg.staging_dir):
                move_to(path, Path(cfg.processed_dir))
            log.info("%s", result.line())
            run.files.append(result)
    if vacuum and any(f.status == "committed" for f in run.files):
        mark_vacuumed(cfg, "warehouse")     # its connections are closed: checkpointed, compacted
    if refresh_gold and (any(f.status == "committed" for f in run.files) or publication_pending(cfg)):
        warehouse.check_present(cfg)    # publishing would create an empty one
        run.gold, run.lake = refresh_gold_layer(cfg, export_lake=True)
    return run


def _next_group(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """The next files to load together (bounded by count and bytes), and the rest."""
    size = 0
    for n, path in enumerate(paths):
        try:
            size += path.lstat().st_size
        except OSError:
            pass
        if n + 1 >= GROUP_MAX_FILES or size >= GROUP_MAX_BYTES:
            return paths[:n + 1], paths[n + 1:]
    return paths, []


def _load_paths(cfg: Config, paths: list[Path], reprocess: bool, vacuum: bool = True) -> list[tuple[Path, FileResult]]:
    """Load ``paths`` on one connection: every file that is ready in one transaction, or, when
    that fails (or only one is ready), each in its own. One result per path, in order.
    ``vacuum``: whether the commits' checkpoints compact deleted rows (db.vacuum_due)."""
    results: dict[Path, FileResult] = {}
    failures: list[tuple[Path, str]] = []          # ledger rows to write once the connection is closed

    def failed(path: Path, exc: BaseException) -> None:
        if isinstance(exc, warehouse.WarehouseMissing):
            raise exc                   # the run stops: nothing may write a new, empty warehouse
        result, record = _result_of_error(path, exc)
        results[path] = result
        if record:
            failures.append((path, result.error or ""))

    try:
        con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, memory_limit=cfg.duckdb_memory_limit,
                      vacuum=vacuum)
    except Exception as exc:  # noqa: BLE001 - every file of the group reports it
        for path in paths:
            failed(path, exc)
    else:
        try:
            ensure_schema(con)
            loads: list[_Load] = []
            for tag, path in enumerate(paths):
                try:
                    prepared = _prepare(con, cfg, path, reprocess, None, tag)
                except Exception as exc:  # noqa: BLE001 - this file's alone
                    failed(path, exc)
                    continue
                if isinstance(prepared, FileResult):
                    results[path] = prepared
                else:
                    loads.append(prepared)
            if len(loads) > 1 and _load_group(con, loads):
                results.update((load.path, load.result) for load in loads)
                loads = []
            for load in loads:
                try:
                    _load_alone(con, load)
                    results[load.path] = load.result
                except Exception as exc:  # noqa: BLE001 - this file's alone
                    failed(load.path, exc)
        except Exception as exc:  # noqa: BLE001 - e.g. the schema cannot be created
            for path in paths:
                if path not in results:
                    failed(path, exc)
        finally:
            con.close()
    for path, error in failures:
        record_failure(cfg, path, error, reprocess)
    return [(path, results[path]) for path in paths]


def _result_of_error(path: Path, exc: BaseException) -> tuple[FileResult, bool]:
    """The file's result for an exception, and whether a failed ledger row should record it."""
    if isinstance(exc, (FileWaiting, NotRegularFile)):
        status = "waiting" if isinstance(exc, FileWaiting) else "ignored"
        return FileResult(path.name, status, error=str(exc).split(": ", 1)[-1]), False
    if isinstance(exc, DatabaseBusy):
        return FileResult(path.name, "failed", error=str(exc)), False
    if isinstance(exc, (sql.CheckFailed, ContentChanged)):
        return FileResult(path.name, "failed", error=str(exc)), True
    if isinstance(exc, FileNotFoundError):
        # gone between listing and loading (moved by someone else): nothing to load here
        return FileResult(path.name, "failed", error=f"the file disappeared: {first_line(exc)}"), False
    log.error("loading %s failed", path.name, exc_info=exc)
    return FileResult(path.name, "failed", error=f"{type(exc).__name__}: {first_line(exc)}"), True


def publication_pending(cfg: Config) -> bool:
    """Whether committed loads are not published yet: a run killed between its COMMIT and the
    publication leaves journal rows past the published generation's mark (or no analytics file
    at all), and the next run must publish them even when it commits nothing itself."""
    if not Path(cfg.database_path).exists():
        return False
    try:
        con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, memory_limit=cfg.duckdb_memory_limit)
    except Exception:  # noqa: BLE001 - busy or unreadable: the next run looks again
        return False
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}
        if "fct_events" not in tables:
            return False                # nothing loaded yet: nothing to publish
        # the journal keeps what the spare generation still lacks: only rows past the mark of
        # the generation analysts have now are unpublished
        mark = gold.published_mark(cfg, con)
        if mark is None:
            return True
        return bool(con.execute("SELECT count(*) FROM publish_journal WHERE journal_id > $m",
                                {"m": mark}).fetchall()[0][0])
    finally:
        con.close()


def _gold_refresh(cfg: Config, con: Any) -> Any:
    """gold.refresh, or its error as one line (the batches are committed: it is reported)."""
    try:
        return gold.refresh(cfg, con)
    except Exception as exc:  # noqa: BLE001
        log.exception("gold refresh failed")
        return f"gold refresh failed: {type(exc).__name__}: {first_line(exc)}"


def _out_of_memory(result: Any) -> bool:
    """Whether a publication's or export's result is the line of a DuckDB out-of-memory error."""
    return isinstance(result, str) and "OutOfMemory" in result


def refresh_gold_layer(cfg: Config, export_lake: bool = False) -> Any:
    """Gold views and the analysts' file after committed loads. A failure here loses no data (the
    batches are committed): it is reported, and the next run publishes again.

    ``export_lake``: the lakehouse too (staged events + Silver as Parquet), at the same time, on
    a thread reading through a cursor of the same connection (lakehouse.ExportThread); returns
    (gold result, lake result) then. A failure of either loses nothing and leaves the other be:
    the next committed run's export rewrites whatever still differs."""
    lake = None
    try:
        con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, memory_limit=cfg.duckdb_memory_limit)
    except Exception as exc:  # noqa: BLE001
        log.exception("gold refresh failed")
        failed = f"gold refresh failed: {type(exc).__name__}: {first_line(exc)}"
        return (failed, lakehouse.export_after_run(cfg)) if export_lake else failed
    started = time.monotonic()
    lake_result: Any = None
    try:
        if export_lake and cfg.lakehouse_path:
            try:
                lake = lakehouse.ExportThread(cfg, con)
                lake.start()
            except Exception as exc:  # noqa: BLE001 - then it runs after the publication, as it did
                log.warning("lake export cannot run beside the publication (%s); it runs after it", first_line(exc))
                lake = None
        gold_result: Any = _gold_refresh(cfg, con)
        if lake:
            lake_result = lake.join()
            # both share one duckdb_memory_limit: whichever ran out of memory beside the other runs
            # once more on its own, now the other is done (the publication's seen on the first run
            # after a 5M-event backfill: its team files, while the export wrote the whole lake; it
            # publishes the other generation, so the first attempt's is not reused)
            if _out_of_memory(lake_result):
                log.warning("lake export ran out of memory beside the publication; exporting again after it")
                lake_result = lakehouse.export_after_run(cfg, con)
            if _out_of_memory(gold_result):
                log.warning("publication ran out of memory beside the lake export; publishing again after it")
                gold_result = _gold_refresh(cfg, con)
        elif export_lake:
            lake_result = lakehouse.export_after_run(cfg, con)
        if lake and isinstance(gold_result, dict):     # the two overlap: what the run waited for both
            gold_result["gold_and_lake_s"] = time.monotonic() - started
    except BaseException:
        if lake:                        # stopping (SIGTERM, ^C): the export stops too, before the connection closes
            lake.stop_and_wait()
        try:
            con.close()
        except Exception:  # noqa: BLE001 - the stop is what the caller must see
            log.exception("closing the warehouse while stopping")
        raise
    try:
        con.close()
    except Exception as exc:  # noqa: BLE001 - reported like a failed publication; the batches are committed
        log.exception("closing the warehouse after the publication failed")
        if not isinstance(gold_result, str):
            gold_result = f"gold refresh failed: closing the warehouse: {type(exc).__name__}: {first_line(exc)}"
    return (gold_result, lake_result) if export_lake else gold_result
