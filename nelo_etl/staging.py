"""process_staging.py's work: each staging file into DuckDB, atomically, then to processed/.

For one file, in one transaction: the parsed batch is staged (``sql/staging/stg_events.sql``,
deduplicated by ``event_id`` over all history), rejected lines go to ``dead_letter_messages`` (and,
before the commit, to ``dead_letter/<file>``), the Silver transforms run, the data checks run, and a
row goes into the ``etl_batches`` ledger. Only after the commit does the file move to
``processed/``; a crash anywhere before leaves it in ``staging/`` and the database as it was.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import pyarrow as pa

from . import gold, lakehouse, silver, sql, wire
from .config import Config
from .db import DatabaseBusy, connect, ensure_schema, transaction
from .ingest import crash_point, fsync_dir

log = logging.getLogger("nelo_etl.staging")

CHUNK_LINES = 10_000     # lines parsed into one Arrow chunk: bounds the parser's memory
STG_EVENTS = sql.Target("stg_events", "append")
DEAD_LETTERS = sql.Target("dead_letter_messages", "merge", ("source_sha256", "line_number"))

_ARM = pa.struct([("code", pa.string()), ("experiment_id", pa.string()), ("variant", pa.string())])
PARSED_SCHEMA = pa.schema([
    ("line_number", pa.int32()), ("message_id", pa.string()), ("sent_timestamp_ms", pa.int64()),
    ("receive_count", pa.int32()), ("event_id", pa.string()), ("event_timestamp_us", pa.int64()),
    ("user_id", pa.string()), ("event_name", pa.string()), ("platform", pa.string()),
    ("replay_timestamp", pa.string()), ("item_count", pa.int32()), ("item_index", pa.int32()),
    *[(k, pa.string()) for k in wire.TEXT_KEYS],
    *[(k, pa.float64()) for k in sorted(wire.NUMBER_KEYS)],
    ("quantity", pa.int64()), ("is_in_stock", pa.bool_()),
    ("discount_codes", pa.list_(pa.string())), ("campaign_codes", pa.list_(pa.string())),
    ("experiment_arms", pa.list_(_ARM)), ("discount_value", pa.float64()), ("total_price", pa.float64()),
    ("installments", pa.int64()), ("installment_price", pa.float64()),
    ("item_params_extra", pa.map_(pa.string(), pa.string())), ("extra_fields", pa.string()),
    ("raw_body", pa.string()),
])
REJECTED_SCHEMA = pa.schema([
    ("line_number", pa.int32()), ("message_id", pa.string()), ("reason", pa.string()),
    ("detail", pa.string()), ("raw_body", pa.string()),
])


@dataclass
class FileResult:
    file_name: str
    status: str                     # committed | skipped | failed
    received: int = 0
    loaded_events: int = 0
    duplicate_events: int = 0
    dead_lettered: int = 0
    seconds: float = 0.0
    error: str | None = None
    python_parsed_lines: int = 0     # lines the DuckDB parser left to the contract parser (-1: all)
    timings: dict[str, float] = field(default_factory=dict)   # seconds per stage (parse, stage, silver...)

    def line(self) -> str:
        if self.status == "skipped":
            return f"{self.file_name}: skipped (already loaded; --reprocess to load again)"
        if self.status == "failed":
            return f"{self.file_name}: FAILED: {self.error}"
        return (f"{self.file_name}: received={self.received} loaded={self.loaded_events} "
                f"duplicates={self.duplicate_events} dead_lettered={self.dead_lettered} "
                f"seconds={self.seconds:.2f}")


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
        return f"gold: views {self.gold['gold_views_s']:.2f} s, analytics file published in {self.gold['publish_s']:.2f} s"


# --------------------------------------------------------------------------------------------
# parsing: lines to Arrow

class _Columns:
    """Column lists for one chunk of parsed rows."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {name: [] for name in PARSED_SCHEMA.names}
        self.rejected: dict[str, list[Any]] = {name: [] for name in REJECTED_SCHEMA.names}

    def add_event(self, number: int, env: wire.Envelope, event: wire.ParsedEvent) -> None:
        c = self.cols
        extra = json.dumps(event.extra_fields, ensure_ascii=False) if event.extra_fields else None
        rows = event.items or [None]
        for i, item in enumerate(rows):
            c["line_number"].append(number)
            c["message_id"].append(env.message_id)
            c["sent_timestamp_ms"].append(env.sent_timestamp_ms)
            c["receive_count"].append(env.receive_count)
            c["event_id"].append(event.event_id)
            c["event_timestamp_us"].append(event.event_timestamp)
            c["user_id"].append(event.user_id)
            c["event_name"].append(event.event_name)
            c["platform"].append(event.platform)
            c["replay_timestamp"].append(event.replay_timestamp)
            c["item_count"].append(len(event.items))
            c["extra_fields"].append(extra)
            c["raw_body"].append(env.body if i == 0 else None)
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
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def parse_lines(lines: Iterable[tuple[int, str]], experiment_pattern: str,
                dead_letters: list[dict[str, Any]]) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Parse batch-file lines with the contract parser, in chunks of Arrow tables
    (parsed item rows, rejected lines). Rejections are also appended to ``dead_letters``."""
    cols = _Columns()
    count = 0
    for number, line in lines:
        message_id = None
        try:
            env = wire.parse_envelope(line)
            message_id = env.message_id
            event = wire.parse_body(env.body, experiment_pattern, env.sent_timestamp_ms)
        except wire.RejectedMessage as exc:
            raw = env.body if message_id is not None else line
            dead_letters.append({"MessageId": message_id, "line_number": number, "reason": exc.reason,
                                 "detail": exc.detail, "Body": raw})
            cols.add_rejected(number, message_id and _db_text(message_id), exc.reason, exc.detail, _db_text(raw))
        else:
            cols.add_event(number, env, event)
        count += 1
        if count % CHUNK_LINES == 0:
            yield cols.tables()
            cols = _Columns()
    yield cols.tables()


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


def move_to(path: Path, folder: Path) -> Path:
    """Move a batch file into ``folder`` (rename; both live on the same volume)."""
    dest = folder / path.name
    os.replace(path, dest)
    os.chmod(dest, 0o600)       # it holds user ids, whoever dropped it into staging/
    fsync_dir(folder)
    return dest


def load_file(cfg: Config, path: Path, reprocess: bool = False, parser: str | None = None) -> FileResult:
    """Load one batch file in one transaction. Raises on failure (the database is unchanged)."""
    t0 = time.monotonic()
    started = datetime.now(timezone.utc).replace(tzinfo=None)
    sha = sha256_of(path)
    batch_id = path.name.removesuffix(".jsonl")
    result = FileResult(path.name, "committed")
    con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, memory_limit=cfg.duckdb_memory_limit)
    try:
        ensure_schema(con)
        if not reprocess and already_loaded(con, sha):
            result.status = "skipped"
            return result
        dead_letters: list[dict[str, Any]] = []
        clock = _Clock(result.timings)
        # Parsing fills temp tables only, so it runs before the transaction: a DuckDB error while
        # parsing (say, invalid UTF-8) then leaves no aborted transaction behind, and the
        # contract parser can take over on the same connection.
        create_parse_tables(con)
        if (parser or cfg.parser) == "duckdb":
            result.python_parsed_lines = parse_with_duckdb(con, cfg, path, dead_letters)
        else:
            parse_with_python(con, cfg, path, dead_letters)
        clock.lap("parse")
        with transaction(con):
            load_id = con.execute("SELECT nextval('etl_load_id_seq')").fetchall()[0][0]
            crash_point("during_load")
            params = {"load_id": load_id, "batch_id": batch_id, "source_file": path.name, "source_sha256": sha}
            messages = con.execute("SELECT count(DISTINCT line_number) FROM parsed_items").fetchall()[0][0]
            sql.write(con, STG_EVENTS, sql.read_sql(sql.sql_path("staging", "stg_events")), params)
            sql.write(con, DEAD_LETTERS, sql.read_sql(sql.sql_path("staging", "dead_letter_messages")), params)
            result.loaded_events = con.execute(
                "SELECT count(DISTINCT event_id) FROM stg_events WHERE load_id = $l", {"l": load_id}).fetchall()[0][0]
            result.dead_lettered = len(dead_letters)
            result.duplicate_events = messages - result.loaded_events
            result.received = messages + result.dead_lettered
            clock.lap("stage")
            for model, seconds in silver.apply_batch(con, cfg, params).items():
                result.timings[f"silver.{model}"] = seconds
            clock.lap("silver")
            con.execute(
                "INSERT INTO etl_batches VALUES ($load_id, $batch_id, $file, $sha, $received, $loaded, $dupes, "
                "$dead, $started, now()::TIMESTAMP, 'committed', $reprocess, NULL)",
                {"load_id": load_id, "batch_id": batch_id, "file": path.name, "sha": sha,
                 "received": result.received, "loaded": result.loaded_events, "dupes": result.duplicate_events,
                 "dead": result.dead_lettered, "started": started, "reprocess": reprocess}).fetchall()
            sql.run_checks(con, silver.model_params(cfg, params))
            clock.lap("checks")
            write_dead_letter_file(Path(cfg.dead_letter_dir), path.name, dead_letters)
            crash_point("before_commit")
        clock.lap("commit")
        log.info("%s timings: %s", path.name, ", ".join(f"{k}={v:.3f}" for k, v in result.timings.items()))
        # DuckDB's COMMIT can roll back silently: make sure the ledger row is really there
        if not con.execute("SELECT count(*) FROM etl_batches WHERE load_id = $l", {"l": load_id}).fetchall()[0][0]:
            raise RuntimeError(f"commit of {path.name} did not persist")
    finally:
        con.close()
    result.seconds = time.monotonic() - t0
    return result


def create_parse_tables(con: Any) -> None:
    """Empty temp tables parsed_items and rejected_lines, typed by the Arrow schemas."""
    con.register("_empty_parsed", PARSED_SCHEMA.empty_table())
    con.register("_empty_rejected", REJECTED_SCHEMA.empty_table())
    con.execute("CREATE OR REPLACE TEMP TABLE parsed_items AS SELECT * FROM _empty_parsed").fetchall()
    con.execute("CREATE OR REPLACE TEMP TABLE rejected_lines AS SELECT * FROM _empty_rejected").fetchall()
    con.unregister("_empty_parsed")
    con.unregister("_empty_rejected")


def append_parsed(con: Any, chunks: Iterable[tuple[pa.Table, pa.Table]]) -> None:
    """Append Arrow chunks to the temp tables (DuckDB spills them to disk if needed, so a file of
    any size streams through in bounded memory)."""
    for parsed, rejected in chunks:
        con.register("_chunk", parsed)
        con.register("_rejected_chunk", rejected)
        con.execute("INSERT INTO parsed_items BY NAME SELECT * FROM _chunk").fetchall()
        con.execute("INSERT INTO rejected_lines BY NAME SELECT * FROM _rejected_chunk").fetchall()
        con.unregister("_chunk")
        con.unregister("_rejected_chunk")


def count_lines(path: Path) -> int:
    """Lines as Python iterates them (the last one may lack its newline)."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


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
    workers = workers if workers is not None else (os.cpu_count() or 1)
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


