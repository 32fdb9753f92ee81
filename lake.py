#!/usr/bin/env python3
"""The lakehouse: export the warehouse to it, write a DuckDB file of views over it, or write the
Athena/Glue DDL for it. (The export also runs by itself after every committed run.)"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nelo_etl import cli, lakehouse, lakequery
from nelo_etl.config import Config
from nelo_etl.db import connect


def main(args: argparse.Namespace, cfg: Config) -> int:
    if not cfg.lakehouse_path:
        raise cli.Failure("no lake: lakehouse_path is null in the config")
    lake = lakehouse.lake_of(cfg)
    if args.dry_run:
        for t in lakehouse.TABLES:
            print(f"{t.name}  ->  {lake.uri_of(t.folder)}/ "
                  f"({'partitioned by ' + lakehouse.PARTITION if t.date_expr else 'one file'})")
        return cli.EXIT_OK
    if args.command == "export":
        con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, read_only=True,
                      memory_limit=cfg.duckdb_memory_limit)
        try:
            result = lakehouse.export(con, lake, Path(cfg.work_dir), full=args.full)
        finally:
            con.close()
        print(result.line())
    elif args.command == "views":
        made = lakequery.write_views_file(lake, Path(args.out))
        print(f"{args.out}: {len(made)} views over {lake.uri}")
    elif args.command == "athena-ddl":
        location = args.location or lake.uri
        if not location.startswith("s3://"):
            raise cli.Failure(f"Athena reads S3: give --location s3://bucket/prefix (the lake is {lake.uri})")
        con = connect(cfg.database_path, cfg.db_lock_timeout_seconds, read_only=True)
        try:
            text = lakequery.athena_ddl(con, location, args.database)
        finally:
            con.close()
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{args.out}: Athena DDL for {location} (database {args.database})")
    return cli.EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser("lake.py", __doc__.strip().splitlines()[0], [
        "./lake.py export                           # bring the lake in line with the warehouse",
        "./lake.py export --full                    # check every partition (after restoring a lake)",
        "./lake.py views --out warehouse/lake.duckdb # DuckDB views over the lake (Silver and Gold)",
        "./lake.py athena-ddl --location s3://nelo-lake/prod --out athena.sql",
        "./lake.py export --dry-run                 # where each table goes",
    ])
    parser.add_argument("command", choices=["export", "views", "athena-ddl"])
    parser.add_argument("--out", default=None, help="views: the DuckDB file; athena-ddl: the SQL file")
    parser.add_argument("--location", help="athena-ddl: the lake's s3:// URI (default: lakehouse_path)")
    parser.add_argument("--database", default="nelo_growth", help="athena-ddl: the Glue database")
    parser.add_argument("--full", action="store_true",
                        help="export: check every partition, not only those the loads since the last export can change")
    return parser


if __name__ == "__main__":
    _parser = build_parser()
    _args = _parser.parse_known_args()[0]
    if _args.command in ("views", "athena-ddl") and not _args.out and "--dry-run" not in sys.argv:
        _parser.error(f"{_args.command} needs --out")
    sys.exit(cli.run(main, _parser, log_name="lake"))
