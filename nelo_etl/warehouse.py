"""The warehouse's existence and its rebuild from archive/.

A missing ``nelo.duckdb`` while ``processed/`` holds loaded batch files means the warehouse was
lost (deleted, a disk swapped): starting a new empty one would load only the new files and move
them on, silently. So that is an error naming the way back, ``rebuild_warehouse.py``, which loads
every file of ``archive/`` (the immutable copy of every batch) in name order (= arrival order)
into a fresh warehouse. A first run (files only in ``archive/`` and ``staging/``) is not an error.
"""
from __future__ import annotations

import logging
from pathlib import Path

from .cli import Failure
from .config import Config

log = logging.getLogger("nelo_etl.warehouse")

REBUILD_COMMAND = "./rebuild_warehouse.py"


class WarehouseMissing(Failure):
    """The warehouse file is gone although batch files were loaded into it."""


def loaded_files(cfg: Config) -> list[Path]:
    """Batch files processed/ says were loaded."""
    return sorted(p for p in Path(cfg.processed_dir).glob("*.jsonl") if not p.name.startswith("."))


def check_present(cfg: Config) -> None:
    """Raise WarehouseMissing when the warehouse file is missing but processed/ holds loaded files."""
    db = Path(cfg.database_path)
    if db.exists():
        return
    loaded = loaded_files(cfg)
    if loaded:
        raise WarehouseMissing(
            f"the warehouse {db} is missing but {cfg.processed_dir} holds {len(loaded)} loaded batch file(s); "
            f"restore it from a backup, or rebuild it from archive/ with {REBUILD_COMMAND}")


def archive_files(cfg: Config) -> list[Path]:
    """Every batch file in archive/, in name order (names start with their UTC time)."""
    return sorted(p for p in Path(cfg.archive_dir).glob("*.jsonl") if not p.name.startswith("."))


def rebuild_from_archive(cfg: Config):
    """Load every archive/ file into a new warehouse, then publish. The warehouse must be
    missing: this never overwrites one. Returns staging.RunResult."""
    from . import staging
    from .db import connect, ensure_schema

    db = Path(cfg.database_path)
    if db.exists():
        raise Failure(f"the warehouse {db} exists; {REBUILD_COMMAND} only rebuilds a lost one "
                      f"(move it aside first if you mean to replace it)")
    files = archive_files(cfg)
    if not files:
        raise Failure(f"nothing to rebuild from: {cfg.archive_dir} holds no batch files")
    con = connect(db, cfg.db_lock_timeout_seconds, memory_limit=cfg.duckdb_memory_limit)
    try:
        ensure_schema(con)              # the new warehouse exists from here on (a new identity)
    finally:
        con.close()
    log.info("rebuilding %s from %d archive file(s)", db, len(files))
    return staging.process_files(cfg, files, move=False)
