#!/usr/bin/env python3
"""Build the Silver star schema. Per batch it runs inside process_staging.py's transaction; this
script rebuilds every Silver table from stg_events, or lists the SQL files in run order."""
from __future__ import annotations

import argparse
import sys
import time

from nelo_etl import cli, silver, sql
from nelo_etl.config import Config
from nelo_etl.db import connect, transaction
from nelo_etl.upgrade import ensure_current, rebuild_silver


def main(args: argparse.Namespace, cfg: Config) -> int:
    if args.engine == "spark" and not args.dry_run:
        from nelo_etl import spark_engine

        print(spark_engine.run_silver(cfg, rebuild=args.rebuild))
        return cli.EXIT_OK
    if args.dry_run or not args.rebuild:
        for model in silver.MODELS:
            print(f"{model.path.relative_to(sql.SQL_DIR.parent)}  ->  {model.name} "
                  f"({model.incremental.mode}{' by ' + ', '.join(model.incremental.key) if model.incremental.key else ''})")
        for check in sql.check_files():
            print(f"{check.relative_to(sql.SQL_DIR.parent)}  (data check)")
        if not args.rebuild:
            print("nothing rebuilt: per-batch Silver runs inside process_staging.py; --rebuild to rebuild all")
        return cli.EXIT_OK
    t0 = time.monotonic()
    upgraded = ensure_current(cfg)
    if upgraded and upgraded.rebuilt:    # the upgrade was itself a rebuild (a stamp alone is only logged)
        print(upgraded.line)
        return cli.EXIT_OK
    con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, memory_limit=cfg.duckdb_memory_limit)
    try:
        with transaction(con):
            # dropped and recreated, not emptied: each table takes the current SELECT's shape
            written = rebuild_silver(con, cfg)
            sql.run_checks(con, silver.model_params(cfg, {"load_id": None, "batch_id": None}))
    finally:
        con.close()
    print("rebuilt " + ", ".join(f"{k}={v}" for k, v in written.items()) + f" in {time.monotonic() - t0:.1f} s")
    if cfg.lakehouse_path:
        # a rebuild rewrites history without a new load: the lake checks every partition
        from nelo_etl import lakehouse

        con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, read_only=True)
        try:
            print(lakehouse.export(con, lakehouse.lake_of(cfg), cfg.work_dir, full=True).line())
        finally:
            con.close()
    return cli.EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("silver_transforms.py", __doc__, [
        "./silver_transforms.py --dry-run      # the SQL files in run order",
        "./silver_transforms.py --rebuild      # every Silver table from stg_events, one transaction",
        "./silver_transforms.py --engine spark --rebuild   # the same models on Spark, lake in and out",
        "./silver_transforms.py --engine spark             # Spark: rewrite the partitions new staged events change",
    ])
    parser.add_argument("--rebuild", action="store_true", help="rebuild every Silver table from stg_events")
    parser.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb",
                        help="duckdb: the warehouse (default); spark: the lakehouse's staged events in, "
                             "its Silver tables out (spark_master in the config)")
    return parser


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser(), log_name="silver_transforms"))
