#!/usr/bin/env python3
"""Refresh the Gold views and publish the analysts' read-only files (analytics.duckdb and one
file per team); or print the business report, or write it as a self-contained HTML dashboard.

After every committed batch this runs by itself (process_staging.py and etl.py call it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb

from nelo_etl import cli, dashboard, gold, warehouse
from nelo_etl.config import Config
from nelo_etl.db import connect, ensure_schema
from nelo_etl.upgrade import ensure_current


def main(args: argparse.Namespace, cfg: Config) -> int:
    if args.dry_run:
        for view in gold.views():
            print(f"sql/gold/{view.name}.sql  ->  view {view.name} ({len(view.columns)} documented columns)")
        print(f"would publish {gold.analytics_path(cfg)}")
        for team in sorted(cfg.teams):
            print(f"would publish {gold.team_path(cfg, team)} ({len(cfg.teams[team].views)} views)")
        return cli.EXIT_OK
    if args.report and args.format == "html" and not args.out:
        build_parser().error("--format html writes DIR/index.html: give --out DIR")      # exit 2
    if args.engine == "spark":
        from nelo_etl import spark_engine

        print(spark_engine.run_gold(cfg))
        return cli.EXIT_OK
    if args.report:
        if args.format == "csv" and not args.out:
            print("usage error: --format csv writes one file per table: give --out DIR", file=sys.stderr)
            return cli.EXIT_CONFIG
        if args.limit < 0:
            print("usage error: --limit must be 0 (all rows) or more", file=sys.stderr)
            return cli.EXIT_CONFIG
        source = gold.analytics_path(cfg)
        if not source.exists():
            raise cli.Failure(f"no analytics file at {source} yet: load a batch first (process_staging.py)")
        if args.format == "html":
            page = dashboard.write_from_file(source, Path(args.out), gold.dashboard_cache(cfg))
            print(f"dashboard written to {page}")
            return cli.EXIT_OK
        con = duckdb.connect(str(source), read_only=True)
        try:
            sections = gold.run_report(con)
        finally:
            con.close()
        if args.format == "csv":
            files = gold.write_csv_report(sections, Path(args.out))
            print(f"report written to {args.out}: {len(files)} CSV files, one per table")
            return cli.EXIT_OK
        text = gold.format_report(sections, args.format, args.limit or None)
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            target = out / f"report.{ {'markdown': 'md', 'terminal': 'txt'}.get(args.format, args.format) }"
            target.write_text(text, encoding="utf-8")
            print(f"report written to {target}")
        else:
            sys.stdout.write(text)
        return cli.EXIT_OK
    warehouse.check_present(cfg)
    ensure_current(cfg)
    con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, memory_limit=cfg.duckdb_memory_limit)
    try:
        ensure_schema(con)
        if "fct_events" not in {r[0] for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}:
            raise cli.Failure(f"the warehouse {cfg.database_path} has no Silver tables yet: load a batch first "
                              f"(./process_staging.py or ./etl.py); there is nothing to publish")
        timings = gold.refresh(cfg, con)
    finally:
        con.close()
    print(f"gold: {len(gold.views())} views refreshed in {timings['gold_views_s']:.2f} s; "
          f"{gold.analytics_path(cfg)} and {len(cfg.teams)} team file(s) published in {timings['publish_s']:.2f} s")
    return cli.EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("gold_transforms.py", __doc__, [
        "./gold_transforms.py                      # refresh views, publish warehouse/analytics.duckdb and team files",
        "./gold_transforms.py --report             # every business answer, as terminal tables (20 rows each)",
        "./gold_transforms.py --report --limit 0   # every row",
        "./gold_transforms.py --report --format csv --out reports/   # one CSV per table, plain numbers",
        "./gold_transforms.py --report --format markdown --out reports/",
        "./gold_transforms.py --report --format html --out dashboard/   # dashboard/index.html, no network needed",
        "./gold_transforms.py --engine spark       # Gold views as Parquet in the lake, computed by Spark",
    ])
    parser.add_argument("--report", action="store_true", help="print the answer to every business question")
    parser.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb",
                        help="spark: materialise every Gold view as <lakehouse_path>/gold/<view>/ (Parquet)")
    parser.add_argument("--format", choices=["terminal", "markdown", "csv", "json", "html"], default="terminal",
                        help="terminal or markdown tables, json, csv (one file per table; needs --out), "
                             "or html: the dashboard, DIR/index.html (needs --out)")
    parser.add_argument("--out", metavar="DIR", help="write the report into DIR instead of stdout")
    parser.add_argument("--limit", type=int, default=20, metavar="N",
                        help="terminal and markdown: rows shown per table, then 'n more rows' (0: all; default 20)")
    return parser


if __name__ == "__main__":
    sys.exit(cli.run(main, build_parser(), log_name="gold_transforms"))
