"""``process_staging.py --replay-dead-letters``: after a parser fix, load the dead letters that
the current parser now accepts.

1. The open dead letters (``dead_letter_messages.resolved_ts`` null), optionally only those whose
   reason starts with ``--reason``.
2. Each one's original line is read from the immutable copy of its batch file (``archive/``, else
   ``processed/``; the file's SHA-256 must match the one the dead letter names), and parsed again
   with the current contract parser.
3. The lines that parse now are written, byte for byte, into a new batch file
   ``processing_batch_<UTC>_replay-<id>.jsonl`` (archived like any batch), which is loaded like
   any batch in ONE transaction that also marks those dead letters resolved.

Idempotent: resolved dead letters are not replayed again, and the warehouse deduplicates events
by ``event_id``, so a replay of events already loaded adds none. A replay that fails rolls back:
nothing is marked, and the next replay tries again.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from . import sql, wire
from .config import Config
from .db import connect, ensure_schema
from .ingest import durable_copy, encode_text, fsync_dir
from .staging import sha256_of

log = logging.getLogger("nelo_etl.replay")


@dataclass
class ReplayResult:
    candidates: int = 0          # unresolved dead letters matching the reason prefix
    now_valid: int = 0           # of those, lines the current parser accepts (loaded and resolved)
    still_invalid: dict[str, int] = field(default_factory=dict)   # reason now -> count
    missing_source: int = 0      # batch file not found (or changed) in archive/ and processed/
    batch_file: str | None = None
    loaded_events: int = 0
    duplicate_events: int = 0

    def line(self) -> str:
        still = sum(self.still_invalid.values())
        return (f"replay: candidates={self.candidates} now_valid={self.now_valid} loaded={self.loaded_events} "
                f"duplicates={self.duplicate_events} still_invalid={still} missing_source={self.missing_source} "
                f"batch={self.batch_file or '-'}")


def candidates(cfg: Config, reason_prefix: str | None) -> list[tuple[str, str, int, str]]:
    """(source_file, source_sha256, line_number, reason) of the unresolved dead letters."""
    con = connect(cfg.database_path, cfg.db_lock_timeout_seconds)
    try:
        ensure_schema(con)
        return con.execute(
            "SELECT d.source_file, d.source_sha256, d.line_number, d.reason FROM dead_letter_messages d "
            "WHERE d.resolved_ts IS NULL AND ($prefix IS NULL OR starts_with(d.reason, $prefix)) "
            "ORDER BY d.source_file, d.line_number", {"prefix": reason_prefix}).fetchall()
    finally:
        con.close()


def _source(cfg: Config, name: str, sha: str) -> Path | None:
    for folder in (cfg.archive_dir, cfg.processed_dir):
        path = Path(folder) / name
        if path.is_file() and sha256_of(path) == sha:
            return path
    return None


def replay_dead_letters(cfg: Config, reason_prefix: str | None = None) -> ReplayResult:
    """Re-parse the matching dead letters; load and resolve those now valid (one transaction)."""
    from .staging import load_file, move_to

    result = ReplayResult()
    rows = candidates(cfg, reason_prefix)
    result.candidates = len(rows)
    by_file: dict[tuple[str, str], dict[int, str]] = {}
    for name, sha, number, reason in rows:
        by_file.setdefault((name, sha), {})[number] = reason
    valid_lines: list[str] = []
    resolved: list[tuple[str, int]] = []
    for (name, sha), wanted in by_file.items():
        path = _source(cfg, name, sha)
        if path is None:
            result.missing_source += len(wanted)
            log.warning("replay: %s (sha256 %s...) is in neither archive/ nor processed/; %d dead letters skipped",
                        name, sha[:12], len(wanted))
            continue
        for number, line in wire.iter_batch_lines(str(path)):
            if number not in wanted:
                continue
            try:
                env = wire.parse_envelope(line)
                wire.parse_body(env.body, cfg.experiment_pattern, env.sent_timestamp_ms)
            except wire.RejectedMessage as exc:
                result.still_invalid[exc.reason] = result.still_invalid.get(exc.reason, 0) + 1
                continue
            valid_lines.append(line)
            resolved.append((sha, number))
    result.now_valid = len(valid_lines)
    if not valid_lines:
        return result

    now = datetime.now(timezone.utc)
    name = f"processing_batch_{now.strftime('%Y%m%dT%H%M%S')}_replay-{os.urandom(4).hex()}.jsonl"
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    sealed = work / name
    with open(sealed, "wb") as fh:
        for line in valid_lines:
            fh.write(encode_text(line) + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    durable_copy(sealed, Path(cfg.archive_dir))
    staged = durable_copy(sealed, Path(cfg.staging_dir))
    sealed.unlink()
    fsync_dir(work)
    result.batch_file = name

    marks = pa.table({"source_sha256": [s for s, _ in resolved], "line_number": [n for _, n in resolved]},
                     schema=pa.schema([("source_sha256", pa.string()), ("line_number", pa.int32())]))

    def mark_resolved(con: Any, load_id: int) -> None:
        con.register("_replayed", marks)
        try:
            con.execute("UPDATE dead_letter_messages AS d SET resolved_ts = $now, resolved_by_load_id = $load_id, "
                        "resolution = 'replayed' FROM _replayed AS r "
                        "WHERE d.source_sha256 = r.source_sha256 AND d.line_number = r.line_number",
                        {"load_id": load_id, "now": datetime.now(timezone.utc).replace(tzinfo=None)}).fetchall()
        finally:
            con.unregister("_replayed")

    # reprocess=True: a replay file with the same lines as one loaded before still resolves them
    loaded = load_file(cfg, staged, reprocess=True, in_transaction=mark_resolved)
    move_to(staged, Path(cfg.processed_dir))
    result.loaded_events, result.duplicate_events = loaded.loaded_events, loaded.duplicate_events
    return result
