"""The dashboard never costs data and a reader never sees half a page: a dashboard that cannot be
written fails the run in one line after the batch is committed and published; a write that dies
before its rename leaves the old page whole."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from nelo_etl import dashboard, gold

from ..conftest import write_config
from ..silver_helpers import load, make_project
from ..test_silver_models import MIN, T0, coded, item, line
from ..test_staging import run_ps

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


def put(project: Path, name: str, lines: list[str]) -> None:
    (project / "staging" / f"processing_batch_{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_a_dashboard_that_cannot_be_written_fails_in_one_line_and_loses_nothing(project):
    (project / "blocked").write_text("a file where the report folder should be", encoding="utf-8")
    write_config(project, report_dir="blocked")
    put(project, "20251017T000000_a", [line(T0, "view_item", [item("A", 10)]),
                                       line(T0 + MIN, "purchase", [coded("A", 10, "SALE")])])
    out = run_ps(project)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "dashboard" in out.stderr + out.stdout
    assert "analytics file published, but the dashboard" in out.stdout + out.stderr
    # the batch is committed and moved on, and analysts already have it
    assert list((project / "processed").iterdir()) and not list((project / "staging").glob("*.jsonl"))
    con = duckdb.connect(str(project / "warehouse" / "analytics.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM fct_events").fetchall() == [(2,)]
    finally:
        con.close()
    # once the folder can be made, the next committed run writes the page
    (project / "blocked").unlink()
    put(project, "20251017T010000_b", [line(T0 + 2 * MIN, "view_item", [item("B", 10)])])
    again = run_ps(project)
    assert again.returncode == 0, again.stderr
    assert "processing_batch_20251017T010000_b.jsonl" in (project / "blocked" / "index.html").read_text(encoding="utf-8")


def test_a_write_that_dies_before_its_rename_leaves_the_old_page_whole(tmp_path, monkeypatch):
    cfg = make_project(tmp_path)
    path = tmp_path / "processing_batch_20251017T000000_p.jsonl"
    path.write_text(line(T0, "view_item", [coded("P", 10, "SALE")]) + "\n", encoding="utf-8")
    load(cfg, [path])
    out = tmp_path / "site"
    old = dashboard.write_from_file(gold.analytics_path(cfg), out).read_bytes()

    def dies(*_args, **_kwargs):
        raise OSError("killed before the rename")

    monkeypatch.setattr(dashboard.os, "replace", dies)
    with pytest.raises(OSError, match="before the rename"):
        dashboard.write_from_file(gold.analytics_path(cfg), out)
    monkeypatch.undo()
    assert (out / "index.html").read_bytes() == old
    assert [p.name for p in out.iterdir()] == ["index.html"]          # the half-written temp file is gone
