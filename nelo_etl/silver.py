"""The Silver layer: SQL models under sql/silver/, run in order inside the staging transaction.

Each model is a SELECT in ``sql/silver/<name>.sql``; its :class:`~nelo_etl.sql.Target` says how
its rows are written. ``apply_batch`` is the hook process_staging calls for every batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from . import sql
from .config import Config


@dataclass(frozen=True)
class Model:
    name: str
    target: sql.Target

    @property
    def path(self):
        return sql.sql_path("silver", self.name)


#: The Silver models in run order (dependencies first).
MODELS: list[Model] = []


def model_params(cfg: Config, params: Mapping[str, Any]) -> dict[str, Any]:
    """Batch parameters plus the business settings the Silver SQL binds."""
    return dict(params,
                session_timeout_us=int(cfg.session_timeout_minutes * 60_000_000),
                attribution_window_us=int(cfg.attribution_window_minutes * 60_000_000),
                high_value_cart_usd=float(cfg.high_value_cart_usd),
                current_campaign_days=float(cfg.current_campaign_days))


def apply_batch(con: Any, cfg: Config, params: Mapping[str, Any]) -> None:
    """Run every Silver model for the batch whose rows carry ``params['load_id']``."""
    bound = model_params(cfg, params)
    for model in MODELS:
        sql.write(con, model.target, sql.read_sql(model.path), bound)
