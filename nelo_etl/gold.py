"""The Gold layer: views for analysts (sql/gold/), their documentation, the read-only analytics
file analysts connect to, and the business report.

Analysts never open the warehouse itself: DuckDB lets no other process open a file that one
process holds read-write, and the job must write every 15 minutes. After each committed run the
job publishes ``analytics.duckdb`` beside the warehouse: the Silver tables, the ledger and the Gold
views, copied from a private base copy that each publication brings up to date with only what
the loads rewrote (``publish_journal``), into a temp file swapped in by atomic rename. An
analyst's open connection keeps the snapshot it opened (the old inode) and sees new data on
reconnect; the writer never waits for them.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import duckdb

from . import silver, sql
from .config import Config
from .db import transaction
from .ingest import fsync_dir

log = logging.getLogger("nelo_etl.gold")

GOLD_DIR = sql.SQL_DIR / "gold"
ANALYTICS_NAME = "analytics.duckdb"
#: The job's private, incrementally kept copy the analytics file is copied from.
BASE_NAME = ".analytics_base.duckdb"
#: What analysts get besides Silver: the ledger (freshness) and dead letters (without raw bodies).
EXTRA_TABLES = {"etl_batches": "SELECT * FROM etl_batches",
                "dead_letter_messages": "SELECT * EXCLUDE (raw_body) FROM dead_letter_messages"}


@dataclass(frozen=True)
class View:
    name: str
    select: str
    description: str
    columns: dict[str, str]


def views() -> list[View]:
    """Every sql/gold/*.sql with its header: the first line describes the view, the
    ``-- columns:`` block each column."""
    out = []
    for path in sorted(GOLD_DIR.glob("*.sql")):
        text = sql.read_sql(path)
        header = [l[2:].strip() for l in text.splitlines() if l.startswith("--")]
        description = header[0].split(":", 1)[1].strip() if header else path.stem
        columns: dict[str, str] = {}
        in_columns = False
        for line in text.splitlines():
            if line.strip() == "-- columns:":
                in_columns = True
                continue
            if in_columns:
                m = re.match(r"^--\s+(\w+):\s*(.+)$", line)
                if not m:
                    break
                columns[m.group(1)] = m.group(2).strip()
        out.append(View(path.stem, text, description, columns))
    return out


def _quote(text: str) -> str:
    # comments come from our own SQL files, never from data or config
    return "'" + text.replace("'", "''") + "'"


def create_views(con: duckdb.DuckDBPyConnection) -> int:
    """CREATE OR REPLACE every Gold view and COMMENT ON it and its columns (idempotent)."""
    for view in views():
        con.execute(f"CREATE OR REPLACE VIEW {view.name} AS {sql.strip_comments(view.select)}").fetchall()
        con.execute(f"COMMENT ON VIEW {view.name} IS {_quote(view.description)}").fetchall()
        for column, text in view.columns.items():
            con.execute(f"COMMENT ON COLUMN {view.name}.{column} IS {_quote(text)}").fetchall()
    return len(views())


def analytics_path(cfg: Config) -> Path:
    return Path(cfg.database_path).with_name(ANALYTICS_NAME)


def base_path(cfg: Config) -> Path:
    """The job's own copy of what analysts get, kept up to date incrementally; never opened by
    anyone else, so the job can always write it."""
    return Path(cfg.database_path).with_name(BASE_NAME)


def publish(cfg: Config, con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Bring the base copy of Silver up to date, then publish a copy of it with the ledger, the
    dead letters and the views as the analytics file (temp file, atomic rename).

    The base copy takes only the rows the loads since the last publication rewrote (the keys
    ``publish_journal`` names), so its cost follows the batch, not the warehouse; a missing,
    unreadable or differently shaped base, or a ``--rebuild``, copies everything once. What still
    grows with the warehouse is the final file copy, at disk speed."""
    target = analytics_path(cfg)
    base = base_path(cfg)
    stats = update_base(con, base)
    tmp = target.with_name(f".{ANALYTICS_NAME}.{os.getpid()}.tmp")
    for leftover in (tmp, Path(str(tmp) + ".wal")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(base, tmp)
    if Path(str(base) + ".wal").exists():         # normally checkpointed away; copied if not
        shutil.copyfile(Path(str(base) + ".wal"), Path(str(tmp) + ".wal"))
    con.execute("ATTACH $path AS publish_db", {"path": str(tmp)}).fetchall()
    try:
        con.execute("DROP TABLE publish_db._publish_state").fetchall()
        for name, select in EXTRA_TABLES.items():
            con.execute(f"CREATE TABLE publish_db.{name} AS {select}").fetchall()
    finally:
        con.execute("DETACH publish_db").fetchall()
    pub = duckdb.connect(str(tmp))
    try:
        create_views(pub)
        pub.execute("CHECKPOINT").fetchall()
    finally:
        pub.close()
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o440)            # read-only, for the owner and the analysts' group
    os.replace(tmp, target)
    fsync_dir(target.parent)
    return stats


def update_base(con: duckdb.DuckDBPyConnection, base: Path) -> dict[str, Any]:
    """Apply the journal to the base copy (one transaction on the base file), then trim the
    journal. Returns {"publish_mode": "full" | "incremental", "publish_keys": keys applied}."""
    tables = [m.name for m in silver.MODELS]
    upto = con.execute("SELECT coalesce(max(journal_id), 0) FROM publish_journal").fetchall()[0][0]
    try:
        con.execute("ATTACH $path AS pub_base", {"path": str(base)}).fetchall()
    except duckdb.Error:
        log.warning("the publication base %s is unreadable; rebuilding it", base)
        for leftover in (base, Path(str(base) + ".wal")):
            leftover.unlink(missing_ok=True)
        con.execute("ATTACH $path AS pub_base", {"path": str(base)}).fetchall()
    try:
        done = _base_state(con, tables)
        pending = [] if done is None else con.execute(
            "SELECT table_name, max(key_json = '*') AS whole, count(*) FROM publish_journal "
            "WHERE journal_id > $done AND journal_id <= $upto GROUP BY table_name",
            {"done": done, "upto": upto}).fetchall()
        full = done is None
        with transaction(con):           # writes the base only: DuckDB writes one database a transaction
            if full:
                for name in tables:
                    con.execute(f"CREATE OR REPLACE TABLE pub_base.{name} AS SELECT * FROM main.{name}").fetchall()
                con.execute("CREATE OR REPLACE TABLE pub_base._publish_state (journal_id BIGINT, tables VARCHAR)").fetchall()
                con.execute("INSERT INTO pub_base._publish_state VALUES (0, $t)", {"t": ",".join(tables)}).fetchall()
            for name, whole, _count in pending:
                if whole:
                    con.execute(f"DELETE FROM pub_base.{name}").fetchall()
                    con.execute(f"INSERT INTO pub_base.{name} SELECT * FROM main.{name}").fetchall()
                else:
                    _apply_keys(con, name, done, upto)
            con.execute("UPDATE pub_base._publish_state SET journal_id = $upto", {"upto": upto}).fetchall()
        con.execute("CHECKPOINT pub_base").fetchall()     # the file copy below must hold everything
    finally:
        con.execute("DETACH pub_base").fetchall()
    # the base holds everything up to `upto` now; a crash before this delete only leaves rows
    # the next publication skips (they are at or below the base's journal_id)
    con.execute("DELETE FROM publish_journal WHERE journal_id <= $upto", {"upto": upto}).fetchall()
    return {"publish_mode": "full" if full else "incremental",
            "publish_keys": sum(c for _, _, c in pending)}


def _base_state(con: duckdb.DuckDBPyConnection, tables: list[str]) -> int | None:
    """The journal id the base copy is complete up to; None when it must be built whole (new,
    from another version of the Silver models, or columns that no longer match)."""
    try:
        (state,) = con.execute("SELECT journal_id, tables FROM pub_base._publish_state").fetchall()
    except (duckdb.Error, ValueError):
        return None
    if state[1] != ",".join(tables):
        return None
    shapes = con.execute(
        "SELECT database_name = 'pub_base', table_name, list(column_name || ' ' || data_type ORDER BY column_index) "
        "FROM duckdb_columns() WHERE database_name IN ('pub_base', current_database()) AND schema_name = 'main' "
        "GROUP BY ALL").fetchall()
    mine = {t: cols for is_base, t, cols in shapes if not is_base and t in tables}
    theirs = {t: cols for is_base, t, cols in shapes if is_base and t in tables}
    return state[0] if mine == theirs else None


def _apply_keys(con: duckdb.DuckDBPyConnection, name: str, done: int, upto: int) -> None:
    """Replace in the base the rows of ``name`` whose key the journal names (delete, then copy)."""
    columns = dict(con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = $t", {"t": name}).fetchall())
    keys = json.loads(con.execute(
        "SELECT key_json FROM publish_journal WHERE table_name = $t AND journal_id > $done AND journal_id <= $upto "
        "LIMIT 1", {"t": name, "done": done, "upto": upto}).fetchall()[0][0])
    # the JSON structure comes from our own catalog (column names and types), never from data
    structure = json.dumps({k: columns[k] for k in keys})
    # DISTINCT around the unnest, not on it: DuckDB 2.0's SELECT DISTINCT unnest(<struct>) dedupes on
    # the struct's first field only, which would drop keys
    con.execute(f"CREATE OR REPLACE TEMP TABLE _publish_keys AS SELECT DISTINCT * FROM (SELECT unnest(json_transform("
                f"key_json, {_quote(structure)})) FROM publish_journal WHERE table_name = $t AND journal_id > $done "
                "AND journal_id <= $upto)", {"t": name, "done": done, "upto": upto}).fetchall()
    target = next(m.incremental for m in silver.MODELS if m.name == name)
    match = " AND ".join(f"x.{k} IS NOT DISTINCT FROM k.{k}" for k in target.key or keys)
    if target.mode == "overwrite_from" and target.since:
        # only the key's rows from where the load replaced them (several loads: any of them)
        match += f" AND x.{target.since[0]} >= k.{target.since[1]}"
    con.execute(f"DELETE FROM pub_base.{name} AS x WHERE EXISTS (SELECT 1 FROM _publish_keys AS k WHERE {match})").fetchall()
    con.execute(f"INSERT INTO pub_base.{name} SELECT * FROM main.{name} AS x "
                f"WHERE EXISTS (SELECT 1 FROM _publish_keys AS k WHERE {match})").fetchall()
    con.execute("DROP TABLE _publish_keys").fetchall()


class DashboardFailed(Exception):
    """The analytics file is published, but the dashboard could not be rebuilt (the old page stays)."""


def dashboard_cache(cfg: Config) -> Path:
    """Where the dashboard keeps its JavaScript bundle between runs (it takes seconds to make)."""
    return Path(cfg.work_dir) / "dashboard"


def refresh(cfg: Config, con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """After committed batches: Gold views in the warehouse, then the analytics file, then (when
    ``report_dir`` is set) the dashboard from the analytics file. Timed."""
    t0 = time.monotonic()
    create_views(con)
    t1 = time.monotonic()
    stats = publish(cfg, con)
    seconds = time.monotonic() - t1
    log.info("analytics file published (%s, %d journal keys) in %.2f s", stats["publish_mode"],
             stats["publish_keys"], seconds)
    timings = {"gold_views_s": t1 - t0, "publish_s": seconds}
    if cfg.report_dir is not None:
        from . import dashboard

        t2 = time.monotonic()
        try:
            dashboard.write_from_file(analytics_path(cfg), cfg.report_dir, dashboard_cache(cfg))
        except Exception as exc:  # noqa: BLE001 - the data is committed and published; say so
            log.exception("dashboard failed")
            raise DashboardFailed(f"analytics file published, but the dashboard in {cfg.report_dir} was not "
                                  f"rebuilt ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"
                                  ) from exc
        timings["dashboard_s"] = time.monotonic() - t2
    return timings


# --------------------------------------------------------------------------------------------
# the report

REPORT: list[tuple[str, str]] = [
    ("Funnel and bounce by platform (all days)",
     "SELECT platform, sum(sessions) AS sessions, sum(bounced_sessions) / sum(sessions) AS bounce_rate, "
     "sum(sessions_with_product_view) AS product_view_sessions, sum(sessions_with_checkout) AS checkout_sessions, "
     "sum(sessions_with_purchase) AS purchase_sessions, sum(orders) AS orders, sum(revenue) AS revenue, "
     "sum(revenue_usd) AS revenue_usd, sum(revenue) / nullif(sum(orders), 0) AS aov "
     "FROM vw_platform_daily_performance_sessions GROUP BY platform ORDER BY platform"),
    ("Daily funnel, drop-offs and conversion",
     "SELECT session_date, platform, sessions, bounce_rate, view_to_checkout_rate, checkout_to_purchase_rate, "
     "view_to_purchase_rate, orders, aov_usd, installment_adoption_rate "
     "FROM vw_platform_daily_performance_sessions ORDER BY session_date, platform"),
    ("AOV of cart abandoners vs the rest",
     "SELECT * FROM vw_abandoned_cart_aov ORDER BY platform, cohort"),
    ("Targeting list: checkout drop-offs with no purchase since (top 20 by cart value)",
     "SELECT user_id, platform, last_abandon_ts, cart_value_usd, cart_products "
     "FROM gold_segment_abandon_no_purchase_since_v ORDER BY cart_value_usd DESC NULLS LAST, user_id LIMIT 20"),
    ("Segments: sizes",
     "SELECT 'bounce' AS segment, count(*) AS sessions FROM gold_segment_bounce_v UNION ALL "
     "SELECT 'checkout_abandon', count(*) FROM gold_segment_checkout_abandon_v UNION ALL "
     "SELECT 'high_value_abandon', count(*) FROM gold_segment_high_value_abandon_v UNION ALL "
     "SELECT 'abandon_then_bought_different', count(*) FROM gold_segment_abandon_then_bought_different_v UNION ALL "
     "SELECT 'abandon_no_purchase_since (users)', count(*) FROM gold_segment_abandon_no_purchase_since_v"),
    ("Lists compared (all days)",
     "SELECT platform, item_list_id, any_value(item_list_name) AS item_list_name, sum(list_impressions) AS impressions, "
     "sum(sessions_exposed) AS sessions_exposed, sum(sessions_with_click) / sum(sessions_exposed) AS ctr_sessions, "
     "sum(sessions_with_purchase) / sum(sessions_exposed) AS purchase_rate_on_exposure, "
     "sum(attributed_revenue_usd) AS attributed_revenue_usd "
     "FROM vw_list_daily_performance_sessions GROUP BY ALL ORDER BY platform, item_list_id"),
    ("Campaigns compared (all days)",
     "SELECT campaign_id, platform, sum(sessions_exposed) AS sessions_exposed, "
     "sum(sessions_with_purchase) / sum(sessions_exposed) AS session_conversion_rate, sum(orders) AS orders, "
     "sum(revenue_usd) AS revenue_usd, sum(discount_value) AS discount_value "
     "FROM vw_campaign_performance_daily GROUP BY ALL ORDER BY campaign_id, platform"),
    ("Growth engagement by campaign and list (top 20 by exposure)",
     "SELECT campaign_id, item_list_id, platform, sum(sessions_exposed) AS sessions_exposed, "
     "sum(sessions_with_click) AS sessions_with_click, sum(attributed_revenue_usd) AS attributed_revenue_usd "
     "FROM vw_growth_engagement_daily GROUP BY ALL ORDER BY sessions_exposed DESC, campaign_id, item_list_id LIMIT 20"),
    ("Experiments vs AOV",
     "SELECT * FROM vw_experiment_performance ORDER BY experiment_id, variant, platform"),
    ("Coupons vs AOV",
     "SELECT * FROM vw_coupon_impact ORDER BY platform, has_coupon"),
    ("Price changes during current campaigns",
     "SELECT campaign_id, item_id, change_ts, old_price, new_price, delta_pct FROM "
     "vw_gold_product_campaign_price_change_events WHERE is_current_campaign ORDER BY campaign_id, item_id, change_ts"),
    ("Current campaigns: product status on the as-of date (top 20)",
     "SELECT * FROM vw_gold_product_campaign_current_status "
     "ORDER BY has_discount_on_as_of_date DESC, max_discount_rate_on_as_of_date DESC NULLS LAST, campaign_id, item_id LIMIT 20"),
    ("Discounts by day",
     "SELECT * FROM vw_daily_purchase_discounts ORDER BY order_date, platform"),
    ("Discounts by product and campaign (top 20 by discount)",
     "SELECT * FROM vw_product_campaign_discounts ORDER BY discount_value DESC, item_id, campaign_id LIMIT 20"),
    ("Products: views to purchases (top 20 by revenue)",
     "SELECT item_id, sum(views) AS views, sum(sessions_viewed) AS sessions_viewed, "
     "sum(sessions_viewed_and_purchased) / nullif(sum(sessions_viewed), 0) AS view_to_purchase_rate, "
     "sum(units) AS units, sum(revenue_usd) AS revenue_usd FROM vw_product_daily_performance "
     "GROUP BY item_id ORDER BY revenue_usd DESC, item_id LIMIT 20"),
    ("Installment adoption by day",
     "SELECT * FROM vw_installment_adoption_daily ORDER BY order_date, platform"),
]


def run_report(con: duckdb.DuckDBPyConnection) -> list[tuple[str, list[str], list[tuple]]]:
    out = []
    for title, query in REPORT:
        cur = con.execute(query)
        rows = cur.fetchall()
        out.append((title, [d[0] for d in cur.description], rows))
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def format_report(sections: Sequence[tuple[str, list[str], list[tuple]]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([{"title": t, "rows": [dict(zip(c, r)) for r in rows]} for t, c, rows in sections],
                          default=str, indent=1)
    parts = []
    for title, columns, rows in sections:
        cells = [[_cell(v) for v in row] for row in rows]
        if fmt == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow(columns)
            writer.writerows(cells)
            parts.append(f"# {title}\n{buf.getvalue()}")
        elif fmt == "markdown":
            lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
            parts.append("\n".join(lines) + ("\n\n_(no rows)_" if not rows else ""))
        else:
            widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
            line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
            body = ["  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)) for r in cells]
            parts.append("\n".join([f"== {title} ==", line, "-" * len(line)] + (body or ["(no rows)"])))
    return "\n\n".join(parts) + "\n"


def _numeric(text: str) -> bool:
    return bool(re.fullmatch(r"-?[\d,]+(\.\d+)?", text))
