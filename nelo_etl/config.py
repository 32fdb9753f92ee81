"""Settings: ``config.json`` validated at start, secrets from the environment or ``.env``.

Every entry script takes ``--config PATH`` and honours ``ETL_CONFIG``; relative paths resolve
against the folder of the config file, so a run behaves the same from any working directory.
A bad config (unknown key, wrong type, missing folder) is a :class:`ConfigError`, which the
scripts report as one line and exit code 2 before anything is touched.
"""
from __future__ import annotations

import grp
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "config.json"


class ConfigError(Exception):
    """The configuration is unusable; the message is one line for a human."""


class QueueSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    region: str = Field("us-east-1", description="AWS region of the queue")
    endpoint_url: Optional[str] = Field(
        None, description="SQS endpoint (a local server); AWS_ENDPOINT_URL in the environment wins")
    wait_time_seconds: int = Field(20, ge=0, le=20, description="long-poll wait per ReceiveMessage call")
    visibility_timeout_seconds: int = Field(
        300, ge=0, le=43200, description="how long a received message stays hidden from other consumers; "
        "a run extends it for the messages it holds, so it need not cover the run (at least 2 x wait_time_seconds + 2)")
    max_messages_per_run: int = Field(50_000, ge=1, description="stop polling after this many messages")
    max_seconds_per_run: float = Field(600.0, gt=0, description="stop polling after this many seconds")

    @model_validator(mode="after")
    def _visibility_outlasts_a_long_poll(self) -> "QueueSettings":
        # The run extends the visibility of the messages it holds between two ReceiveMessage
        # calls; a call can block wait_time_seconds, so the timeout must outlast it with room to
        # spare, or messages come back while the run still holds them (0 drains 10 a run).
        least = 2 * self.wait_time_seconds + 2
        if self.visibility_timeout_seconds < least:
            raise ValueError(
                f"visibility_timeout_seconds ({self.visibility_timeout_seconds}) must be at least "
                f"2 x wait_time_seconds + 2 ({least}): received messages would come back during the run")
        return self


#: Gold views by team (README: "Each team sees its own answers"); the names are sql/gold/ files.
DEFAULT_TEAMS: dict[str, dict[str, Any]] = {
    "growth": {"group": None, "views": [
        "vw_platform_daily_performance_sessions", "vw_product_daily_performance", "vw_growth_engagement_daily",
        "vw_list_daily_performance_sessions", "vw_campaign_performance_daily", "vw_experiment_performance",
        "gold_segment_bounce_v", "gold_segment_checkout_abandon_v", "gold_segment_high_value_abandon_v",
        "gold_segment_abandon_no_purchase_since_v", "gold_segment_abandon_then_bought_different_v",
        "gold_user_features_v", "vw_experiment_srm"]},
    "finance": {"group": None, "views": [
        "vw_daily_purchase_discounts", "vw_product_campaign_discounts", "vw_installment_adoption_daily",
        "vw_gold_product_campaign_price_change_events", "vw_gold_product_campaign_current_status",
        "vw_coupon_impact", "vw_abandoned_cart_aov"]},
}


def _existing_group(name: Optional[str]) -> Optional[str]:
    """A Unix group that exists on this machine (checked at start, so a typo is exit 2)."""
    if name is not None:
        try:
            grp.getgrnam(name)
        except KeyError:
            raise ValueError(f"no such group {name!r} on this machine") from None
    return name


class TeamSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    group: Optional[str] = Field(None, description="Unix group that may read the team's file (null: the job's group)")
    views: list[str] = Field(min_length=1, description="Gold views the team's file holds, as tables")

    @field_validator("group")
    @classmethod
    def _group_exists(cls, value: Optional[str]) -> Optional[str]:
        return _existing_group(value)

    @field_validator("views")
    @classmethod
    def _views_exist(cls, value: list[str]) -> list[str]:
        known = {p.stem for p in (ROOT / "sql" / "gold").glob("*.sql")}
        unknown = [v for v in value if v not in known]
        if unknown:
            raise ValueError(f"not a Gold view: {unknown[0]!r}")
        return value


