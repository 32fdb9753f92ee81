"""Helpers for Silver tests: load batch files into a scratch warehouse and read tables back."""
from __future__ import annotations

import json
from pathlib import Path

import duckdb

from nelo_etl import silver, staging
from nelo_etl.config import Config, load_config

from .conftest import ROOT

#: Load metadata: which load first saw a row. Everything else must not depend on batching.
LOAD_METADATA = {"first_load_id", "first_batch_id", "recomputed_from_ts"}


def make_project(base: Path) -> Config:
    for name in ("staging", "processed", "archive", "dead_letter", "warehouse"):
        (base / name).mkdir(parents=True, exist_ok=True)
    cfg = json.loads((ROOT / "config.json").read_text(encoding="utf-8"))
    (base / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return load_config(base / "config.json")


def load(cfg: Config, files: list[Path], reprocess: bool = False) -> staging.RunResult:
    run = staging.process_files(cfg, files, reprocess=reprocess, move=False)
    assert run.ok, [f.line() for f in run.files if f.status == "failed"]
    return run


def silver_tables(cfg: Config) -> dict[str, list[tuple]]:
    """Every Silver table, load metadata aside, in a stable order."""
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        out = {}
        for model in silver.MODELS:
            cols = [r[0] for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = $t ORDER BY column_index",
                {"t": model.name}).fetchall() if r[0] not in LOAD_METADATA]
            out[model.name] = con.execute(
                f"SELECT {', '.join(cols)} FROM {model.name} ORDER BY ALL").fetchall()
        return out
    finally:
        con.close()


def gold_views(cfg: Config) -> dict[str, list[tuple]]:
    """Every Gold view's rows, in a stable order (from the published analytics file)."""
    from nelo_etl import gold

    con = duckdb.connect(str(gold.analytics_path(cfg)), read_only=True)
    try:
        return {v.name: con.execute(f"SELECT * FROM {v.name} ORDER BY ALL").fetchall() for v in gold.views()}
    finally:
        con.close()