def parse_with_duckdb(con: Any, cfg: Config, path: Path, dead_letters: list[dict[str, Any]]) -> int:
    """DuckDB parses what it can be sure of (sql/staging/parsed_lines.sql, parsed_line_items.sql);
    the contract parser takes the remaining lines. Returns how many lines took the Python path
    (-1: all of them, because DuckDB could not read the file or ran out of memory).

    Runs outside any transaction (temp tables only), so after a DuckDB error the connection is
    still usable and the contract parser, which streams in bounded memory, parses the whole file."""
    import duckdb

    try:
        fallback = _duckdb_parse(con, cfg, path)
    except duckdb.Error as exc:     # e.g. invalid UTF-8, or a file too big for the memory limit
        log.info("DuckDB could not parse %s (%s); using the Python parser", path.name, str(exc).splitlines()[0])
        for table in ("parsed_lines", "parsed_line_items"):
            con.execute(f"DROP TABLE IF EXISTS {table}").fetchall()
        create_parse_tables(con)
        parse_with_python(con, cfg, path, dead_letters)
        return -1
    if fallback is None:
        # line numbering differs from Python's (odd line endings): trust the contract parser alone
        parse_with_python(con, cfg, path, dead_letters)
        return -1
    if fallback:
        parse_with_python(con, cfg, path, dead_letters, only=fallback)
    return len(fallback)


