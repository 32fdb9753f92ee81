"""Spark local mode beside DuckDB for the same work: `python -m bench.spark [--events 20000 100000]`.

For each size: chaotic simulated traffic loaded into a DuckDB warehouse (one file; the lakehouse
export runs after the commit), then the same work on both engines, timed once each (Spark's
runs take minutes; the spread between runs is small next to the gap between engines):

- DuckDB: ``silver.rebuild`` (every Silver table, one transaction) and every Gold view
  materialised as a table (what the Spark engine writes as Parquet); the full lake export.
- Spark (``local[*]``, this machine): session start, ``rebuild_silver`` and ``build_gold`` over the
  lakehouse's staged events, and ``update_silver`` after one more batch (the incremental path).

Writes the section between the ``spark`` markers of bench/RESULTS.md (``python -m bench`` keeps it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from nelo_etl import gold, lakehouse, silver, spark_engine, staging  # noqa: E402
from nelo_etl.config import load_config  # noqa: E402
from nelo_etl.cpus import usable_cpus  # noqa: E402
from nelo_etl.db import connect, transaction  # noqa: E402
from nelo_etl.simulate import SimConfig, Simulator, write_batches  # noqa: E402

BEGIN, END = "<!-- spark:begin -->", "<!-- spark:end -->"


def project(base: Path):
    for name in ("staging", "processed", "archive", "dead_letter", "warehouse"):
        (base / name).mkdir(parents=True, exist_ok=True)
    cfg = json.loads((HERE.parent / "config.json").read_text(encoding="utf-8"))
    (base / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return load_config(base / "config.json")


def measure(events: int, work: Path, spark) -> dict[str, float]:
    out: dict[str, float] = {"events": events}
    messages = Simulator(SimConfig.chaos(events=events, seed=7, days=max(3, events // 20000))).messages()
    cut = int(len(messages) * 0.95)
    first = write_batches(messages[:cut], str(work / "a"), batches=1)
    last = write_batches(messages[cut:], str(work / "b"), batches=1)
    cfg = project(work / "project")
    t = time.perf_counter()
    run = staging.process_files(cfg, [Path(p) for p in first], move=False)
    out["duckdb_load_batch_incl_export_s"] = time.perf_counter() - t
    assert run.ok, [f.line() for f in run.files]
    con = connect(cfg.database_path, 60, memory_limit=cfg.duckdb_memory_limit)
    try:
        t = time.perf_counter()
        with transaction(con):
            silver.rebuild(con, cfg)
        out["duckdb_silver_rebuild_s"] = time.perf_counter() - t
        t = time.perf_counter()
        for view in gold.views():
            con.execute(f"CREATE OR REPLACE TEMP TABLE _g AS SELECT * FROM {view.name}").fetchall()
        out["duckdb_gold_materialise_s"] = time.perf_counter() - t
        lake_dir = work / "fresh_lake"
        t = time.perf_counter()
        lakehouse.export(con, lakehouse.open_lake(str(lake_dir)), work / "tmp")
        out["duckdb_full_lake_export_s"] = time.perf_counter() - t
    finally:
        con.close()
    lake = str(lakehouse.lake_of(cfg).uri)
    srun = spark_engine.SparkRun(spark, cfg, lake, str(work / "spark_lake"))
    t = time.perf_counter()
    spark_engine.rebuild_silver(srun)
    out["spark_silver_rebuild_s"] = time.perf_counter() - t
    t = time.perf_counter()
    spark_engine.build_gold(srun)
    out["spark_gold_materialise_s"] = time.perf_counter() - t
    run = staging.process_files(cfg, [Path(p) for p in last], move=False)       # one more batch
    assert run.ok
    shutil.rmtree(work / "spark_lake" / "staging", ignore_errors=True)
    srun = spark_engine.SparkRun(spark, cfg, lake, str(work / "spark_lake"))
    t = time.perf_counter()
    since, _ = spark_engine.update_silver(srun)
    out["spark_silver_incremental_s"] = time.perf_counter() - t
    out["incremental_since"] = since.isoformat() if since else "-"
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spark", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = parser.parse_args()
    from types import SimpleNamespace

    t = time.perf_counter()
    spark = spark_engine.session(SimpleNamespace(spark_master="local[*]", spark_driver_memory="2g", spark_jars=""),
                                 "nelo-bench", shuffle_partitions=4)
    spark.sparkContext.setLogLevel("ERROR")
    start_s = time.perf_counter() - t
    results = []
    try:
        for events in args.events:
            with tempfile.TemporaryDirectory(prefix="nelo-bench-spark-") as tmp:
                r = measure(events, Path(tmp), spark)
                results.append(r)
                print(json.dumps(r), flush=True)
    finally:
        spark.stop()
    write_section(Path(args.out), results, start_s)
    return 0


def write_section(path: Path, results: list[dict], start_s: float) -> None:
    cores = usable_cpus()
    lines = [BEGIN, "## Spark local mode beside DuckDB (`python -m bench.spark`)", "",
             f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; same machine; one run each; "
             f"Spark session start {start_s:.1f} s (JVM), not included below",
             f"- load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} ({cores} cores: above {cores}, "
             "others were running)", "",
             "| events | DuckDB Silver rebuild s | Spark Silver rebuild s | DuckDB Gold (18 views) s | Spark Gold (18 Parquet) s "
             "| Spark incremental (last 5%) s | DuckDB batch load + lake export s | DuckDB full lake export s |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['events']:,} | {r['duckdb_silver_rebuild_s']:.2f} | {r['spark_silver_rebuild_s']:.1f} | "
                     f"{r['duckdb_gold_materialise_s']:.2f} | {r['spark_gold_materialise_s']:.1f} | "
                     f"{r['spark_silver_incremental_s']:.1f} (from {r['incremental_since']}) | "
                     f"{r['duckdb_load_batch_incl_export_s']:.2f} | {r['duckdb_full_lake_export_s']:.2f} |")
    lines += ["", "Reading it: see README, \"When one machine is not enough\".", END]
    section = "\n".join(lines)
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
