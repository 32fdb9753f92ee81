"""One SQL source, two engines: the lint that keeps sql/silver and sql/gold transpilable to Spark,
the portable rewrites' meaning in DuckDB, and how parameters become literals. No Spark here
(tests/test_spark_engine.py runs the transpiled SQL)."""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import pytest
import sqlglot

from nelo_etl import portable, sql

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", portable.portable_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_silver_and_gold_file_is_portable(path: Path) -> None:
    problems = portable.lint(path.read_text(encoding="utf-8"))
    assert not problems, f"{path.relative_to(ROOT)} uses constructs that do not transpile to Spark:\n" + \
        "\n".join(problems)


def test_every_silver_model_and_gold_view_is_a_portable_file() -> None:
    from nelo_etl import gold, silver

    names = [p.stem for p in portable.portable_files()]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted([m.name for m in silver.MODELS] + [v.name for v in gold.views()])
    assert len(names) == 36                      # 16 Silver models, 20 Gold views


@pytest.mark.parametrize("bad, name", [
    ("SELECT epoch_us(event_ts) FROM t", "epoch_us"),
    ("SELECT EPOCH_MS(event_ts) FROM t", "epoch_ms"),
    ("SELECT a >= b - to_microseconds(5) FROM t", "to_microseconds"),
    ("SELECT isodow(d) FROM t", "isodow"),
    ("SELECT dayofweek(d) FROM t", "dayofweek"),
    ("SELECT len(codes) FROM t", "len"),
    ("SELECT NOT list_has_any(a, b) FROM t", "list_has_any"),
    ("SELECT d.day FROM bounds, generate_series(1, 3) AS d(day)", "generate_series in FROM"),
    ("SELECT * FROM t QUALIFY row_number() OVER (PARTITION BY k ORDER BY v) = 1", "QUALIFY on SELECT *"),
])
def test_the_lint_rejects_each_construct_with_its_reason(bad: str, name: str) -> None:
    problems = portable.lint(bad)
    assert len(problems) == 1 and problems[0].startswith(name + ":")
    assert "write" in problems[0] or "name the selected columns" in problems[0] or "instead" in problems[0]
    with pytest.raises(ValueError, match="not portable"):
        portable.to_spark(bad)


def test_the_lint_accepts_the_portable_spellings() -> None:
    good = ("SELECT array_length(codes), date_diff('microsecond', TIMESTAMP '1970-01-01', ts), "
            "array_length(array_intersect(a, b)) = 0, item_length(x) "
            "FROM (SELECT unnest(generate_series(1, 3)) AS day) AS d "
            "QUALIFY row_number() OVER (ORDER BY day) = 1")
    assert portable.lint(good) == []
    assert portable.lint("-- epoch_us( in a comment is fine\nSELECT 1") == []


def test_the_rewrites_mean_what_the_duckdb_functions_meant() -> None:
    con = duckdb.connect()
    # ISO day of week, before and after the reference Monday, over leap years
    assert con.execute("""
        SELECT count(*) FROM (SELECT unnest(generate_series(DATE '1996-02-20', DATE '2031-03-10', INTERVAL 1 DAY)) AS d)
        WHERE isodow(d) <> (date_diff('day', DATE '2000-01-03', CAST(d AS DATE)) % 7 + 7) % 7 + 1
    """).fetchall() == [(0,)]
    assert con.execute("""
        SELECT count(*) FROM (SELECT TIMESTAMP '2025-10-26 23:59:59.999999' + to_microseconds(k * 7777777) AS ts
                              FROM range(-5000, 5000) AS r(k))
        WHERE epoch_us(ts) <> date_diff('microsecond', TIMESTAMP '1970-01-01', ts)
    """).fetchall() == [(0,)]
    # the interval comparison: exactly n microseconds apart is still "within"
    assert con.execute("""
        SELECT bool_and((b >= a - to_microseconds(n)) = (date_diff('microsecond', b, a) <= n))
        FROM (SELECT TIMESTAMP '2025-01-01' + to_microseconds(k) AS a, TIMESTAMP '2025-01-01' AS b, 5 AS n
              FROM range(0, 12) AS r(k))
    """).fetchall() == [(True,)]
    assert con.execute("""
        SELECT bool_and(list_has_any(a, b) = (array_length(array_intersect(a, b)) > 0)), bool_and(len(a) = array_length(a))
        FROM (VALUES (['x', 'y'], ['y']), (['x'], ['z']), (['x'], []::VARCHAR[]), ([]::VARCHAR[], ['x'])) AS v(a, b)
    """).fetchall() == [(True, True)]


def test_parameters_become_literals_in_the_tree_not_the_text() -> None:
    nasty = "x' OR '1'='1"
    spark_sql = portable.to_spark("SELECT $name AS n, $count AS c, $rate AS r, $missing IS NULL AS m, $flag AS f",
                                  {"name": nasty, "count": 3, "rate": 0.1, "missing": None, "flag": True})
    tree = sqlglot.parse_one(spark_sql, read="spark")
    values = {e.alias: e.this for e in tree.expressions}
    assert values["n"].is_string and values["n"].this == nasty
    assert values["c"].sql("spark") == "CAST(3 AS BIGINT)"
    assert values["r"].sql("spark") == "CAST(0.1 AS DOUBLE)"
    assert "NULL IS NULL" in spark_sql and "TRUE AS f" in spark_sql
    with pytest.raises(KeyError, match="needs parameter 'absent'"):
        portable.to_spark("SELECT $absent", {})
    assert portable.literal(dt.date(2025, 1, 2)).sql("spark") == "CAST('2025-01-02' AS DATE)"


def test_make_timestamp_stays_a_plain_timestamp_in_spark() -> None:
    spark_sql = portable.to_spark("SELECT make_timestamp(us) AS ts FROM t")
    assert spark_sql == "SELECT CAST(TIMESTAMP_MICROS(us) AS TIMESTAMP_NTZ) AS ts FROM t"


def test_the_optimizer_is_never_used() -> None:
    # sqlglot's optimizer re-qualified the attribution's tie-break columns: silently wrong results
    for path in (ROOT / "nelo_etl").glob("*.py"):
        assert not re.search(r"sqlglot\.optimizer|from sqlglot import .*optimizer", path.read_text(encoding="utf-8")), path


def test_the_pinned_sqlglot_is_the_one_installed() -> None:
    pinned = re.search(r"^sqlglot==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned and pinned.group(1) == portable.SQLGLOT_VERSION == sqlglot.__version__
    assert sql.strip_comments("SELECT 1 -- x") == "SELECT 1 "


def test_division_means_what_it_means_in_duckdb_on_every_engine() -> None:
    """DuckDB's / divides as DOUBLE; Spark would divide DECIMAL money as DECIMAL (rates rounded to
    six places) and Trino integers as integers. The transpile casts both operands to DOUBLE."""
    spark = portable.to_spark("SELECT (new_price - old_price) / old_price AS delta_pct, a / b FROM t")
    assert "CAST((new_price - old_price) AS DOUBLE) / CAST(old_price AS DOUBLE)" in spark
    assert "CAST(a AS DOUBLE) / CAST(b AS DOUBLE)" in spark
    athena = portable.to_athena("SELECT sum(orders) / count(*) AS aov FROM t")
    assert "CAST(SUM(orders) AS DOUBLE) / CAST(COUNT(*) AS DOUBLE)" in athena