def _duckdb_parse(con: Any, cfg: Config, path: Path) -> set[int] | None:
    """The SQL part of parse_with_duckdb: the accepted lines into parsed_items; returns the line
    numbers left to the contract parser (None: all of them)."""
    params = {"source_path": str(path), "experiment_pattern": cfg.experiment_pattern,
              "min_ts_us": wire.MIN_EVENT_TS_US, "max_ts_us": wire.MAX_EVENT_TS_US,
              "max_skew_us": wire.MAX_FUTURE_SKEW_US}
    # row order means nothing here (rows carry line numbers); not keeping it saves memory
    con.execute("SET preserve_insertion_order = false").fetchall()
    try:
        lines_sql = sql.read_sql(sql.sql_path("staging", "parsed_lines"))
        con.execute(f"CREATE OR REPLACE TEMP TABLE parsed_lines AS {lines_sql}",
                    sql.params_for(lines_sql, params)).fetchall()
        counted = con.execute("SELECT count(*), max(line_number) FROM parsed_lines").fetchall()[0]
        if counted[0] and counted[1] > count_lines(path):
            con.execute("DROP TABLE parsed_lines").fetchall()
            return None
        sql.run_script(con, sql.sql_path("staging", "macros"))
        items_sql = sql.read_sql(sql.sql_path("staging", "parsed_line_items"))
        con.execute(f"CREATE OR REPLACE TEMP TABLE parsed_line_items AS {items_sql}",
                    sql.params_for(items_sql, params)).fetchall()
        # a line is accepted when DuckDB vouches for the event and for every one of its items
        con.execute("ALTER TABLE parsed_lines ADD COLUMN accepted BOOLEAN").fetchall()
        con.execute("UPDATE parsed_lines SET accepted = event_ok AND line_number NOT IN "
                    "(SELECT line_number FROM parsed_line_items WHERE NOT item_ok)").fetchall()
        rows_sql = sql.read_sql(sql.sql_path("staging", "parsed_items"))
        con.execute(f"INSERT INTO parsed_items BY NAME {rows_sql}").fetchall()
        fallback = {n for (n,) in con.execute("SELECT line_number FROM parsed_lines WHERE NOT accepted").fetchall()}
        con.execute("DROP TABLE parsed_lines").fetchall()
        con.execute("DROP TABLE parsed_line_items").fetchall()
        return fallback
    finally:
        con.execute("RESET preserve_insertion_order").fetchall()


