"""Several waiting files load in one transaction (issue 15: a backfill of many small files should
cost about what one big file costs), with one ledger row each, and give exactly the warehouse
that loading them one at a time gives; a group that fails falls back to one file at a time."""
from __future__ import annotations

import json
from pathlib import Path

from nelo_etl import staging
from nelo_etl.simulate import SimConfig, Simulator, write_batches

from .silver_helpers import make_project, silver_tables
from .test_staging import query
import pytest

#: subprocesses, servers, browsers or many loads: not in the fast subset (make test-fast)
pytestmark = pytest.mark.slow


def _ledger(base: Path) -> list[tuple]:
    return query(base, "SELECT file_name, received, loaded_events, duplicate_events, dead_lettered, status "
                       "FROM etl_batches ORDER BY file_name")


def test_a_group_equals_one_file_at_a_time(tmp_path, monkeypatch):
    messages = Simulator(SimConfig.chaos(events=1500, seed=5, bad_rate=0.02)).messages()
    files = [Path(p) for p in write_batches(messages, str(tmp_path / "batches"), batches=12)]
    grouped = make_project(tmp_path / "grouped")
    run = staging.process_files(grouped, files, move=False, refresh_gold=False)
    assert run.ok and {f.group_size for f in run.files} == {12}
    monkeypatch.setattr(staging, "GROUP_MAX_FILES", 1)
    alone = make_project(tmp_path / "alone")
    run = staging.process_files(alone, files, move=False, refresh_gold=False)
    assert run.ok and {f.group_size for f in run.files} == {1}
    assert silver_tables(grouped) == silver_tables(alone)
    assert _ledger(tmp_path / "grouped") == _ledger(tmp_path / "alone")
    assert len(_ledger(tmp_path / "grouped")) == 12
    dead = "SELECT source_file, line_number, reason FROM dead_letter_messages ORDER BY ALL"
    assert query(tmp_path / "grouped", dead) == query(tmp_path / "alone", dead)


def test_groups_are_bounded_and_a_failing_group_falls_back_to_one_file_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(staging, "GROUP_MAX_FILES", 3)
    messages = Simulator(SimConfig.chaos(events=600, seed=8)).messages()
    files = [Path(p) for p in write_batches(messages, str(tmp_path / "batches"), batches=5)]
    # a poison message in the fourth file: its group (files 4 and 5) fails, then each loads alone
    lines = files[3].read_text(encoding="utf-8").splitlines()
    first = json.loads(lines[0])
    body = json.loads(first["Body"])
    body["items"] = "[{item_id=P, price=1.0, quantity=1}]"
    body["user_id"] = "mallory"
    first["MessageId"] = "poison"
    first["Body"] = json.dumps(body)
    files[3].write_text("\n".join(lines + [json.dumps(first)]) + "\n", encoding="utf-8")
    cfg = make_project(tmp_path / "p")
    check = tmp_path / "checks" / "zz_no_mallory.sql"
    check.parent.mkdir()
    check.write_text("-- one poison user\nSELECT event_id FROM stg_events WHERE load_id >= $load_id AND user_id = 'mallory'")
    real = staging.sql.check_files()
    monkeypatch.setattr(staging.sql, "check_files", lambda: real + [check])
    run = staging.process_files(cfg, files, move=False, refresh_gold=False)
    assert [f.status for f in run.files] == ["committed"] * 5
    assert [f.group_size for f in run.files] == [3, 3, 3, 1, 1]
    assert [f.isolated for f in run.files] == [0, 0, 0, 1, 0]
    assert query(tmp_path / "p", "SELECT message_id, reason FROM dead_letter_messages WHERE reason LIKE 'load_error%'") \
        == [("poison", "load_error:zz_no_mallory")]
    rows = query(tmp_path / "p", "SELECT received, loaded_events + duplicate_events + dead_lettered FROM etl_batches")
    assert len(rows) == 5 and all(a == b for a, b in rows)
