#!/usr/bin/env python3
"""Refresh the Gold views and publish the analysts' read-only file; or print the business report.

After every committed batch this runs by itself (process_staging.py and etl.py call it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

from nelo_etl import cli, gold
from nelo_etl.config import Config
from nelo_etl.db import connect, ensure_schema


def main(args: argparse.Namespace, cfg: Config) -> int:
    if args.dry_run:
        for view in gold.views():
            print(f"sql/gold/{view.name}.sql  ->  view {view.name} ({len(view.columns)} documented columns)")
        print(f"would publish {gold.analytics_path(cfg)}")
        return cli.EXIT_OK
    if args.engine == "spark":
        from nelo_etl import spark_engine

        print(spark_engine.run_gold(cfg))
        return cli.EXIT_OK
    if args.report:
        source = gold.analytics_path(cfg)
        if not source.exists():
            raise cli.Failure(f"no analytics file at {source} yet: load a batch first (process_staging.py)")
        con = duckdb.connect(str(source), read_only=True)
        try:
            sections = gold.run_report(con)
        finally:
            con.close()
        text = gold.format_report(sections, args.format)
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            target = out / f"report.{ {'markdown': 'md', 'terminal': 'txt'}.get(args.format, args.format) }"
            target.write_text(text, encoding="utf-8")
            print(f"report written to {target}")
        else:
            sys.stdout.write(text)
        return cli.EXIT_OK
    con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, memory_limit=cfg.duckdb_memory_limit)
    try:
        ensure_schema(con)
        timings = gold.refresh(cfg, con)
    finally:
        con.close()
    print(f"gold: {len(gold.views())} views refreshed in {timings['gold_views_s']:.2f} s; "
          f"{gold.analytics_path(cfg)} published in {timings['publish_s']:.2f} s")
    return cli.EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("gold_transforms.py", __doc__.strip().splitlines()[0], [
        "./gold_transforms.py                      # refresh views, publish warehouse/analytics.duckdb",
        "./gold_transforms.py --report             # every business answer, as terminal tables",
        "./gold_transforms.py --report --format markdown --out reports/",
        "./gold_transforms.py --engine spark       # Gold views as Parquet in the lake, computed by Spark",
    ])
    parser.add_argument("--report", action="store_true", help="print the answer to every business question")
    parser.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb",
                        help="spark: materialise every Gold view as <lakehouse_path>/gold/<view>/ (Parquet)")
    parser.add_argument("--format", choices=["terminal", "markdown", "csv", "json"], default="terminal")
    parser.add_argument("--out", metavar="DIR", help="write the report into DIR instead of stdout")
    return parser


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser(), log_name="gold_transforms"))
