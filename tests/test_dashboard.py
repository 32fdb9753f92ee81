"""The dashboard: rebuilt after every committed run when ``report_dir`` is set, self-contained,
small, and rendered by a real browser (headless Chromium, from a file, no network) with every chart
drawn, no errors, and the views' own numbers in its data."""
from __future__ import annotations

import datetime as dt
import decimal
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from nelo_etl import dashboard, gold, simulate
from nelo_etl.config import load_config

from .conftest import ROOT
from .silver_helpers import load, make_project
from .test_silver_models import MIN, T0, coded, line

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow

#: Where the browser test leaves its screenshot (git-ignored); CI can keep it as an artefact.
ARTIFACTS = Path(os.environ.get("NELO_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))

#: The page's datasets that are a Gold view's rows: (view, filter); "recent" keeps the last
#: TREND_DAYS UTC dates up to the as-of date (the newest event's).
SOURCES = {
    "platform_daily": ("vw_platform_daily_performance_sessions", "recent:session_date"),
    "coupon_impact": ("vw_coupon_impact", None),
    "experiment_performance": ("vw_experiment_performance", None),
    "experiment_srm": ("vw_experiment_srm", None),
    "abandoned_cart_aov": ("vw_abandoned_cart_aov", None),
    "installment_daily": ("vw_installment_adoption_daily", "recent:order_date"),
    "discount_daily": ("vw_daily_purchase_discounts", "recent:order_date"),
    "price_changes": ("vw_gold_product_campaign_price_change_events", "current"),
}
#: The page's datasets that are all-time sums of a view's rows: (view, keys, summed columns).
TOTALS = {
    "list_totals": ("vw_list_daily_performance_sessions", ["platform", "item_list_id"],
                    ["sessions_exposed", "sessions_with_click", "sessions_with_purchase", "attributed_revenue_usd"]),
    "campaign_totals": ("vw_campaign_performance_daily", ["campaign_id"],
                        ["sessions_exposed", "sessions_with_purchase", "orders", "revenue_usd", "discount_value"]),
}


def plain(value):
    """A view's value as the page's JSON must hold it (written here, not taken from the module)."""
    if isinstance(value, dt.datetime):
        return value.isoformat() + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):          # exact money (segment carts): a JSON number
        return float(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def canonical(rows: list[dict]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def view_rows(con: duckdb.DuckDBPyConnection, view: str) -> list[dict]:
    cur = con.execute(f"SELECT * FROM {view}")
    names = [d[0] for d in cur.description]
    return [{n: plain(v) for n, v in zip(names, row)} for row in cur.fetchall()]


def expected_rows(con: duckdb.DuckDBPyConnection, view: str, keep: str | None) -> list[dict]:
    rows = view_rows(con, view)
    if keep == "current":
        return [r for r in rows if r["is_current_campaign"]]
    if keep and keep.startswith("recent:"):
        as_of = con.execute("SELECT max(event_ts) FROM fct_events").fetchall()[0][0].date()
        first = (as_of - dt.timedelta(days=dashboard.TREND_DAYS - 1)).isoformat()
        return [r for r in rows if r[keep.split(":")[1]] >= first]
    return rows


def summed(rows: list[dict], keys: list[str], columns: list[str]) -> list[dict]:
    out: dict[tuple, dict] = {}
    for r in rows:
        group = out.setdefault(tuple(r[k] for k in keys), {**{k: r[k] for k in keys}, **{c: 0 for c in columns}})
        for c in columns:
            group[c] += r[c]
    return list(out.values())


def page_json(text: str, element_id: str) -> dict:
    m = re.search(r'<script type="application/json" id="' + element_id + r'">(.*?)</script>', text, re.S)
    assert m, f"no #{element_id} in the page"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A project with report_dir set, after two committed runs of chaotic traffic: the page the
    second run left behind, and the analytics file it was made from."""
    base = tmp_path_factory.mktemp("dash")
    cfg = make_project(base)
    raw = json.loads(cfg.path.read_text(encoding="utf-8"))
    raw["report_dir"] = "site"                          # relative: against the config's folder
    cfg.path.write_text(json.dumps(raw), encoding="utf-8")
    cfg = load_config(cfg.path)
    assert cfg.report_dir == base / "site"
    messages = simulate.Simulator(simulate.SimConfig.chaos(events=1500, seed=21, days=3)).messages()
    files = [Path(p) for p in simulate.write_batches(messages, str(base / "files"), batches=2)]
    load(cfg, files[:1])
    first = (base / "site" / "index.html").read_text(encoding="utf-8")
    load(cfg, files[1:])
    return cfg, base / "site" / "index.html", first


def test_every_committed_run_rebuilds_the_page_when_report_dir_is_set(site):
    cfg, page, first = site
    text = page.read_text(encoding="utf-8")
    files = sorted(p.name for p in (cfg.path.parent / "files").iterdir())
    assert files[0] in first and files[1] in text and files[1] not in first        # the header names the last batch
    assert page.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in page.parent.iterdir()] == ["index.html"]               # no temp file left behind


def test_report_dir_is_off_by_default(tmp_path):
    cfg = make_project(tmp_path)
    assert cfg.report_dir is None
    path = tmp_path / "processing_batch_20251017T000000_d.jsonl"
    path.write_text(line(T0, "view_item", [coded("P", 10, "SALE")]) + "\n", encoding="utf-8")
    load(cfg, [path])
    assert gold.analytics_path(cfg).exists()
    assert not list(tmp_path.rglob("index.html"))


class _Resources(HTMLParser):
    """Every tag that could fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.fetching: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag in ("link", "img", "iframe", "object", "embed", "video", "audio", "source") or attrs.get("src") \
                or (tag == "a" and attrs.get("href", "").startswith("http")):
            self.fetching.append(f"<{tag} {attrs}>")


def test_the_page_is_self_contained_and_small(site):
    _, page, _ = site
    text = page.read_text(encoding="utf-8")
    parser = _Resources()
    parser.feed(text)
    assert parser.fetching == [] and parser.scripts >= 3
    style = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
    assert "url(" not in style and "@import" not in style and "@font-face" not in style
    assert page.stat().st_size < 3 * 1024 * 1024            # e-mailable: about 1 MB
    assert text.count("window.vegaEmbed=") == 1              # the library inlined once, for every chart
    specs = page_json(text, "dashboard-specs")
    assert set(specs) == {c.chart_id for c in dashboard.CHARTS}
    assert all(f'id="{cid}"' in text for cid in specs)


def test_the_srm_warning_stands_beside_a_flagged_experiments_aov(tmp_path):
    # experiment Z: 20 users in arm A, 2 in B (chi-square 14.7 > 10.828); experiment X: 2 and 2
    lines = [line(T0, "view_item", [coded("P", 10, "NELO_XP_Z_A")], user=f"a{n}") for n in range(20)]
    lines += [line(T0, "view_item", [coded("P", 10, "NELO_XP_Z_B")], user=f"b{n}") for n in range(2)]
    lines += [line(T0 + MIN, "purchase", [coded("P", 10, f"NELO_XP_X_{arm}")], user=f"x{arm}{n}")
              for arm in "AB" for n in range(2)]
    cfg = make_project(tmp_path)
    path = tmp_path / "processing_batch_20251017T000000_s.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    load(cfg, [path])
    page = dashboard.write_from_file(gold.analytics_path(cfg), tmp_path / "out")
    text = page.read_text(encoding="utf-8")
    warned = re.findall(r'<li class="srm-warning" data-experiment="(\w+)">', text)
    assert warned == ["Z"]
    experiments_section = text.split('id="chart-experiments"')[1].split("</section>")[0]
    assert 'data-experiment="Z"' in experiments_section and "cannot be trusted" in experiments_section


def test_html_needs_an_out_folder_and_writes_index_html(site, tmp_path):
    cfg, _, _ = site
    base = [sys.executable, str(ROOT / "gold_transforms.py"), "--config", str(cfg.path), "--report", "--format", "html"]
    missing = subprocess.run(base, capture_output=True, text=True)
    assert missing.returncode == 2 and "--out" in missing.stderr
    out = subprocess.run(base + ["--out", str(tmp_path / "d")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "d" / "index.html").stat().st_size > 100_000


# --------------------------------------------------------------------------------------------
# the real browser

def chromium() -> str:
    """The browser binary; skipped only outside CI (CI must have it: .ci/run installs it)."""
    found = os.environ.get("NELO_CHROMIUM") or next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if not found:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and CI must run the browser test (make browser installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium, or `make browser`)")
    return found


def headless(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with no network at all: no proxy-less fetches, no DNS, no background traffic."""
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
         f"--user-data-dir={profile}", "--virtual-time-budget=15000", *args],
        capture_output=True, text=True, timeout=120)


def test_a_real_browser_draws_every_chart_with_the_views_numbers(site, tmp_path):
    binary = chromium()
    cfg, page, _ = site
    dom = headless(binary, tmp_path / "profile", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    m = re.search(r'<div id="dashboard-status" data-done="true">(.*?)</div>', dom.stdout, re.S)
    assert m, "the page never finished rendering: " + dom.stdout[-500:]
    status = json.loads(m.group(1))
    assert status["errors"] == []
    data = page_json(dom.stdout, "dashboard-data")
    con = duckdb.connect(str(gold.analytics_path(cfg)), read_only=True)
    try:
        # every chart is drawn, has a size, and holds every row of its views
        assert [c["id"] for c in status["charts"]] == [c.chart_id for c in dashboard.CHARTS]
        for chart in status["charts"]:
            assert chart["rendered"] and chart["width"] > 100 and chart["height"] > 50, chart
            for name, rows in chart["rows"].items():
                assert rows == len(data["datasets"][name]) and rows > 0, (chart["id"], name)
        # the numbers on the page are the views' numbers
        assert set(data["datasets"]) == set(SOURCES) | set(TOTALS)
        for name, (view, keep) in SOURCES.items():
            shown = data["datasets"][name]
            assert shown, f"{name} is empty: the traffic should fill it"
            columns = list(shown[0])
            expected = [{c: r[c] for c in columns} for r in expected_rows(con, view, keep)]
            assert canonical(shown) == canonical(expected), name
        for name, (view, keys, columns) in TOTALS.items():
            shown = {tuple(r[k] for k in keys): r for r in data["datasets"][name]}
            expected = {tuple(r[k] for k in keys): r for r in summed(view_rows(con, view), keys, columns)}
            assert shown.keys() == expected.keys() and shown, name
            for key, row in expected.items():
                for c in columns:
                    assert shown[key][c] == pytest.approx(row[c], rel=1e-9, abs=1e-9), (name, key, c)
        for segment in data["segments"]:
            assert segment["rows"] == con.execute(f"SELECT count(*) FROM {segment['view']}").fetchall()[0][0]
            assert con.execute(segment["sql"]).fetchall()          # the SQL shown runs and finds the users
        newest, = con.execute("SELECT max(event_ts) FROM fct_events").fetchall()[0]
        assert data["freshness"]["newest_event_ts"] == plain(newest)
        last_batch = con.execute("SELECT file_name FROM etl_batches WHERE status = 'committed' "
                                 "ORDER BY finished_ts DESC LIMIT 1").fetchall()[0][0]
        assert data["freshness"]["last_batch_file"] == last_batch and last_batch in dom.stdout
    finally:
        con.close()
    # a screenshot, kept as a test artefact
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dashboard.png"
    shot.unlink(missing_ok=True)
    out = headless(binary, tmp_path / "profile", "--hide-scrollbars", "--window-size=1280,3600",
                   f"--screenshot={shot}", page.as_uri())
    assert out.returncode == 0, out.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    print(f"dashboard screenshot: {shot} (charts drawn {status['render_ms']} ms after the "
          f"script started, {status['ready_ms']} ms after navigation)")


def test_daily_charts_keep_the_last_trend_days_and_totals_keep_all_days(tmp_path):
    day = 86_400_000_000
    old, new = T0, T0 + dashboard.TREND_DAYS * day            # 90 days apart: the first falls out of the trend
    lines = [line(old, "purchase", [coded("P", 10, "SALE")]), line(new, "purchase", [coded("P", 30, "SALE")],
                                                                    user="u2")]
    cfg = make_project(tmp_path)
    path = tmp_path / "processing_batch_20251017T000000_w.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    load(cfg, [path])
    con = duckdb.connect(str(gold.analytics_path(cfg)), read_only=True)
    try:
        data = dashboard.collect(con)
    finally:
        con.close()
    new_date = (dt.datetime(2025, 10, 17) + dt.timedelta(days=dashboard.TREND_DAYS)).date().isoformat()
    for name, column in (("platform_daily", "session_date"), ("installment_daily", "order_date"),
                         ("discount_daily", "order_date")):
        assert [r[column] for r in data["datasets"][name]] == [new_date], name
    assert [(r["campaign_id"], r["orders"], r["sessions_exposed"]) for r in data["datasets"]["campaign_totals"]] == \
        [("SALE", 2, 2)]
    assert data["trend_days"] == dashboard.TREND_DAYS