class Settings(BaseModel):
    """The keys of config.json. README's configuration table lists them with their defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)

    staging_dir: str = Field("staging", description="batch files waiting to be loaded")
    processed_dir: str = Field("processed", description="batch files loaded and committed")
    archive_dir: str = Field("archive", description="an immutable copy of every batch file")
    dead_letter_dir: str = Field("dead_letter", description="rejected messages, one JSONL file per batch")
    database_path: str = Field("warehouse/nelo.duckdb", description="the DuckDB warehouse (its folder must exist)")
    work_dir: str = Field("work", description="etl.py's raw file, lock and message cache (created if missing)")
    log_dir: str = Field("logs", description="rotating log files (created if missing)")
    queue: QueueSettings = Field(default_factory=QueueSettings, description="the SQS queue (nested object)")
    message_cache_ttl_seconds: int = Field(
        14 * 24 * 3600, ge=0, description="how long a MessageId is remembered as written (the queue's retention)")
    parser: Literal["native", "python"] = Field(
        "native", description="how staging parses batch files: the compiled single pass (nelo_etl/_wirefast.c), which leaves the lines it cannot vouch for to the Python contract parser, or the Python contract parser alone (same rows; see README). \"duckdb\", the SQL parser it replaced, is read as \"native\"")
    duckdb_memory_limit: str = Field(
        "1GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB's memory limit for the job; beyond it DuckDB spills to <database>.tmp/")
    staging_settle_seconds: float = Field(
        300.0, ge=0, description="a staging file whose last line is incomplete waits this long for its writer before it is loaded as truncated")
    db_lock_timeout_seconds: float = Field(
        60.0, ge=0, description="how long to retry when another process holds the database")
    session_timeout_minutes: float = Field(30.0, gt=0, description="a gap longer than this starts a new session")
    attribution_window_minutes: float = Field(
        30.0, gt=0, description="how far back a list impression can take credit for a view, checkout or purchase")
    high_value_cart_usd: float = Field(500.0, ge=0, description="an abandoned cart above this is high value")
    current_campaign_days: float = Field(
        7.0, ge=0, description="a campaign is current if its last event is this close to the as-of time")
    experiment_pattern: str = Field("NELO_XP_", min_length=1, description="discount codes containing this are experiment arms")
    report_dir: Optional[str] = Field(
        None, description="if set, the HTML dashboard (index.html) is rebuilt there, atomically, after every committed run (created if missing); null: off")
    analytics_storage_version: str = Field(
        "v1.0.0", pattern=r"^v\d+\.\d+\.\d+$",
        description="DuckDB storage format of the published files (v1.0.0: every DuckDB 1.x and 2.x client reads them)")
    team_refresh_minutes: float = Field(
        60.0, ge=0, description="how often the team files (whole-history Gold aggregates) are rebuilt; the analytics file is published every run (0: every run too)")
    vacuum_minutes: float = Field(
        60.0, ge=0, description="how often a run's checkpoints compact the rows earlier batches deleted (DuckDB's vacuum), per file; the runs between only mark rows deleted (0: every run)")
    analysts_group: Optional[str] = Field(
        None, description="Unix group that may read analytics.duckdb (mode 0440; null: the job's group)")
    teams: dict[str, TeamSettings] = Field(
        default_factory=lambda: {k: TeamSettings(**v) for k, v in DEFAULT_TEAMS.items()},
        description="per team, the Gold views of its own read-only file warehouse/team_<name>.duckdb, and its group")

    @field_validator("parser", mode="before")
    @classmethod
    def _retired_parser(cls, value: Any) -> Any:
        # the SQL parser was replaced by the compiled one: an old config.json keeps working
        return "native" if value == "duckdb" else value

    @field_validator("analysts_group")
    @classmethod
    def _analysts_group_exists(cls, value: Optional[str]) -> Optional[str]:
        return _existing_group(value)

    @field_validator("teams")
    @classmethod
    def _team_names(cls, value: dict[str, TeamSettings]) -> dict[str, TeamSettings]:
        for name in value:
            if not (name.isascii() and name.replace("_", "").isalnum() and name[:1].isalpha() and name.islower()):
                raise ValueError(f"team name {name!r}: use lower-case letters, digits and _ (it names a file)")
        return value
    lakehouse_path: Optional[str] = Field(
        "lake", description="the lakehouse (hive-partitioned Parquet): a local folder or an s3:// URI; after each committed run the staged events and Silver tables are exported there; null: no export")
    lakehouse_endpoint_url: Optional[str] = Field(
        None, description="S3 endpoint of the lake (a local S3 server); AWS_ENDPOINT_URL_S3 in the environment wins")
    spark_master: str = Field("local[*]", min_length=1, description="Spark master for --engine spark (local[*], yarn, spark://host:7077, k8s://...)")
    spark_driver_memory: str = Field("2g", pattern=r"^\d+[kmgt]?$", description="Spark driver memory for --engine spark")
    spark_jars: str = Field("", description="extra jars for --engine spark, comma-separated (the Iceberg runtime, hadoop-aws on a cluster)")


#: Settings that name folders which must already exist (the data folders are part of the layout).
REQUIRED_DIRS = ("staging_dir", "processed_dir", "archive_dir", "dead_letter_dir")


@dataclass(frozen=True)
class Config:
    """Validated settings with every path made absolute."""

    path: Path
    settings: Settings
    staging_dir: Path
    processed_dir: Path
    archive_dir: Path
    dead_letter_dir: Path
    database_path: Path
    work_dir: Path
    log_dir: Path
    report_dir: Optional[Path] = None

    def __getattr__(self, name: str) -> Any:
        # Non-path settings read straight through: cfg.session_timeout_minutes, cfg.queue, ...
        return getattr(self.settings, name)


def resolve_config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """``--config`` if given, else ``ETL_CONFIG``, else config.json beside the scripts."""
    chosen = explicit or os.environ.get("ETL_CONFIG") or DEFAULT_CONFIG
    return Path(chosen).expanduser().resolve()


def load_config(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Read, validate and resolve the configuration. Raises ConfigError with a one-line message."""
    path = resolve_config_path(explicit)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a JSON object")
    raw.pop("$comment", None)   # a free-text note in the file is allowed
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_one_line(exc)}") from None
    base = path.parent

    def resolve(value: str) -> Path:
        return (base / Path(value).expanduser()).resolve()

    resolved = {name: resolve(getattr(settings, name)) for name in (
        "staging_dir", "processed_dir", "archive_dir", "dead_letter_dir", "database_path", "work_dir", "log_dir")}
    for name in REQUIRED_DIRS:
        if not resolved[name].is_dir():
            raise ConfigError(f"{path}: {name}: folder does not exist: {resolved[name]}")
    if not resolved["database_path"].parent.is_dir():
        raise ConfigError(f"{path}: database_path: folder does not exist: {resolved['database_path'].parent}")
    report_dir = resolve(settings.report_dir) if settings.report_dir is not None else None
    return Config(path=path, settings=settings, report_dir=report_dir, **resolved)


