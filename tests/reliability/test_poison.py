"""Poison values: one message must never cost more than itself (issue 12).

Each case was reproduced on the code before the fix: the whole batch file rolled back on every run
(or failed while parsing), so its other messages never loaded. Now the offending message is
dead-lettered with a reason and the rest of the file commits; the ledger still adds up.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from nelo_etl import sql, staging
from nelo_etl.config import load_config

from ..conftest import ROOT, SAMPLES, write_config
from ..test_staging import query, run_ps

NAME = "processing_batch_20251020T000000_poison.jsonl"
LINES = SAMPLES.read_text(encoding="utf-8").splitlines()
PURCHASE = json.loads(LINES[3])          # sample 4: a purchase with one item


def purchase(message_id: str, ts: int, items: str, user: str = "poison-user") -> str:
    body = json.loads(PURCHASE["Body"])
    body.update(event_timestamp=ts, user_id=user, items=items)
    return json.dumps({"MessageId": message_id, "Attributes": PURCHASE["Attributes"], "Body": json.dumps(body)})


def item(price: str, n: int = 0) -> str:
    body = json.loads(PURCHASE["Body"])["items"]
    return body[1:-1].replace("price=899.0", f"price={price}").replace("SKU-", f"SKU-{n}-", 1)


def good_lines() -> list[str]:
    return [LINES[i] for i in (0, 1, 2, 3, 5, 6, 7, 11)]       # eight good samples (4 carries 5's event)


def ledger_adds_up(project: Path) -> list[tuple]:
    rows = query(project, "SELECT received, loaded_events, duplicate_events, dead_lettered FROM etl_batches "
                          "WHERE status = 'committed'")
    assert rows and all(r == l + d + x for r, l, d, x in rows), rows
    return rows


@pytest.mark.parametrize("parser", ["native", "python"])
def test_out_of_range_money_costs_only_its_own_message(project, parser):
    write_config(project, parser=parser)
    ts = 1760716900000000
    poison = [
        purchase("huge-price", ts, "[" + item("1.0E33") + "]"),
        # 20 items at 1.0E31 in one order: HUGEINT overflow in the order's sum before
        purchase("overflow-order", ts + 1, "[" + ", ".join(item("1.0E31", n) for n in range(20)) + "]"),
    ] + [purchase(f"big-{n}", ts + 10 + n, "[" + item("9.0E30", n) + "]", user=f"u{n}") for n in range(25)]
    (project / "staging" / NAME).write_text("\n".join(good_lines() + poison) + "\n", encoding="utf-8")
    out = run_ps(project)
    assert out.returncode == 0, out.stderr
    assert (project / "processed" / NAME).exists()
    reasons = query(project, "SELECT message_id, reason FROM dead_letter_messages ORDER BY message_id")
    assert len(reasons) == 27 and {r for _, r in reasons} == {"bad_item_value:price"}
    assert query(project, "SELECT count(DISTINCT event_id) FROM stg_events") == [(8,)]     # every good one
    assert ledger_adds_up(project) == [(35, 8, 0, 27)]
    # and the report, which read every Gold view, works
    report = subprocess.run([sys.executable, str(ROOT / "gold_transforms.py"), "--config", str(project / "config.json"),
                             "--report"], capture_output=True, text=True, timeout=120)
    assert report.returncode == 0 and "Coupons vs AOV" in report.stdout, report.stderr


def test_strict_money_text_is_dead_lettered_with_its_key(project):
    ts = 1760716900000000
    cases = {"comma-decimal": "1.299,50", "trailing-junk": "12abc", "bad-groups": "1,2,3.4"}
    lines = [purchase(name, ts + n, "[" + item(text) + "]") for n, (name, text) in enumerate(cases.items())]
    usd = json.loads(PURCHASE["Body"])["items"].replace("price_in_usd=45.5", "price_in_usd=MXN 1,299.50")
    lines.append(purchase("mxn-in-usd", ts + 9, usd))
    ok = json.loads(PURCHASE["Body"])["items"].replace("price=899.0", "price=MXN 1,299.50")
    lines.append(purchase("mxn-in-mxn", ts + 10, ok))
    (project / "staging" / NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run_ps(project).returncode == 0
    assert dict(query(project, "SELECT message_id, reason FROM dead_letter_messages")) == {
        "comma-decimal": "bad_item_value:price", "trailing-junk": "bad_item_value:price",
        "bad-groups": "bad_item_value:price", "mxn-in-usd": "bad_item_value:price_in_usd"}
    # money is exact DECIMAL(18, 6) from staging on
    assert query(project, "SELECT price, typeof(price) FROM stg_events") == [(pytest.approx(1299.5), "DECIMAL(18,6)")]


def test_a_message_a_data_check_rejects_is_isolated_and_the_rest_commits(project, monkeypatch, tmp_path):
    """A failing data check on one message's rows: the loader bisects the file with trial loads,
    dead-letters that message as load_error:<check>, and commits the others."""
    cfg = load_config(project / "config.json")
    check = tmp_path / "checks" / "zz_no_user_named_mallory.sql"
    check.parent.mkdir()
    check.write_text("-- fails on one user's events\nSELECT event_id FROM stg_events "
                     "WHERE load_id = $load_id AND user_id = 'mallory'")
    real_checks = sql.check_files()
    monkeypatch.setattr(sql, "check_files", lambda: real_checks + [check])
    lines = good_lines()
    lines.insert(3, purchase("mallory-1", 1760716900000000, json.loads(PURCHASE["Body"])["items"], user="mallory"))
    (project / "staging" / NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    run = staging.process_files(cfg, staging.staging_files(cfg), refresh_gold=False)
    (result,) = run.files
    assert result.status == "committed" and result.isolated == 1, result.line()
    assert query(project, "SELECT message_id, line_number, reason FROM dead_letter_messages") == \
        [("mallory-1", 4, "load_error:zz_no_user_named_mallory")]
    assert query(project, "SELECT count(*) FROM fct_events WHERE user_id = 'mallory'") == [(0,)]
    assert query(project, "SELECT count(DISTINCT event_id) FROM fct_events") == [(8,)]
    assert ledger_adds_up(project) == [(9, 8, 0, 1)]
    dead = [json.loads(x) for x in (project / "dead_letter" / NAME).read_text().splitlines()]
    assert [(d["MessageId"], d["reason"]) for d in dead] == [("mallory-1", "load_error:zz_no_user_named_mallory")]
    assert json.loads(dead[0]["Body"])["user_id"] == "mallory"          # the body is kept for a replay


def test_a_duckdb_error_on_one_message_is_isolated_by_its_class(project, monkeypatch, tmp_path):
    cfg = load_config(project / "config.json")
    check = tmp_path / "checks" / "zz_cast.sql"
    check.parent.mkdir()
    # a cast that only one message's value cannot take: a ConversionException inside the transaction
    check.write_text("-- casts\nSELECT event_id FROM stg_events WHERE load_id = $load_id "
                     "AND CAST(CASE WHEN user_id = 'mallory' THEN 'x' ELSE '1' END AS INTEGER) < 0")
    monkeypatch.setattr(sql, "check_files", lambda: [check])
    lines = good_lines() + [purchase("mallory-2", 1760716900000000, json.loads(PURCHASE["Body"])["items"], user="mallory")]
    (project / "staging" / NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (result,) = staging.process_files(cfg, staging.staging_files(cfg), refresh_gold=False).files
    assert result.status == "committed"
    assert query(project, "SELECT message_id, reason FROM dead_letter_messages") == \
        [("mallory-2", "load_error:ConversionException")]


def test_an_infrastructure_error_still_fails_the_whole_file(project, monkeypatch):
    """Only data errors are isolated: an I/O error fails the file as before (nothing committed)."""
    cfg = load_config(project / "config.json")
    (project / "staging" / NAME).write_text("\n".join(good_lines()) + "\n", encoding="utf-8")

    def disk_error(*_a, **_k):
        raise duckdb.IOException("IO Error: No space left on device")

    monkeypatch.setattr(staging.silver, "apply_batch", disk_error)
    (result,) = staging.process_files(cfg, staging.staging_files(cfg), refresh_gold=False).files
    assert result.status == "failed" and "No space left" in result.error
    assert (project / "staging" / NAME).exists()
    assert query(project, "SELECT count(*) FROM stg_events") == [(0,)]
    assert query(project, "SELECT status FROM etl_batches") == [("failed",)]


def test_an_exception_without_a_message_is_one_line_and_later_files_load(project, monkeypatch):
    """RuntimeError() has no text: the loader used to raise IndexError on str(exc).splitlines()[0],
    so later files did not load and no failed ledger row was written."""
    cfg = load_config(project / "config.json")
    first = project / "staging" / "processing_batch_20251020T000000_a.jsonl"
    second = project / "staging" / "processing_batch_20251020T000001_b.jsonl"
    first.write_text(LINES[0] + "\n")
    second.write_text(LINES[1] + "\n")
    real = staging._native_chunks

    def fail_first(cfg_, path, *args):
        if path.name == first.name:
            raise RuntimeError()
        return real(cfg_, path, *args)

    monkeypatch.setattr(staging, "_native_chunks", fail_first)
    a, b = staging.process_files(cfg, staging.staging_files(cfg), refresh_gold=False).files
    assert a.status == "failed" and a.error == "RuntimeError: (no message)"
    assert b.status == "committed" and b.loaded_events == 1
    assert query(project, "SELECT file_name, status FROM etl_batches ORDER BY file_name") == \
        [(first.name, "failed"), (second.name, "committed")]


@pytest.mark.parametrize("parser", ["native", "python"])
def test_sqs_attributes_out_of_range_and_lone_surrogates_cost_nothing(project, parser):
    """Before: an int64/int32 overflow in SentTimestamp or ApproximateReceiveCount, or a lone
    surrogate (JSON "\\udcff") in the MessageId, replay_timestamp or an extra field, failed the
    conversion to Arrow, so the whole file failed on every run. Now those events load."""
    write_config(project, parser=parser)
    body = json.loads(json.loads(LINES[0])["Body"])
    lines = []
    for n, attrs in enumerate([{"SentTimestamp": "99999999999999999999"}, {"ApproximateReceiveCount": "99999999999"}]):
        lines.append(json.dumps({"MessageId": f"attrs-{n}", "Attributes": dict(json.loads(LINES[0])["Attributes"], **attrs),
                                 "Body": json.dumps(dict(body, user_id=f"a{n}"))}))
    attrs = json.loads(LINES[0])["Attributes"]
    lines.append(json.dumps({"MessageId": "x", "Attributes": attrs, "Body": json.dumps(dict(body, user_id="b", note="\udcff"))}))
    lines.append(json.dumps({"MessageId": "y", "Attributes": attrs, "Body": json.dumps(dict(body, user_id="c", replay_timestamp="\udcff"))}))
    lines.append(json.dumps({"MessageId": "\udcff", "Attributes": attrs, "Body": json.dumps(dict(body, user_id="d"))}))
    (project / "staging" / NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = run_ps(project)
    assert out.returncode == 0, out.stderr
    assert query(project, "SELECT user_id, sent_ts IS NULL, receive_count FROM stg_events WHERE item_index = 0 "
                          "ORDER BY user_id") == [("a0", True, 1), ("a1", False, None), ("b", False, 1),
                                                  ("c", False, 1), ("d", False, 1)]
    assert query(project, "SELECT count(*) FROM dead_letter_messages") == [(0,)]


@pytest.mark.parametrize("parser", ["native", "python"])
def test_a_lone_low_surrogate_escape_in_a_rejected_body_costs_only_its_own_message(project, parser):
    """Found by the parsers' mutation test: a Body holding the JSON escape \\ude00 (a lone
    surrogate that stands for no invalid byte) is rejected as invalid_utf8, and turning its raw
    text into storable text raised UnicodeEncodeError, so the whole file failed on every run."""
    write_config(project, parser=parser)
    bad = '{"MessageId": "lone-low", "Attributes": {"SentTimestamp": "1760716660002"}, "Body": "{\\"x\\": \\"\\ude00\\"}"}'
    (project / "staging" / NAME).write_text("\n".join(good_lines() + [bad]) + "\n", encoding="utf-8")
    out = run_ps(project)
    assert out.returncode == 0, out.stderr
    assert query(project, "SELECT message_id, reason, raw_body FROM dead_letter_messages") == \
        [("lone-low", "invalid_utf8", '{"x": "\ufffd\ufffd\ufffd"}')]
    ledger_adds_up(project)
    dead = (project / "dead_letter" / NAME).read_text(encoding="ascii")
    assert json.loads(dead)["Body"] == '{"x": "\ude00"}'            # the dead-letter file keeps it exactly
