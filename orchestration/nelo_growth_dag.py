"""Airflow DAG: the Nelo Growth Analytics pipeline every 15 minutes, as cron runs it.

The same steps and the same semantics as the cron line in README.md:

- ``etl``: ``etl.py --json`` (poll SQS, write the batch file, stage, load DuckDB, Gold, the
  analytics file, the lakehouse export). It takes its own lock (``work/etl.lock``), so a run
  started by cron and one by Airflow never overlap. Exit 75 means another run holds the lock:
  the task is *skipped*, not failed (``skip_on_exit_code``), and the next run catches up.
  Exit 1 (failed) and 2 (bad config) fail the task.
- ``spark_silver`` and ``spark_gold`` (only when the environment sets ``NELO_SPARK_ENGINE=1``, the
  second phase): ``silver_transforms.py --engine spark`` (the Silver partitions the new staged
  events change) and ``gold_transforms.py --engine spark`` (Gold as Parquet in the lake). Spark's
  master, memory and jars come from the config (``spark_master``: ``yarn``, ``k8s://...``).

Where the project lives: ``NELO_HOME`` (default ``/opt/nelo``), its virtualenv in ``.venv``,
its config in ``ETL_CONFIG`` or ``config.json`` beside the scripts.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow import DAG

try:  # Airflow 3 moved the bash operator into the standard provider
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

NELO_HOME = os.environ.get("NELO_HOME", "/opt/nelo")
PYTHON = f"{NELO_HOME}/.venv/bin/python"
#: etl.py's "skipped: another run holds the lock" (EX_TEMPFAIL): not a failure
EXIT_SKIPPED = 75
SCHEDULE = "*/15 * * * *"

default_args = {
    "owner": "growth-data",
    "retries": 0,                       # the next 15-minute run is the retry; etl.py recovers first
    "execution_timeout": timedelta(minutes=14),
}

with DAG(
    dag_id="nelo_growth_analytics",
    description="SQS -> batch files -> DuckDB (stg, Silver, Gold) -> analytics file + lakehouse",
    schedule=SCHEDULE,
    start_date=datetime(2025, 1, 1),
    catchup=False,                      # a missed tick is caught up by the next run, not replayed
    max_active_runs=1,
    default_args=default_args,
    tags=["nelo", "growth"],
) as dag:
    etl = BashOperator(
        task_id="etl",
        bash_command=f"cd {NELO_HOME} && {PYTHON} etl.py --json",
        skip_on_exit_code=EXIT_SKIPPED,
    )
    if os.environ.get("NELO_SPARK_ENGINE") == "1":
        spark_silver = BashOperator(
            task_id="spark_silver",
            bash_command=f"cd {NELO_HOME} && {PYTHON} silver_transforms.py --engine spark",
            skip_on_exit_code=EXIT_SKIPPED,
        )
        spark_gold = BashOperator(
            task_id="spark_gold",
            bash_command=f"cd {NELO_HOME} && {PYTHON} gold_transforms.py --engine spark",
            skip_on_exit_code=EXIT_SKIPPED,
        )
        etl >> spark_silver >> spark_gold
