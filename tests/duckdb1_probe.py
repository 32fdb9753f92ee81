"""Run under a DuckDB 1.x interpreter (not the project's venv): open each published file the
way an analyst does and print, as JSON, every Gold view's (or team table's) rows and the
comments the file carries. tests/test_analyst_access.py compares it with DuckDB 2.0's reading.

usage: python duckdb1_probe.py FILE [FILE ...]
"""
import json
import sys

import duckdb

from nelo_etl.analyst import connect


def main(paths):
    out = {"duckdb_version": duckdb.__version__, "files": {}}
    for path in paths:
        con = duckdb.connect(path, read_only=True)      # the README's plain way
        names = [r[0] for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal UNION ALL "
            "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'vw_%' OR table_name LIKE 'gold_%'"
        ).fetchall()]
        rows = {n: [[str(v) for v in r] for r in con.execute(f"SELECT * FROM {n} ORDER BY ALL").fetchall()]
                for n in sorted(names)}
        comments = dict(con.execute(
            "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal UNION ALL "
            "SELECT table_name, comment FROM duckdb_tables()").fetchall())
        con.close()
        helper = connect(path)                          # nelo_etl.analyst: a fresh instance
        helper_counts = {n: helper.execute(f"SELECT count(*) FROM {n}").fetchall()[0][0] for n in sorted(names)}
        helper.close()
        out["files"][path] = {"rows": rows, "comments": comments, "helper_counts": helper_counts}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