def record_failure(cfg: Config, path: Path, error: str, reprocess: bool) -> None:
    """Note a failed load in the ledger, in a transaction of its own (best effort)."""
    try:
        con = connect(cfg.database_path, min(5.0, cfg.db_lock_timeout_seconds))
        try:
            ensure_schema(con)
            con.execute(
                "INSERT INTO etl_batches VALUES (nextval('etl_load_id_seq'), $batch_id, $file, $sha, 0, 0, 0, 0, "
                "now()::TIMESTAMP, now()::TIMESTAMP, 'failed', $reprocess, $error)",
                {"batch_id": path.name.removesuffix(".jsonl"), "file": path.name,
                 "sha": sha256_of(path) if path.exists() else "", "reprocess": reprocess,
                 "error": error[:1000]}).fetchall()
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

def staging_files(cfg: Config) -> list[Path]:
    """Batch files waiting in staging/, oldest first (names start with their UTC time)."""
    return sorted(p for p in Path(cfg.staging_dir).glob("*.jsonl") if not p.name.startswith("."))


def process_files(cfg: Config, paths: Sequence[Path], reprocess: bool = False,
                  move: bool = True, refresh_gold: bool = True) -> RunResult:
    """Load each file; one failing file does not stop the others (results never depend on order)."""
    run = RunResult()
    for path in paths:
        try:
            result = load_file(cfg, path, reprocess)
        except DatabaseBusy as exc:
            result = FileResult(path.name, "failed", error=str(exc))
        except sql.CheckFailed as exc:
            result = FileResult(path.name, "failed", error=str(exc))
            record_failure(cfg, path, str(exc), reprocess)
        except Exception as exc:  # noqa: BLE001 - reported per file; the next file still runs
            log.exception("loading %s failed", path.name)
            result = FileResult(path.name, "failed", error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            record_failure(cfg, path, result.error or "", reprocess)
        if result.status != "failed" and move and path.parent == Path(cfg.staging_dir):
            move_to(path, Path(cfg.processed_dir))
        log.info("%s", result.line())
        run.files.append(result)
    if refresh_gold and any(f.status == "committed" for f in run.files):
        run.gold = refresh_gold_layer(cfg)
        # the lakehouse (staged events + Silver as Parquet); a failure loses nothing: the next
        # committed run's export rewrites whatever still differs
        run.lake = lakehouse.export_after_run(cfg)
    return run


def refresh_gold_layer(cfg: Config) -> dict[str, float] | str:
    """Gold views and the analysts' file after committed loads. A failure here loses no data (the
    batches are committed): it is reported, and the next run publishes again."""
    try:
        con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, memory_limit=cfg.duckdb_memory_limit)
        try:
            return gold.refresh(cfg, con)
        finally:
            con.close()
    except Exception as exc:  # noqa: BLE001
        log.exception("gold refresh failed")
        return f"gold refresh failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"


def process_staging_dir(cfg: Config) -> RunResult:
    """What etl.py runs after ingesting: every staging file, oldest first; prints one line each."""
    run = process_files(cfg, staging_files(cfg))
    for f in run.files:
        print(f.line())
    if run.gold_line():
        print(run.gold_line())
    if run.lake is not None:
        print(run.lake if isinstance(run.lake, str) else run.lake.line())
    return run
