"""The Silver layer: SQL models under sql/silver/, run in order inside the staging transaction.

Each model is a SELECT in ``sql/silver/<name>.sql``. ``$load_id`` scopes it to what one load
changed (null: everything, for ``--rebuild``). How its rows are written is said once, here:
``incremental`` per batch, ``replace`` on a rebuild. A table that does not exist yet is created
from its SELECT's shape.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from . import sql
from .config import Config

PAIR = ("user_id", "platform")


@dataclass(frozen=True)
class Model:
    name: str
    incremental: sql.Target

    @property
    def path(self) -> Path:
        return sql.sql_path("silver", self.name)


def _m(name: str, mode: sql.Mode, *key: str) -> Model:
    return Model(name, sql.Target(name, mode, key))


def _since(name: str, key: tuple[str, ...], column: str) -> Model:
    """overwrite_from: per key, the rows whose ``column`` is at or after the new rows'
    ``recomputed_from_ts`` are replaced (the SQL says from where a batch can change them)."""
    return Model(name, sql.Target(name, "overwrite_from", key, since=(column, "recomputed_from_ts")))


#: The Silver models in run order (each reads only staging and the models before it).
MODELS: list[Model] = [
    _m("fct_events", "append"),
    _m("fct_event_items", "append"),
    _m("dim_platforms", "merge", "platform"),
    _m("dim_dates", "merge", "date_day"),
    _since("silver_event_sessions", PAIR, "event_ts"),
    _since("silver_user_sessions", PAIR, "session_start_ts"),
    _since("silver_session_features", PAIR, "session_start_ts"),
    _since("fct_orders", PAIR, "order_ts"),
    _since("dim_products", ("item_id",), "valid_from"),
    _m("dim_users", "overwrite_partitions", "user_id"),
    _since("silver_list_impressions", PAIR, "event_ts"),
    _since("silver_event_list_attribution", PAIR, "event_ts"),
    _m("dim_item_lists", "merge", "item_list_id"),
    _m("dim_campaigns", "replace"),
    _m("dim_experiments", "merge", "experiment_id", "variant"),
    _m("fct_product_campaigns", "merge", "item_id", "campaign_id"),
]


def model_params(cfg: Config, params: Mapping[str, Any]) -> dict[str, Any]:
    """Batch parameters plus the business settings the Silver SQL binds."""
    return dict(params,
                session_timeout_us=int(round(cfg.session_timeout_minutes * 60_000_000)),
                attribution_window_us=int(round(cfg.attribution_window_minutes * 60_000_000)),
                high_value_cart_usd=float(cfg.high_value_cart_usd),
                current_campaign_days=float(cfg.current_campaign_days))


def existing_tables(con: Any) -> set[str]:
    """The warehouse's persistent tables: one catalog query a batch, not one a model."""
    return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}


def ensure_table(con: Any, model: Model, select_sql: str, params: Mapping[str, Any], existing: set[str]) -> None:
    """Create the model's table from its SELECT's shape, unless it is in ``existing``."""
    if model.name not in existing:
        con.execute(f"CREATE TABLE {model.name} AS SELECT * FROM ({select_sql}) LIMIT 0",
                    sql.params_for(select_sql, params)).fetchall()
        existing.add(model.name)


def apply_batch(con: Any, cfg: Config, params: Mapping[str, Any]) -> dict[str, float]:
    """Run every Silver model for the rows of the loads from ``params['load_id']`` on (the loads of
    this transaction: one file, or several loaded together); seconds per model."""
    bound = model_params(cfg, params)
    existing = existing_tables(con)
    seconds = {}
    for model in MODELS:
        started = time.perf_counter()
        select_sql = sql.read_sql(model.path)
        ensure_table(con, model, select_sql, bound, existing)
        sql.write(con, model.incremental, select_sql, bound, journal_load_id=params["load_id"])
        if model.incremental.mode == "append":
            # an appended row carries the load that first saw it: that names this batch's new rows
            # (every load of the transaction, when several files load together)
            con.execute("INSERT INTO publish_journal (load_id, table_name, key_json) "
                        "SELECT $l, $t, to_json({'first_load_id': id}) FROM (SELECT unnest($ids::BIGINT[]) AS id)",
                        {"l": params["load_id"], "t": model.name,
                         "ids": list(params.get("load_ids") or [params["load_id"]])}).fetchall()
        seconds[model.name] = time.perf_counter() - started
    return seconds


def rebuild(con: Any, cfg: Config) -> dict[str, int]:
    """Every Silver table from all of stg_events (the caller holds the transaction): each table
    is emptied first, then every model runs once over everything (``$load_id`` null)."""
    bound = model_params(cfg, {"load_id": None, "batch_id": None})
    existing = existing_tables(con)
    for model in MODELS:
        ensure_table(con, model, sql.read_sql(model.path), bound, existing)
        con.execute(f"DELETE FROM {model.name}").fetchall()
        # every table changes: the next analytics publication copies everything
        sql.journal_whole_table(con, model.name, None)
    return {model.name: sql.write(con, model.incremental, sql.read_sql(model.path), bound) for model in MODELS}
