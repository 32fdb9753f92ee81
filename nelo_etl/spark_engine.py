"""The Spark engine: the same Silver models and Gold views, in the same order, on Apache Spark.

Input is the lakehouse's staged events (``<lake>/staging/stg_events``, exported by the DuckDB job
or written by whatever stages events at scale); output is every Silver table under
``<out>/silver/<table>/`` (hive-partitioned by ``event_date`` like the export) and every Gold view
materialised as ``<out>/gold/<view>/`` (Parquet), so Athena or any engine can read them.

The SQL is the DuckDB SQL of sql/silver and sql/gold, transpiled at run time
(:mod:`nelo_etl.portable`). Each model's result is written to the lake and read back before the
next model runs: the next model reads the table, not a growing plan, as in DuckDB.

- :func:`rebuild_silver`: every model over all staged events (``$load_id`` null). A self-reading
  model (a dimension that widens itself) reads its own table as an empty table of its declared
  shape (sql/ddl/), which is what a rebuild means.
- :func:`update_silver`: after new staged events, only the date partitions from the earliest one
  the new events can change are rewritten (Spark's dynamic partition overwrite); see its docstring.
- :func:`build_gold`: every Gold view over the Silver tables, one Parquet folder each.

Local mode (``spark_master: local[*]``) is how tests and a laptop run it; on a cluster the same
code runs under spark-submit with the lake on S3 (README: "When one machine is not enough").
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping

import sqlglot
from sqlglot import exp

from . import gold, lakehouse, portable, silver, sql

log = logging.getLogger(__name__)

def _reads_itself(name: str, text: str) -> bool:
    """Whether a model reads its own table (a dimension whose SELECT widens what is there)."""
    return re.search(rf"\b(FROM|JOIN)\s+{name}\b", sql.strip_comments(text), re.I) is not None


def spark_uri(uri: str) -> str:
    """A lake URI as Spark's Hadoop filesystems name it (s3a:// for S3, file:// locally)."""
    if uri.startswith("s3://"):
        return "s3a://" + uri[len("s3://"):]
    if "://" in uri:
        return uri
    return Path(uri).resolve().as_uri()


def session(cfg: Any, app_name: str = "nelo-growth-analytics", shuffle_partitions: int | None = None,
            extra: Mapping[str, str] | None = None) -> Any:
    """A SparkSession from the config: master, driver memory and extra jars. UTC session time
    zone (event times are UTC), dynamic partition overwrite, no UI; local masters bind to
    127.0.0.1 only."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    # spark-submit starts the JVM first and hands this process its gateway
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    if not submitted:
        # under spark-submit, its --master and --driver-memory win; the config is for plain runs
        builder = builder.master(cfg.spark_master).config("spark.driver.memory", cfg.spark_driver_memory)
    builder = (builder
               .config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
               .config("spark.sql.parquet.compression.codec", "zstd")
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.legacy.parquet.nanosAsLong", "false"))
    if shuffle_partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    if not submitted and cfg.spark_master.startswith("local"):
        builder = (builder.config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.driver.host", "127.0.0.1"))
    if cfg.spark_jars:
        builder = builder.config("spark.jars", cfg.spark_jars)
    if getattr(cfg, "lakehouse_endpoint_url", None):
        # a local S3 server (tests, MinIO): path-style requests to that endpoint
        builder = (builder.config("spark.hadoop.fs.s3a.endpoint", cfg.lakehouse_endpoint_url)
                   .config("spark.hadoop.fs.s3a.path.style.access", "true"))
    for key, value in (extra or {}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _empty_table_sql(name: str) -> str:
    """``SELECT CAST(NULL AS type) AS column, ... WHERE false`` from the table's DDL in sql/ddl/."""
    ddl = sqlglot.parse_one(sql.strip_comments(sql.read_sql(sql.sql_path("ddl", name))), read="duckdb")
    columns = [c for c in ddl.find_all(exp.ColumnDef)]
    select = exp.select(*[exp.alias_(exp.cast(exp.Null(), c.args["kind"].copy()), c.name) for c in columns])
    return select.where(exp.false()).sql(dialect="duckdb")


