"""The analysts' dashboard: one self-contained HTML page with a chart or a table per business
question, made from the published analytics file.

Charts are Vega-Lite specifications written with Altair; the Vega, Vega-Lite and vega-embed
JavaScript comes from ``vl-convert-python``'s bundle and is inlined once for every chart, so the
page needs no network at all (it opens from a file or an e-mail attachment) and stays about 1 MB.
The numbers are embedded once, as JSON (``<script type="application/json" id="dashboard-data">``):
each chart reads its view's rows from there by name, so what a chart shows is exactly what the
view returned, and a test can read the same numbers back from the page. After rendering, a small
script writes ``#dashboard-status`` (each chart's size and row count, any error) for the browser test.

``write`` replaces ``DIR/index.html`` atomically (temp file, fsync, rename): a reader sees the old
page or the new one, never half of either.
"""
from __future__ import annotations

import datetime as dt
import decimal
import html
import json
import logging
import math
import os
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import altair as alt
import duckdb

log = logging.getLogger("nelo_etl.dashboard")

INDEX = "index.html"
#: The Vega-Lite major.minor the specifications are written for (Altair's schema).
VL_VERSION = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])


# --------------------------------------------------------------------------------------------
# the data: one dataset per view, rows exactly as the view returns them (selected columns)

#: Days of the daily charts: the last TREND_DAYS UTC dates up to the as-of date. A year of history
#: would otherwise put some 4,000 rows a day-keyed view into the page; 90 days keep it about 1 MB.
TREND_DAYS = 90

_SINCE = "(SELECT CAST(max(event_ts) AS DATE) - CAST($days - 1 AS INTEGER) FROM fct_events)"

#: dataset name -> the query. Every dataset is a Gold view's rows (some columns; the daily ones
#: for the last TREND_DAYS days), or the all-time sums of a view's rows (lists, campaigns), so
#: the page's numbers are the views' numbers. Bound parameter: $days.
DATASETS: dict[str, str] = {
    "platform_daily": "SELECT session_date, platform, sessions, bounced_sessions, bounce_rate, "
                      "sessions_with_product_view, sessions_with_checkout, sessions_with_purchase, "
                      "view_to_checkout_rate, checkout_to_purchase_rate, view_to_purchase_rate, orders, aov_usd "
                      f"FROM vw_platform_daily_performance_sessions WHERE session_date >= {_SINCE} "
                      "ORDER BY session_date, platform",
    "list_totals": "SELECT platform, item_list_id, max(item_list_name) AS item_list_name, "
                   "sum(sessions_exposed) AS sessions_exposed, sum(sessions_with_click) AS sessions_with_click, "
                   "sum(sessions_with_purchase) AS sessions_with_purchase, "
                   "sum(CAST(attributed_revenue_usd AS DECIMAL(38, 6)))::DOUBLE AS attributed_revenue_usd "
                   "FROM vw_list_daily_performance_sessions GROUP BY platform, item_list_id "
                   "ORDER BY platform, item_list_id",
    "campaign_totals": "SELECT campaign_id, sum(sessions_exposed) AS sessions_exposed, "
                       "sum(sessions_with_purchase) AS sessions_with_purchase, sum(orders) AS orders, "
                       "sum(CAST(revenue_usd AS DECIMAL(38, 6)))::DOUBLE AS revenue_usd, "
                       "sum(CAST(discount_value AS DECIMAL(38, 6)))::DOUBLE AS discount_value "
                       "FROM vw_campaign_performance_daily GROUP BY campaign_id ORDER BY campaign_id",
    "coupon_impact": "SELECT platform, has_coupon, orders, aov, aov_usd FROM vw_coupon_impact "
                     "ORDER BY platform, has_coupon",
    "experiment_performance": "SELECT experiment_id, variant, platform, users_exposed, orders, aov, aov_usd, "
                              "session_conversion_rate FROM vw_experiment_performance "
                              "ORDER BY experiment_id, variant, platform",
    "experiment_srm": "SELECT experiment_id, variant, users, experiment_users, arms, expected_share, observed_share, "
                      "users_in_several_arms, chi_square, degrees_of_freedom, srm_flag FROM vw_experiment_srm "
                      "ORDER BY experiment_id, variant",
    "abandoned_cart_aov": "SELECT platform, cohort, users, orders, aov_usd, abandoned_sessions, "
                          "avg_abandoned_cart_value_usd FROM vw_abandoned_cart_aov ORDER BY platform, cohort",
    "installment_daily": "SELECT order_date, platform, orders, installment_orders, installment_adoption_rate, "
                         f"avg_installments FROM vw_installment_adoption_daily WHERE order_date >= {_SINCE} "
                         "ORDER BY order_date, platform",
    "discount_daily": "SELECT order_date, platform, orders, gross_revenue, discount_value, net_revenue, "
                      f"orders_with_discount FROM vw_daily_purchase_discounts WHERE order_date >= {_SINCE} "
                      "ORDER BY order_date, platform",
    "price_changes": "SELECT campaign_id, item_id, change_ts, old_price, new_price, delta_pct "
                     "FROM vw_gold_product_campaign_price_change_events WHERE is_current_campaign "
                     "ORDER BY campaign_id, item_id, change_ts",
}

