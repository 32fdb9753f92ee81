"""What analysts get (issue 13, items 9-14): files their DuckDB 1.x tools open, readable by their
group, fresh data on a new connection, every table, view and column documented, reports that
load into pandas, and one file per team holding only that team's views."""
from __future__ import annotations

import grp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas
import pytest

from nelo_etl import analyst, cli, gold, silver, simulate
from nelo_etl.config import ConfigError, load_config

from .conftest import ROOT, write_config
from .silver_helpers import load, make_project

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow

DUCK1 = ROOT / ".venv-duckdb1"


@pytest.fixture(scope="session")
def duckdb1_python() -> Path:
    """A python with DuckDB 1.x (requirements-duckdb1.txt), made once beside .venv (`make test`
    makes it first; this makes it when pytest runs alone)."""
    python = DUCK1 / "bin" / "python"
    if not (DUCK1 / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(DUCK1)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "-r", str(ROOT / "requirements-duckdb1.txt")], check=True, timeout=600)
        (DUCK1 / ".installed").touch()
    version = subprocess.run([str(python), "-c", "import duckdb; print(duckdb.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version.startswith("1."), version
    return python


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A warehouse with chaotic traffic, published with the shipped config (analysts_group set
    to this user's primary group, which an unprivileged user may chgrp to)."""
    base = tmp_path_factory.mktemp("analysts")
    cfg = make_project(base)
    config = json.loads(cfg.path.read_text())
    config["analysts_group"] = grp.getgrgid(os.getgid()).gr_name
    config["teams"]["finance"]["group"] = grp.getgrgid(os.getgid()).gr_name
    cfg.path.write_text(json.dumps(config))
    cfg = load_config(cfg.path)
    messages = simulate.Simulator(simulate.SimConfig.chaos(events=2500, seed=13, days=3)).messages()
    files = simulate.write_batches(messages, str(tmp_path_factory.mktemp("files")), batches=3)
    load(cfg, [Path(p) for p in files])
    return cfg


def rows_of(path: Path, names: list[str]) -> dict[str, list[list[str]]]:
    with duckdb.connect(str(path), read_only=True) as con:
        return {n: [[str(v) for v in r] for r in con.execute(f"SELECT * FROM {n} ORDER BY ALL").fetchall()]
                for n in names}


# ---------------------------------------------------------------- 9: DuckDB 1.x opens the files

def test_duckdb_1x_opens_every_published_file_and_answers_every_view(published, duckdb1_python):
    paths = [gold.analytics_path(published)] + [gold.team_path(published, t) for t in sorted(published.teams)]
    out = subprocess.run([str(duckdb1_python), str(ROOT / "tests" / "duckdb1_probe.py"), *map(str, paths)],
                         capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.returncode == 0, out.stderr[-2000:]
    probe = json.loads(out.stdout)
    assert probe["duckdb_version"].startswith("1.")
    views = sorted(v.name for v in gold.views())
    seen = probe["files"][str(paths[0])]
    assert sorted(seen["rows"]) == views                                 # every Gold view answers
    assert seen["rows"] == rows_of(paths[0], views)                      # exactly as DuckDB 2.0 reads it
    assert seen["helper_counts"] == {n: len(r) for n, r in seen["rows"].items()}
    assert sum(len(r) for r in seen["rows"].values()) > 100
    assert all(seen["comments"][m.name] for m in silver.MODELS)
    for team, path in zip(sorted(published.teams), paths[1:]):
        team_views = sorted(published.teams[team].views)
        assert sorted(probe["files"][str(path)]["rows"]) == team_views
        assert probe["files"][str(path)]["rows"] == rows_of(paths[0], team_views)   # the same answers


def test_a_generation_in_the_newer_format_is_replaced_by_one_in_the_configured_format(tmp_path, sample_lines):
    cfg = make_project(tmp_path)
    with duckdb.connect(str(gold.gen_paths(cfg)[0])) as con:             # as an older version left it
        con.execute("CREATE TABLE _publish_state AS SELECT 1 AS journal_id").fetchall()
    batch = tmp_path / "processing_batch_20251017T000000_a.jsonl"
    batch.write_text("\n".join(sample_lines) + "\n")
    load(cfg, [batch])
    for path in (gold.gen_paths(cfg)[0], gold.analytics_path(cfg), gold.team_path(cfg, "growth")):
        with duckdb.connect(str(path), read_only=True) as con:
            tags = con.execute("SELECT tags FROM duckdb_databases() WHERE NOT internal").fetchall()[0][0]
        assert dict(tags)["storage_version"] == "v1.0.0+", path


# ---------------------------------------------------------------- 10: access without root

def test_published_files_are_group_readable_read_only_for_the_configured_group(published):
    gid = os.getgid()
    for path in [gold.analytics_path(published), gold.team_path(published, "finance")]:
        st = path.stat()
        assert st.st_mode & 0o777 == 0o440 and st.st_gid == gid, path
    assert gold.team_path(published, "growth").stat().st_mode & 0o777 == 0o440


def test_an_unknown_group_is_a_config_error_before_anything_runs(project):
    path = write_config(project, analysts_group="no_such_group_nelo")
    with pytest.raises(ConfigError, match="analysts_group: .*no such group 'no_such_group_nelo'"):
        load_config(path)
    out = subprocess.run([sys.executable, str(ROOT / "gold_transforms.py"), "--config", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == cli.EXIT_CONFIG and out.stderr.count("\n") == 1
    assert not (project / "warehouse" / "nelo.duckdb").exists()


def test_the_readme_python_example_works_outside_the_venv(published, duckdb1_python):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    examples = re.findall(r'^python3 -c "([^"]+)"$', readme, re.M)
    assert len(examples) >= 2
    for code in examples:
        out = subprocess.run([str(duckdb1_python), "-c", code], cwd=published.path.parent, capture_output=True,
                             text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert out.returncode == 0, (code, out.stderr[-1000:])
        assert "has_coupon" in out.stdout                               # it printed vw_coupon_impact


# ---------------------------------------------------------------- 11: fresh data after reconnecting

def test_a_new_connection_shows_the_latest_publication_while_an_old_one_is_open(tmp_path, sample_lines):
    cfg = make_project(tmp_path)
    first = tmp_path / "processing_batch_20251017T000000_a.jsonl"
    first.write_text("\n".join(sample_lines[:6]) + "\n")
    load(cfg, [first])
    path = str(gold.analytics_path(cfg))
    a = duckdb.connect(path, read_only=True)                            # a notebook's first cell
    h = analyst.connect(path)
    before = a.execute("SELECT count(*) FROM fct_events").fetchall()[0][0]
    assert h.execute("SELECT count(*) FROM fct_events").fetchall()[0][0] == before
    second = tmp_path / "processing_batch_20251017T000100_b.jsonl"
    second.write_text("\n".join(sample_lines[6:]) + "\n")
    load(cfg, [second])                                                 # a publication meanwhile
    b = duckdb.connect(path, read_only=True)
    # DuckDB's rule: same path, same process, an instance still open -> that instance's snapshot
    assert b.execute("SELECT count(*) FROM fct_events").fetchall()[0][0] == before
    fresh = analyst.connect(path)
    after = fresh.execute("SELECT count(*) FROM fct_events").fetchall()[0][0]
    assert after > before
    assert a.execute("SELECT count(*) FROM fct_events").fetchall()[0][0] == before   # A keeps its snapshot
    assert h.execute("SELECT count(*) FROM fct_events").fetchall()[0][0] == before   # so does an old helper
    assert fresh.execute("SELECT count(*) FROM vw_coupon_impact").fetchall()[0][0] > 0
    with pytest.raises(duckdb.Error):
        fresh.execute("CREATE TABLE analytics.x (a INT)").fetchall()               # read-only
    for con in (a, b, h, fresh):
        con.close()


# ---------------------------------------------------------------- 12: documentation in the database

def header_lines(path: Path) -> tuple[str, dict[str, str]]:
    """Read independently of gold.parse_header: the comment lines up to the SQL."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    cut = lines.index("-- columns:")
    text = " ".join(l[3:].strip() for l in lines[:cut])
    columns = dict(l[5:].split(": ", 1) for l in lines[cut + 1:])
    return text.split(": ", 1)[1], columns


def test_every_comment_is_its_whole_sql_header_text(published):
    gold_files = {p.stem: p for p in (ROOT / "sql" / "gold").glob("*.sql")}
    silver_files = {m.name: m.path for m in silver.MODELS}
    for path in (published.database_path, gold.analytics_path(published)):
        with duckdb.connect(str(path), read_only=True) as con:
            objects = dict(con.execute("SELECT view_name, comment FROM duckdb_views() WHERE NOT internal UNION ALL "
                                       "SELECT table_name, comment FROM duckdb_tables()").fetchall())
            columns = {(t, c): m for t, c, m in con.execute(
                "SELECT table_name, column_name, comment FROM duckdb_columns()").fetchall()}
        for name, file in {**gold_files, **silver_files}.items():
            text, docs = header_lines(file)
            assert objects[name] == text, (path.name, name)
            assert text.endswith("."), name                               # complete, not cut mid-sentence
            have = {c for (t, c) in columns if t == name}
            assert set(docs) == have, (name, have ^ set(docs))          # every column, nothing extra
            for column, doc in docs.items():
                assert columns[(name, column)] == doc, (name, column)
    targeting = next(v for v in gold.views() if v.name == "gold_segment_abandon_no_purchase_since_v")
    assert targeting.description.startswith("the targeting list: users whose latest abandoned checkout session")
    assert "strictly after its last begin_checkout. Grain: one row per user." in targeting.description


@pytest.mark.parametrize("script", ["etl.py", "process_staging.py", "silver_transforms.py", "gold_transforms.py",
                                    "rebuild_warehouse.py"])
def test_help_shows_the_whole_first_paragraph(script):
    doc = subprocess.run([sys.executable, "-c", f"import ast,sys; print(ast.get_docstring(ast.parse(open(sys.argv[1]).read())))",
                          str(ROOT / script)], capture_output=True, text=True).stdout
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    out = subprocess.run([sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert paragraph in " ".join(out.stdout.split()) and paragraph.endswith(".")


# ---------------------------------------------------------------- 13: reports that load

def test_csv_report_is_one_plain_file_per_table_that_pandas_reads(published, tmp_path):
    base = [sys.executable, str(ROOT / "gold_transforms.py"), "--config", str(published.path), "--report"]
    out = subprocess.run(base + ["--format", "csv", "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    files = sorted((tmp_path / "r").glob("*.csv"))
    assert len(files) == len(gold.REPORT)
    with duckdb.connect(str(gold.analytics_path(published)), read_only=True) as con:
        sections = gold.run_report(con)
    for path, (title, columns, rows) in zip(files, sections):
        frame = pandas.read_csv(path)
        assert list(frame.columns) == columns and len(frame) == len(rows), title
        for i, column in enumerate(columns):
            values = [r[i] for r in rows if r[i] is not None]
            if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                assert pandas.api.types.is_numeric_dtype(frame[column]), (title, column)
                assert frame[column].dropna().tolist() == pytest.approx([float(v) for v in values]), (title, column)
    revenue = pandas.read_csv(files[0])
    assert "aov_mxn" in revenue.columns and "revenue_usd" in revenue.columns and revenue["revenue_mxn"].sum() > 1000
    usage = subprocess.run(base + ["--format", "csv"], capture_output=True, text=True)
    assert usage.returncode == cli.EXIT_CONFIG and "--out" in usage.stderr


def test_money_columns_name_their_currency(published):
    with duckdb.connect(str(gold.analytics_path(published)), read_only=True) as con:
        sections = gold.run_report(con)
    money = re.compile(r"(revenue|aov|value|price)(_mxn|_usd)?$")     # a money figure, by its name
    named = 0
    for title, columns, _rows in sections:
        for column in columns:
            m = money.search(column)
            if m:
                assert m.group(2), (title, column)                      # says MXN or USD
                named += 1
    assert named >= 15


def test_terminal_report_cuts_long_tables_with_a_count_of_the_rest(published):
    base = [sys.executable, str(ROOT / "gold_transforms.py"), "--config", str(published.path), "--report"]
    with duckdb.connect(str(gold.analytics_path(published)), read_only=True) as con:
        sections = {t: rows for t, _c, rows in gold.run_report(con)}
    longest = max(sections, key=lambda t: len(sections[t]))
    assert len(sections[longest]) > 7
    out = subprocess.run(base + ["--limit", "5"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    block = out.stdout.split(f"== {longest} ==\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert len(block) == 2 + 5 + 1 and block[-1].startswith(f"... {len(sections[longest]) - 5:,} more rows")
    everything = subprocess.run(base + ["--limit", "0"], capture_output=True, text=True).stdout
    assert "more row" not in everything
    for title in sections:
        assert f"== {title} ==" in everything


# ---------------------------------------------------------------- 14: each team sees its own answers

def test_finance_file_holds_only_its_views_as_tables(published):
    path = gold.team_path(published, "finance")
    with duckdb.connect(str(path), read_only=True) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
        view_names = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        comments = dict(con.execute("SELECT table_name, comment FROM duckdb_tables()").fetchall())
    assert tables == set(published.teams["finance"].views) and view_names == set()
    assert "vw_growth_engagement_daily" not in tables and "vw_list_daily_performance_sessions" not in tables
    assert not tables & {m.name for m in silver.MODELS} and "etl_batches" not in tables
    assert not any(t.startswith("gold_segment") for t in tables)        # no user-level lists
    docs = {v.name: v.description for v in gold.views()}
    assert all(comments[t] == docs[t] for t in tables)
    growth = gold.team_path(published, "growth")
    with duckdb.connect(str(growth), read_only=True) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "vw_growth_engagement_daily" in tables and "vw_daily_purchase_discounts" not in tables


def test_team_config_is_validated_and_a_dropped_team_loses_its_file(tmp_path, sample_lines):
    cfg = make_project(tmp_path)
    config = json.loads(cfg.path.read_text())
    config["teams"]["ops"] = {"group": None, "views": ["vw_not_a_view"]}
    cfg.path.write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="(?i)teams.ops.views: .*not a gold view: 'vw_not_a_view'"):
        load_config(cfg.path)
    config["teams"]["ops"] = {"group": None, "views": ["vw_coupon_impact"]}
    cfg.path.write_text(json.dumps(config))
    cfg = load_config(cfg.path)
    batch = tmp_path / "processing_batch_20251017T000000_a.jsonl"
    batch.write_text("\n".join(sample_lines) + "\n")
    load(cfg, [batch])
    assert gold.team_path(cfg, "ops").exists()
    del config["teams"]["ops"]
    cfg.path.write_text(json.dumps(config))
    cfg = load_config(cfg.path)
    out = subprocess.run([sys.executable, str(ROOT / "gold_transforms.py"), "--config", str(cfg.path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert not gold.team_path(cfg, "ops").exists() and gold.team_path(cfg, "finance").exists()


def as_user(uid: int, gid: int, path: Path) -> str:
    """Open ``path`` read-only in a forked child that has become ``uid``:``gid`` (no other
    groups): the count of vw_coupon_impact, or 'denied'."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                                        # the child: never returns
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            try:
                con = duckdb.connect(str(path), read_only=True)
                answer = str(con.execute("SELECT count(*) FROM vw_coupon_impact").fetchall()[0][0])
            except Exception as exc:  # noqa: BLE001 - reported to the parent
                answer = "denied" if "ermission denied" in str(exc) else str(exc)[:300]
            os.write(w, answer.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        answer = fh.read().decode()
    os.waitpid(pid, 0)
    return answer


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_an_analyst_account_in_the_group_reads_the_file_and_nothing_else(sample_lines):
    """As the unprivileged user nobody (group nogroup): with analysts_group = nogroup the
    analytics file opens read-only; the warehouse and another team's file stay out of reach."""
    import pwd
    import tempfile

    from .test_staging import run_ps

    nobody = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="nelo-group-"))
    try:
        root.chmod(0o711)
        make_project(root)
        warehouse_dir = root / "warehouse"
        os.chown(warehouse_dir, -1, nobody.pw_gid)
        warehouse_dir.chmod(0o710)                                      # the group may pass through
        (root / "staging" / "processing_batch_20251017T000000_a.jsonl").write_text("\n".join(sample_lines) + "\n")
        assert run_ps(root).returncode == 0
        analytics = warehouse_dir / "analytics.duckdb"
        assert as_user(nobody.pw_uid, nobody.pw_gid, analytics) == "denied"          # no group set yet
        write_config(root, analysts_group=grp.getgrgid(nobody.pw_gid).gr_name)
        (root / "staging" / "processing_batch_20251017T000100_b.jsonl").write_text(sample_lines[0] + "\n")
        assert run_ps(root).returncode == 0
        assert int(as_user(nobody.pw_uid, nobody.pw_gid, analytics)) > 0             # now it reads
        assert as_user(nobody.pw_uid, nobody.pw_gid, warehouse_dir / "nelo.duckdb") == "denied"
        assert as_user(nobody.pw_uid, nobody.pw_gid, warehouse_dir / "team_finance.duckdb") == "denied"
    finally:
        shutil.rmtree(root, ignore_errors=True)