def lake_types(df: Any) -> Any:
    """Money as the lake's one decimal type (lakehouse.LAKE_DECIMAL), as the DuckDB export writes
    it: Spark derives other precisions than DuckDB (price * quantity), and a table whose
    partitions disagree cannot be read back."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DecimalType

    casts = {f.name: F.col(f.name).cast(DecimalType(38, 6)) for f in df.schema.fields
             if isinstance(f.dataType, DecimalType) and (f.dataType.precision, f.dataType.scale) != (38, 6)}
    return df.withColumns(casts) if casts else df


def _spark_date_expr(t: lakehouse.LakeTable) -> str:
    return sqlglot.parse_one(t.date_expr, read="duckdb").sql(dialect="spark")


class SparkRun:
    """One run of the engine against a lake: where staged events come from and where Silver and
    Gold go (the same lake unless ``out`` is given)."""

    def __init__(self, spark: Any, cfg: Any, lake_uri: str, out_uri: str | None = None) -> None:
        self.spark, self.cfg = spark, cfg
        self.lake = spark_uri(lake_uri).rstrip("/")
        self.out = spark_uri(out_uri or lake_uri).rstrip("/")
        self.params = silver.model_params(cfg, {"load_id": None, "batch_id": None})
        self.seconds: dict[str, float] = {}

    def folder(self, layer: str, name: str) -> str:
        return f"{self.out}/{layer}/{name}"

    def register_staged(self) -> None:
        # the partition folder supplies event_date; stg_events' own columns are what the SQL reads
        self.spark.read.parquet(f"{self.lake}/staging/stg_events").createOrReplaceTempView("stg_events")

    def register_table(self, name: str, layer: str = "silver") -> bool:
        """Read a lake table back as the view ``name`` with the model's columns (a partition
        column derived for the lake is dropped again)."""
        from pyspark.sql.utils import AnalysisException

        try:
            df = self.spark.read.parquet(self.folder(layer, name))
        except AnalysisException:
            return False
        if layer == "silver":
            t = lakehouse.table(name)
            if t.date_expr is not None and t.date_expr != lakehouse.PARTITION:
                df = df.drop(lakehouse.PARTITION)
        df.createOrReplaceTempView(name)
        return True

    def write(self, name: str, df: Any, since: dt.date | None = None) -> None:
        """Write one Silver table: whole (``since`` None), or only its partitions from ``since``
        on (dynamic partition overwrite: the other partitions stay as they are; a partition from
        ``since`` on that no longer has rows is removed)."""
        from pyspark.sql import functions as F

        t = lakehouse.table(name)
        target = self.folder("silver", name)
        df = lake_types(df)
        if t.date_expr is None:
            df.coalesce(1).write.mode("overwrite").parquet(target)
        else:
            if lakehouse.PARTITION not in df.columns:
                df = df.withColumn(lakehouse.PARTITION, F.expr(_spark_date_expr(t)))
            mode = "static"
            if since is not None:
                df = df.where(F.col(lakehouse.PARTITION) >= F.lit(since))
                mode = "dynamic"
            df = df.repartition(lakehouse.PARTITION).cache()
            (df.write.mode("overwrite").option("partitionOverwriteMode", mode)
             .partitionBy(lakehouse.PARTITION).parquet(target))
            if since is not None:
                kept = {str(r[0]) for r in df.select(lakehouse.PARTITION).distinct().collect()}
                self._drop_emptied(target, since, kept)
            df.unpersist()
        self.register_table(name)

    def _drop_emptied(self, target: str, since: dt.date, kept: set[str]) -> None:
        """Partitions on or after ``since`` that the new rows no longer fill (sessions merged
        into an earlier day's session) go; dynamic overwrite alone would leave them."""
        uri = target.replace("s3a://", "s3://", 1)
        if uri.startswith("file:"):
            uri = Path.from_uri(uri) if hasattr(Path, "from_uri") else uri[len("file://"):]
        lake = lakehouse.open_lake(str(uri), self.cfg.lakehouse_endpoint_url, self.cfg.queue.region)
        prefix = f"{lakehouse.PARTITION}="
        infos = lake.fs.get_file_info(lakehouse.pafs.FileSelector(lake.root, allow_not_found=True))
        for info in infos:
            name = info.path.rsplit("/", 1)[-1]
            if info.type == lakehouse.pafs.FileType.Directory and name.startswith(prefix):
                value = name[len(prefix):]
                if value >= since.isoformat() and value not in kept:
                    lake.fs.delete_dir(info.path)

    def run_model(self, model: silver.Model, since: dt.date | None = None) -> None:
        started = time.perf_counter()
        text = sql.read_sql(model.path)
        if _reads_itself(model.name, text):
            # $load_id is null on Spark: a model that widens its own table starts from an empty
            # one, exactly as silver_transforms.py --rebuild empties it first
            self.spark.sql(portable.to_spark(_empty_table_sql(model.name))).createOrReplaceTempView(model.name)
        df = self.spark.sql(portable.to_spark(text, self.params))
        self.write(model.name, df, since if lakehouse.table(model.name).date_expr else None)
        self.seconds[model.name] = time.perf_counter() - started


def rebuild_silver(run: SparkRun) -> list[str]:
    """Every Silver table from all staged events, in run order; the tables written."""
    run.register_staged()
    for model in silver.MODELS:
        run.run_model(model)
    return [model.name for model in silver.MODELS]


def build_gold(run: SparkRun) -> list[str]:
    """Every Gold view over the Silver tables, materialised as ``<out>/gold/<view>/`` (Parquet)."""
    for model in silver.MODELS:
        if not run.register_table(model.name):
            raise RuntimeError(f"no Silver table {model.name} in {run.out}: run the Silver models first")
    written = []
    for view in gold.views():
        started = time.perf_counter()
        df = lake_types(run.spark.sql(portable.to_spark(view.select)))
        df.coalesce(1).write.mode("overwrite").parquet(run.folder("gold", view.name))
        written.append(view.name)
        run.seconds[view.name] = time.perf_counter() - started
    return written


def earliest_changed_date(run: SparkRun) -> dt.date | None:
    """The first date partition new staged events can change: per (user, platform) with new
    events, the start of the session in force at its earliest new event (a late event can merge
    that session with the ones after it, and a session belongs to its start date); the earliest
    of these. None when nothing is new. New events are the staged rows with ``load_id`` above
    the highest one the Silver tables hold."""
    run.register_staged()
    if not run.register_table("fct_events") or not run.register_table("silver_event_sessions"):
        return dt.date.min
    row = run.spark.sql("""
        WITH new_events AS (
            SELECT user_id, platform, MIN(event_timestamp_us) AS since_us
            FROM stg_events
            WHERE load_id > (SELECT COALESCE(MAX(first_load_id), -1) FROM fct_events)
            GROUP BY user_id, platform
        ),
        in_force AS (
            SELECT n.user_id, n.platform, n.since_us,
                   MAX_BY(s.session_start_ts, s.event_timestamp_us) AS session_start_ts
            FROM new_events AS n
            LEFT JOIN silver_event_sessions AS s
              ON s.user_id = n.user_id AND s.platform = n.platform AND s.event_timestamp_us <= n.since_us
            GROUP BY n.user_id, n.platform, n.since_us
        )
        SELECT MIN(LEAST(CAST(COALESCE(session_start_ts, TIMESTAMP_MICROS(since_us)) AS DATE),
                         CAST(TIMESTAMP_MICROS(since_us) AS DATE))) AS since_date
        FROM in_force
    """).collect()[0]
    return row["since_date"]


def update_silver(run: SparkRun) -> tuple[dt.date | None, list[str]]:
    """After new staged events: rewrite each partitioned Silver table's partitions from the
    earliest date the new events can change (:func:`earliest_changed_date`) on, and the small
    unpartitioned tables whole. Partitions before that date stay untouched: no event in them can
    change (a session's rows depend only on the events up to them, and the session in force at
    the earliest new event starts on or after that date).

    The models compute over all staged events (``$load_id`` null), so the rows written are the
    rebuild's rows for those partitions; only the writes are incremental, which is what keeps
    the lake's untouched partitions stable for readers and for S3 costs. Returns the date (None:
    nothing new) and the tables written.
    """
    since = earliest_changed_date(run)
    if since is None:
        return None, []
    run.register_staged()
    for model in silver.MODELS:
        run.run_model(model, since=since)
    return since, [model.name for model in silver.MODELS]


def _lake_uri(cfg: Any) -> str:
    if not cfg.lakehouse_path:
        raise ValueError("--engine spark needs a lake: lakehouse_path is null in the config")
    return lakehouse.lake_of(cfg).uri_of() if cfg.lakehouse_path.startswith("s3://") else lakehouse.lake_of(cfg).uri


def run_silver(cfg: Any, rebuild: bool) -> str:
    """silver_transforms.py --engine spark [--rebuild]: one line saying what was done."""
    started = time.monotonic()
    spark = session(cfg, "nelo-silver")
    try:
        run = SparkRun(spark, cfg, _lake_uri(cfg))
        if rebuild:
            rebuild_silver(run)
            what = f"rebuilt {len(silver.MODELS)} Silver tables"
        else:
            since, _ = update_silver(run)
            what = ("nothing new to compute" if since is None
                    else f"rewrote the Silver partitions from {since.isoformat()} on")
    finally:
        spark.stop()
    return f"spark ({cfg.spark_master}): {what} in {run.out}/silver in {time.monotonic() - started:.1f} s"


def run_gold(cfg: Any) -> str:
    """gold_transforms.py --engine spark: every Gold view materialised under <lake>/gold/."""
    started = time.monotonic()
    spark = session(cfg, "nelo-gold")
    try:
        run = SparkRun(spark, cfg, _lake_uri(cfg))
        views = build_gold(run)
    finally:
        spark.stop()
    return f"spark ({cfg.spark_master}): {len(views)} Gold views materialised in {run.out}/gold in {time.monotonic() - started:.1f} s"