def _one_line(exc: ValidationError) -> str:
    """The first validation error as ``key.sub: message (got value)``."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    if err["type"] == "value_error":      # a cross-field rule: its message names the keys
        return f"{where}: {str(err['msg']).removeprefix('Value error, ')}"
    got = err.get("input")
    shown = json.dumps(got)[:60] if isinstance(got, (str, int, float, bool, type(None))) else type(got).__name__
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {err['msg'].lower()} (got {shown}){more}"


#: The only keys a ``.env`` file may set: the ones ``.env.example`` lists (set or commented out).
ENV_EXAMPLE = ROOT / ".env.example"


def env_keys() -> set[str]:
    """The variable names ``.env.example`` lists, as ``NAME=`` or ``# NAME=``."""
    text = ENV_EXAMPLE.read_text(encoding="utf-8") if ENV_EXAMPLE.is_file() else ""
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.M))


def load_env(config: Config | None = None) -> list[str]:
    """Load ``.env`` from beside the config file (never the working directory: a ``.env`` there
    could point ``AWS_CONFIG_FILE`` at a ``credential_process`` or redirect the endpoint), taking
    only the keys ``.env.example`` lists and never overriding variables already set: the real
    environment always wins. A ``.env`` owned by another user or writable by group or others is
    refused (ConfigError, exit 2). Returns the names it set."""
    from dotenv import dotenv_values

    if config is None:
        return []
    candidate = config.path.parent / ".env"
    if not candidate.is_file():
        return []
    st = candidate.stat()
    if st.st_uid != os.getuid():
        raise ConfigError(f"{candidate}: refusing a .env owned by another user (uid {st.st_uid}); "
                          f"it must belong to the user running the job")
    if st.st_mode & 0o022:
        raise ConfigError(f"{candidate}: refusing a .env writable by group or others "
                          f"(mode {st.st_mode & 0o777:o}); chmod 600 it")
    allowed = env_keys()
    ignored = []
    set_now = []
    for key, value in dotenv_values(candidate).items():
        if key not in allowed:
            ignored.append(key)
            continue
        if value is not None and key not in os.environ:
            os.environ[key] = value
            set_now.append(key)
    if ignored:
        import logging
        logging.getLogger("nelo_etl.config").warning(
            "%s: ignored keys .env.example does not list: %s", candidate, ", ".join(sorted(ignored)))
    return set_now


def settings_table() -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every setting, nested ones as ``queue.key``; README's table."""
    rows = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name}.")
                continue
            default = info.get_default(call_default_factory=True)
            type_name = getattr(annotation, "__name__", str(annotation)).replace("Optional", "")
            if type_name == "Literal":
                type_name = " or ".join(json.dumps(a) for a in annotation.__args__)
            if str(annotation).startswith("typing.Optional"):
                type_name = str(annotation).replace("typing.Optional[", "").rstrip("]") + " or null"
            shown = json.dumps(default, default=lambda m: m.model_dump())     # teams hold models
            rows.append((prefix + name, type_name, shown, info.description or ""))

    walk(Settings, "")
    return rows