#: The targeting segments: (name, view, what it holds). Their sizes are counted on the page, with
#: the SQL that pulls the users.
SEGMENTS: list[tuple[str, str, str]] = [
    ("Bounced sessions", "gold_segment_bounce_v", "sessions with exactly one event"),
    ("Abandoned checkouts", "gold_segment_checkout_abandon_v", "sessions with a checkout and no purchase"),
    ("High-value abandoned checkouts", "gold_segment_high_value_abandon_v", "abandoned carts over the high-value line"),
    ("Abandoned, no purchase since", "gold_segment_abandon_no_purchase_since_v",
     "users whose latest abandoned cart was not followed by any purchase"),
    ("Abandoned, then bought something else", "gold_segment_abandon_then_bought_different_v",
     "abandoned sessions followed by a purchase of other products"),
]


def json_value(value: Any) -> Any:
    """A DuckDB value as JSON: dates as ISO dates, timestamps as ISO UTC ('Z'), decimals as
    numbers, NaN as null."""
    if isinstance(value, dt.datetime):
        return value.isoformat() + ("Z" if value.tzinfo is None else "")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return value


def rows_of(con: duckdb.DuckDBPyConnection, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    cur = con.execute(query, params or {})
    rows = cur.fetchall()
    names = [d[0] for d in cur.description]
    return [{n: json_value(v) for n, v in zip(names, row)} for row in rows]


def collect(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Everything the page shows, read from an analytics (or warehouse) connection."""
    data: dict[str, Any] = {"trend_days": TREND_DAYS, "datasets": {
        name: rows_of(con, query, {"days": TREND_DAYS} if "$days" in query else None)
        for name, query in DATASETS.items()}}
    data["freshness"] = rows_of(con, """
        SELECT (SELECT file_name FROM etl_batches WHERE status = 'committed' ORDER BY finished_ts DESC, load_id DESC LIMIT 1)
                   AS last_batch_file,
               (SELECT max(finished_ts) FROM etl_batches WHERE status = 'committed') AS last_batch_committed_ts,
               (SELECT max(event_ts) FROM fct_events)                               AS newest_event_ts,
               (SELECT max(last_event_ts) FROM dim_platforms)                       AS as_of_ts,
               -- etl_batches times are UTC whatever TZ says, so compare with now in UTC; open
               -- dead letters only (a superseded or replayed one is resolved)
               (SELECT count(*) FROM dead_letter_messages AS d JOIN etl_batches AS b USING (load_id)
                 WHERE b.finished_ts >= (now() AT TIME ZONE 'UTC') - INTERVAL 24 HOUR
                   AND d.resolved_ts IS NULL)                                       AS dead_letters_24h,
               (now() AT TIME ZONE 'UTC')                                           AS generated_ts
    """)[0]
    data["segments"] = []
    for title, view, meaning in SEGMENTS:
        (rows, users), = con.execute(f"SELECT count(*), count(DISTINCT user_id) FROM {view}").fetchall()
        data["segments"].append({"segment": title, "view": view, "meaning": meaning, "rows": rows, "users": users,
                                 "sql": f"SELECT DISTINCT user_id FROM {view} ORDER BY user_id"})
    return data


# --------------------------------------------------------------------------------------------
# the charts: Vega-Lite via Altair, each reading named datasets of the page's data

@dataclass(frozen=True)
class Chart:
    chart_id: str
    title: str
    question: str
    datasets: tuple[str, ...]
    build: Callable[[], alt.TopLevelMixin]


def _utc_day(field: str) -> alt.X:
    # ordinal days: one tick a day, no interpolated ticks between them
    return alt.X(f"utcyearmonthdate({field}):O", title=None, axis=alt.Axis(format="%b %d", labelAngle=0))


def _funnel() -> alt.TopLevelMixin:
    steps = {"sessions_with_product_view": "1 viewed a product", "sessions_with_checkout": "2 began checkout",
             "sessions_with_purchase": "3 purchased"}
    base = alt.Chart(alt.NamedData("platform_daily"))
    funnel = base.transform_fold(list(steps), as_=["step_field", "sessions_at_step"]).transform_calculate(
        step=" + ".join(f"(datum.step_field == '{k}' ? '{v}' : '')" for k, v in steps.items())
    ).mark_line(point=True).encode(
        x=_utc_day("session_date"),
        y=alt.Y("sessions_at_step:Q", title="sessions"),
        color=alt.Color("step:N", title="funnel step"),
        tooltip=["platform:N", alt.Tooltip("session_date:T", format="%Y-%m-%d"), "step:N", "sessions_at_step:Q"],
    ).properties(width=300, height=180).facet(column=alt.Column("platform:N", title=None))
    bounce = base.mark_line(point=True).encode(
        x=_utc_day("session_date"),
        y=alt.Y("bounce_rate:Q", title="bounce rate", axis=alt.Axis(format="%")),
        color=alt.Color("platform:N"),
        tooltip=["platform:N", alt.Tooltip("session_date:T", format="%Y-%m-%d"), "sessions:Q", "bounced_sessions:Q",
                 alt.Tooltip("bounce_rate:Q", format=".1%")],
    ).properties(width=300, height=180, title="Bounce rate")
    return alt.vconcat(funnel, bounce).resolve_scale(color="independent")


def _lists() -> alt.TopLevelMixin:
    return alt.Chart(alt.NamedData("list_totals")).transform_calculate(
        list_label="datum.item_list_name ? datum.item_list_name + ' (' + datum.item_list_id + ')' : datum.item_list_id",
        CTR="datum.sessions_exposed > 0 ? datum.sessions_with_click / datum.sessions_exposed : null",
        conversion="datum.sessions_exposed > 0 ? datum.sessions_with_purchase / datum.sessions_exposed : null",
    ).transform_fold(["CTR", "conversion"], as_=["measure", "rate"]).mark_bar().encode(
        y=alt.Y("list_label:N", title=None),
        x=alt.X("rate:Q", title="share of exposed sessions", axis=alt.Axis(format="%")),
        yOffset="measure:N",
        color=alt.Color("measure:N", title=None),
        tooltip=["platform:N", "list_label:N", "measure:N", alt.Tooltip("rate:Q", format=".1%"),
                 "sessions_exposed:Q", "sessions_with_click:Q", "sessions_with_purchase:Q",
                 alt.Tooltip("attributed_revenue_usd:Q", format=",.2f")],
    ).properties(width=320).facet(column=alt.Column("platform:N", title=None))


def _campaigns() -> alt.TopLevelMixin:
    base = alt.Chart(alt.NamedData("campaign_totals")).transform_calculate(
        conversion="datum.sessions_exposed > 0 ? datum.sessions_with_purchase / datum.sessions_exposed : null")
    tooltip = ["campaign_id:N", alt.Tooltip("revenue_usd:Q", format=",.2f"), "orders:Q", "sessions_exposed:Q",
               alt.Tooltip("conversion:Q", format=".1%"), alt.Tooltip("discount_value:Q", format=",.2f")]
    revenue = base.mark_bar().encode(
        y=alt.Y("campaign_id:N", title=None, sort="-x"), x=alt.X("revenue_usd:Q", title="revenue (USD)"),
        tooltip=tooltip).properties(width=300, title="Revenue")
    conversion = base.mark_bar(color="#54a24b").encode(
        y=alt.Y("campaign_id:N", title=None, sort="-x"),
        x=alt.X("conversion:Q", title="exposed sessions that bought under the code", axis=alt.Axis(format="%")),
        tooltip=tooltip).properties(width=300, title="Conversion")
    return alt.hconcat(revenue, conversion)


def _coupons() -> alt.TopLevelMixin:
    return alt.Chart(alt.NamedData("coupon_impact")).transform_calculate(
        coupon="datum.has_coupon ? 'with coupon' : 'without coupon'"
    ).mark_bar().encode(
        x=alt.X("platform:N", title=None, axis=alt.Axis(labelAngle=0)),
        xOffset="coupon:N",
        y=alt.Y("aov_usd:Q", title="AOV (USD)"),
        color=alt.Color("coupon:N", title=None),
        tooltip=["platform:N", "coupon:N", "orders:Q", alt.Tooltip("aov_usd:Q", format=",.2f"),
                 alt.Tooltip("aov:Q", format=",.2f", title="AOV (MXN)")],
    ).properties(width=280, height=200)


def _experiments() -> alt.TopLevelMixin:
    return alt.Chart(alt.NamedData("experiment_performance")).transform_lookup(
        lookup="experiment_id",
        from_=alt.LookupData(alt.NamedData("experiment_srm"), key="experiment_id", fields=["srm_flag"]),
    ).transform_calculate(
        arm="datum.experiment_id + ' / ' + datum.variant + (datum.srm_flag ? '  (SRM: do not trust)' : '')"
    ).mark_bar().encode(
        y=alt.Y("arm:N", title=None),
        yOffset="platform:N",
        x=alt.X("aov_usd:Q", title="AOV (USD)"),
        color=alt.Color("platform:N"),
        tooltip=["experiment_id:N", "variant:N", "platform:N", "users_exposed:Q", "orders:Q",
                 alt.Tooltip("aov_usd:Q", format=",.2f"), alt.Tooltip("session_conversion_rate:Q", format=".1%")],
    ).properties(width=420)


def _abandoners() -> alt.TopLevelMixin:
    measures = {"aov_usd": "AOV of their orders", "avg_abandoned_cart_value_usd": "their average abandoned cart"}
    return alt.Chart(alt.NamedData("abandoned_cart_aov")).transform_fold(
        list(measures), as_=["measure_field", "usd"]
    ).transform_calculate(
        measure=" + ".join(f"(datum.measure_field == '{k}' ? '{v}' : '')" for k, v in measures.items())
    ).mark_bar().encode(
        x=alt.X("measure:N", title=None, axis=alt.Axis(labelAngle=0)),
        xOffset="cohort:N",
        y=alt.Y("usd:Q", title="USD"),
        color=alt.Color("cohort:N", title=None),
        tooltip=["platform:N", "cohort:N", "users:Q", "orders:Q", "abandoned_sessions:Q", "measure:N",
                 alt.Tooltip("usd:Q", format=",.2f")],
    ).properties(width=300, height=200).facet(column=alt.Column("platform:N", title=None))


def _installments() -> alt.TopLevelMixin:
    return alt.Chart(alt.NamedData("installment_daily")).mark_line(point=True).encode(
        x=_utc_day("order_date"),
        y=alt.Y("installment_adoption_rate:Q", title="orders paid in installments", axis=alt.Axis(format="%")),
        color=alt.Color("platform:N"),
        tooltip=["platform:N", alt.Tooltip("order_date:T", format="%Y-%m-%d"), "orders:Q", "installment_orders:Q",
                 alt.Tooltip("installment_adoption_rate:Q", format=".1%"),
                 alt.Tooltip("avg_installments:Q", format=".1f")],
    ).properties(width=640, height=200)


def _discounts() -> alt.TopLevelMixin:
    return alt.Chart(alt.NamedData("discount_daily")).mark_bar().encode(
        x=_utc_day("order_date"),
        y=alt.Y("discount_value:Q", title="discounts on purchases (MXN)"),
        color=alt.Color("platform:N"),
        tooltip=["platform:N", alt.Tooltip("order_date:T", format="%Y-%m-%d"), "orders:Q", "orders_with_discount:Q",
                 alt.Tooltip("gross_revenue:Q", format=",.2f"), alt.Tooltip("discount_value:Q", format=",.2f"),
                 alt.Tooltip("net_revenue:Q", format=",.2f")],
    ).properties(width=640, height=200)


CHARTS: list[Chart] = [
    Chart("chart-funnel", f"Funnel and bounce rate by platform, per day (last {TREND_DAYS} days)",
          "How many sessions view a product, begin checkout and purchase, and how many bounce?",
          ("platform_daily",), _funnel),
    Chart("chart-lists", "Lists: click-through and conversion",
          "Which lists drive clicks and purchases (last touch, 30 minutes; all days)?", ("list_totals",), _lists),
    Chart("chart-campaigns", "Campaigns: revenue and conversion", "How do campaign codes convert (all days)?",
          ("campaign_totals",), _campaigns),
    Chart("chart-coupons", "AOV with and without coupons", "Do coupons change the order value?",
          ("coupon_impact",), _coupons),
    Chart("chart-experiments", "AOV per experiment arm", "Do experiment arms differ in order value?",
          ("experiment_performance", "experiment_srm"), _experiments),
    Chart("chart-abandoners", "Cart abandoners vs the rest", "Do users who abandon carts spend differently?",
          ("abandoned_cart_aov",), _abandoners),
    Chart("chart-installments", f"Installment adoption per day (last {TREND_DAYS} days)",
          "How many orders are paid in installments?",
          ("installment_daily",), _installments),
    Chart("chart-discounts", f"Discounts per day (last {TREND_DAYS} days)",
          "How much is given away in discounts each day?",
          ("discount_daily",), _discounts),
]


def chart_specs() -> dict[str, dict[str, Any]]:
    """chart id -> {"spec": Vega-Lite JSON without data, "datasets": names it reads}."""
    out = {}
    for chart in CHARTS:
        spec = chart.build().to_dict(validate=True)
        spec.pop("datasets", None)
        out[chart.chart_id] = {"spec": spec, "datasets": list(chart.datasets)}
    return out


# --------------------------------------------------------------------------------------------
# the page

@lru_cache(maxsize=4)
def _bundle_text(cache_file: str | None) -> str:
    import vl_convert

    if cache_file and Path(cache_file).is_file():
        return Path(cache_file).read_text(encoding="utf-8")
    text = vl_convert.javascript_bundle(vl_version=VL_VERSION)
    # "</script" (any case) would close the inline <script> early; "<\/" means the same in JavaScript
    text = re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)
    if cache_file:
        _atomic_write(Path(cache_file), text)
    return text


def vega_bundle(cache_dir: Path | None = None) -> str:
    """The Vega + Vega-Lite + vega-embed JavaScript, one minified bundle (about 0.9 MB). Bundling
    takes vl-convert a couple of seconds, so it is kept in ``cache_dir`` per library version."""
    import vl_convert

    name = f"vega-bundle-{getattr(vl_convert, '__version__', 'x')}-vl{VL_VERSION}.js"
    return _bundle_text(str(cache_dir / name) if cache_dir else None)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str) and len(value) >= 19 and value[10:11] == "T" and value.endswith("Z"):
        return value[:10] + " " + value[11:19]          # an ISO UTC timestamp, to the second
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 10 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(rows: list[dict[str, Any]], columns: list[str], table_id: str, empty: str) -> str:
    if not rows:
        return f'<p class="empty" id="{table_id}">{html.escape(empty)}</p>'
    # spaces for underscores: long column names may wrap, so wide tables fit the page
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(
        f'<td class="{"num" if isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) else ""}">'
        f"{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _srm_warnings(data: dict[str, Any]) -> str:
    flagged: dict[str, dict[str, Any]] = {}
    for row in data["datasets"]["experiment_srm"]:
        if row["srm_flag"]:
            flagged.setdefault(row["experiment_id"], row)
    if not flagged:
        return ('<p class="ok" id="srm-ok">No experiment shows a sample-ratio mismatch (chi-square test against an '
                'equal split, p &lt; 0.001).</p>')
    items = "".join(
        f'<li class="srm-warning" data-experiment="{html.escape(e)}"><strong>{html.escape(e)}</strong>: '
        f"sample-ratio mismatch (chi-square {r['chi_square']:.1f} on {r['degrees_of_freedom']} degrees of freedom, "
        f"p &lt; 0.001, {r['experiment_users']:,} users). The arms did not get an equal share of users, so the "
        f"AOV comparison of its arms cannot be trusted.</li>" for e, r in sorted(flagged.items()))
    return f'<ul class="warnings" id="srm-warnings">{items}</ul>'


def _script_json(element_id: str, value: Any) -> str:
    text = json.dumps(value, allow_nan=False, separators=(",", ":"), sort_keys=False)
    # "</" would end the <script> element early if a value held "</script>"; "<\/" is the same JSON
    text = text.replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


RUNNER = r"""
(function () {
  var errors = [];
  window.addEventListener('error', function (e) { errors.push('error: ' + e.message); });
  window.addEventListener('unhandledrejection', function (e) { errors.push('rejection: ' + e.reason); });
  var consoleError = console.error;
  console.error = function () {
    errors.push('console.error: ' + Array.prototype.map.call(arguments, String).join(' '));
    consoleError.apply(console, arguments);
  };
  var t0 = performance.now();
  var data = JSON.parse(document.getElementById('dashboard-data').textContent);
  var specs = JSON.parse(document.getElementById('dashboard-specs').textContent);
  var ids = Object.keys(specs);
  var runs = ids.map(function (id) {
    var spec = specs[id].spec;
    spec.datasets = {};
    specs[id].datasets.forEach(function (name) { spec.datasets[name] = data.datasets[name]; });
    return vegaEmbed('#' + id, spec, {actions: false, renderer: 'canvas'});
  });
  Promise.allSettled(runs).then(function (results) {
    var charts = results.map(function (result, n) {
      var id = ids[n];
      var box = document.getElementById(id).getBoundingClientRect();
      var rows = {};
      if (result.status === 'fulfilled') {
        specs[id].datasets.forEach(function (name) {
          try { rows[name] = result.value.view.data(name).length; } catch (e) { rows[name] = null; }
        });
      } else {
        errors.push(id + ': ' + result.reason);
      }
      var canvas = document.querySelector('#' + id + ' canvas');
      return {id: id, rendered: result.status === 'fulfilled' && !!canvas, width: box.width, height: box.height,
              rows: rows};
    });
    var status = document.getElementById('dashboard-status');
    status.textContent = JSON.stringify({charts: charts, errors: errors,
                                         render_ms: Math.round(performance.now() - t0),
                                         ready_ms: Math.round(performance.now())});
    status.setAttribute('data-done', 'true');
  });
})();
"""

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #222; background: #f6f7f9; }
header { background: #1f2a44; color: #fff; padding: 16px 28px; }
header h1 { margin: 0 0 10px; font-size: 22px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { background: rgba(255,255,255,0.1); border-radius: 6px; padding: 8px 14px; min-width: 170px; }
.card .label { font-size: 12px; opacity: 0.8; } .card .value { font-size: 15px; font-weight: 600; }
.card.alert { background: #b23b3b; }
main { padding: 8px 28px 40px; }
section { overflow-x: auto; background: #fff; border-radius: 8px; padding: 14px 20px; margin: 16px 0; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
section h2 { font-size: 18px; margin: 0 0 4px; } .question { color: #666; margin: 0 0 10px; font-size: 13px; }
.row { display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }
.warnings { margin: 0; padding: 10px 14px 10px 30px; background: #fff4e5; border-left: 4px solid #e08a00; max-width: 420px; font-size: 13px; }
.ok { color: #2e7d32; font-size: 13px; max-width: 420px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 4px 10px; text-align: left; } td.num { text-align: right; }
code { font-size: 12px; background: #f0f0f0; padding: 1px 4px; border-radius: 3px; }
.empty { color: #777; font-style: italic; } footer { color: #777; font-size: 12px; padding: 0 28px 20px; }
#dashboard-status { display: none; }
"""


def render(data: dict[str, Any], bundle: str) -> str:
    """The page (HTML text) for ``collect``'s data."""
    f = data["freshness"]
    esc = html.escape
    cards = [("Last committed batch", f"{f['last_batch_file'] or '—'}", False),
             ("Committed at (UTC)", _fmt(f["last_batch_committed_ts"]), False),
             ("Newest event time (UTC)", _fmt(f["newest_event_ts"]), False),
             ("As-of time of the figures (UTC)", _fmt(f["as_of_ts"]), False),
             ("Dead letters, last 24 h", _fmt(f["dead_letters_24h"]), bool(f["dead_letters_24h"]))]
    header = "".join(f'<div class="card{" alert" if alert else ""}"><div class="label">{esc(label)}</div>'
                     f'<div class="value">{esc(value)}</div></div>' for label, value, alert in cards)
    sections = []
    for chart in CHARTS:
        beside = ""
        if chart.chart_id == "chart-experiments":
            beside = _srm_warnings(data)
        sections.append(
            f'<section><h2>{esc(chart.title)}</h2><p class="question">{esc(chart.question)}</p>'
            f'<div class="row"><div class="chart" id="{chart.chart_id}"></div>{beside}</div></section>')
    srm_columns = ["experiment_id", "variant", "users", "experiment_users", "observed_share", "expected_share",
                   "users_in_several_arms", "chi_square", "degrees_of_freedom", "srm_flag"]
    sections.append(
        '<section><h2>Experiment sample-ratio check</h2><p class="question">Did each experiment\'s arms get an '
        'equal share of users (users counted in their first arm; <code>vw_experiment_srm</code>)?</p>'
        + _table(data["datasets"]["experiment_srm"], srm_columns, "table-srm", "No experiments yet.") + "</section>")
    sections.append(
        '<section><h2>Price changes during current campaigns</h2><p class="question">Which products changed price '
        'while a current campaign ran (<code>vw_gold_product_campaign_price_change_events</code>)?</p>'
        + _table(data["datasets"]["price_changes"], ["campaign_id", "item_id", "change_ts", "old_price", "new_price",
                                                     "delta_pct"], "table-price-changes",
                 "No price changed during a current campaign.") + "</section>")
    seg_body = "".join(
        f"<tr><td>{esc(s['segment'])}<br><small>{esc(s['meaning'])}</small></td><td class=\"num\">{s['rows']:,}</td>"
        f"<td class=\"num\">{s['users']:,}</td><td><code>{esc(s['sql'])}</code></td></tr>" for s in data["segments"])
    sections.append(
        '<section><h2>Targeting segments</h2><p class="question">How large is each segment, and how to pull its '
        'users from <code>warehouse/analytics.duckdb</code>?</p><table id="table-segments"><thead><tr><th>segment</th>'
        f"<th>rows</th><th>users</th><th>SQL</th></tr></thead><tbody>{seg_body}</tbody></table></section>")
    generated = _fmt(f["generated_ts"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Nelo Growth dashboard, data as of {esc(_fmt(f['as_of_ts']))} UTC</title>
<style>{STYLE}</style>
</head><body>
<header><h1>Nelo Growth dashboard</h1><div class="cards">{header}</div></header>
<main>{''.join(sections)}</main>
<footer>Made by <code>gold_transforms.py --report --format html</code> at {esc(generated)} UTC from
<code>warehouse/analytics.duckdb</code>. Every figure is computed from event time; the as-of time is the newest
event. Rates are shares of sessions or orders; money in USD unless marked MXN. Charts: Vega-Lite (inline, no
network).</footer>
<div id="dashboard-status"></div>
{_script_json('dashboard-data', data)}
{_script_json('dashboard-specs', chart_specs())}
<script>{bundle}</script>
<script>{RUNNER}</script>
</body></html>
"""


def _atomic_write(target: Path, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to a temp file beside ``target``, fsync, rename over it: all or nothing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    try:
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:         # some file systems cannot fsync a folder; the rename is still atomic
        pass


def write(con: duckdb.DuckDBPyConnection, out_dir: Path, cache_dir: Path | None = None) -> Path:
    """Make the page from ``con`` and replace ``out_dir/index.html`` atomically. Returns its path."""
    t0 = time.monotonic()
    text = render(collect(con), vega_bundle(cache_dir))
    target = Path(out_dir) / INDEX
    # aggregates only (no user ids): readable by the owner and the analysts' group, like the analytics file
    _atomic_write(target, text, 0o640)
    log.info("dashboard written to %s (%.1f KB) in %.2f s", target, len(text.encode()) / 1024, time.monotonic() - t0)
    return target


def write_from_file(analytics: Path, out_dir: Path, cache_dir: Path | None = None) -> Path:
    """The page from a published analytics file, opened read-only like any analyst."""
    con = duckdb.connect(str(analytics), read_only=True)
    try:
        return write(con, out_dir, cache_dir)
    finally:
        con.close()
