"""The traffic simulator: deterministic, in the wire format, and rich enough for every metric."""
from __future__ import annotations

import collections
import datetime as dt
from decimal import Decimal
import subprocess
import sys

import pytest

from nelo_etl import simulate, wire
from nelo_etl.simulate import MINUTE_US, SimConfig, Simulator

from .conftest import ROOT


@pytest.fixture(scope="module")
def chaos_messages() -> list[simulate.Message]:
    return Simulator(SimConfig.chaos(events=6000, seed=7, days=4, duplicate_rate=0.03, resend_rate=0.03,
                                     late_rate=0.05, bad_rate=0.02)).messages()


@pytest.fixture(scope="module")
def parsed(chaos_messages):
    good, bad = [], collections.Counter()
    for m in chaos_messages:
        env = wire.parse_envelope(m.line())
        try:
            good.append((env, wire.parse_body(env.body, sent_timestamp_ms=env.sent_timestamp_ms)))
        except wire.RejectedMessage as exc:
            bad[exc.reason] += 1
    return good, bad


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = [m.line() for m in Simulator(SimConfig.chaos(events=300, seed=3)).messages()]
    b = [m.line() for m in Simulator(SimConfig.chaos(events=300, seed=3)).messages()]
    c = [m.line() for m in Simulator(SimConfig.chaos(events=300, seed=4)).messages()]
    assert a == b and a != c


def test_fast_line_rendering_equals_the_generic_serializer(chaos_messages):
    for m in chaos_messages[:2000]:
        assert m.line() == wire.message_line(m.message_id, m.body, m.sent_ms, m.receive_count)


def test_messages_arrive_in_order_and_the_event_count_is_exact(chaos_messages, parsed):
    sent = [m.sent_ms for m in chaos_messages]
    assert sent == sorted(sent)
    originals = {m.seq for m in chaos_messages if m.receive_count == 1 and m.extra is None and m.bad_body is None}
    good, _ = parsed
    assert len({event.event_id for _, event in good}) <= 6000 <= len(originals) + 200


def test_chaos_knobs_make_redeliveries_resends_late_and_bad_messages(chaos_messages, parsed):
    good, bad = parsed
    ids = collections.Counter(m.message_id for m in chaos_messages)
    assert sum(1 for n in ids.values() if n > 1) > 50                          # SQS redelivery
    by_event = collections.defaultdict(set)
    for env, event in good:
        by_event[event.event_id].add(env.message_id)
    assert sum(1 for mids in by_event.values() if len(mids) > 1) > 50         # producer re-sends
    late = [env for env, event in good if env.sent_timestamp_ms * 1000 - event.event_timestamp > 3600 * 10**6]
    assert len(late) > 50
    assert set(bad) == {"invalid_json", "missing_field:user_id", "bad_type:event_timestamp",
                        "items_unparseable", "bad_value:event_timestamp"}


def test_traffic_covers_what_the_metrics_need(parsed):
    good, _ = parsed
    events = {event.event_id: event for _, event in good}.values()
    names = collections.Counter(e.event_name for e in events)
    assert {"view_item_list", "view_item", "add_to_cart", "begin_checkout", "purchase"} <= set(names)
    assert {e.platform for e in events} == {"IOS", "ANDROID"}
    items = [(e, i) for e in events for i in e.items]
    assert {i.values["item_list_id"] for e, i in items if e.event_name == "view_item_list"} >= \
        {"para_ti", "ofertas_2x1", "(not set)", None}
    assert any(i.values["item_list_name"] == "Ofertas, 2x1 = ahorro" for _, i in items)
    assert any("," in (i.values["item_name"] or "") and "=" in (i.values["item_name"] or "") for _, i in items)
    assert {c for _, i in items for c in i.campaign_codes} >= {"BUENFIN25", "HOTSALE"}
    assert {(a.experiment_id, a.variant) for _, i in items for a in i.experiment_arms} >= \
        {("CHECKOUT", "A"), ("CHECKOUT", "B"), ("INSTALL12", "CONTROL")}
    purchases = [i for e, i in items if e.event_name == "purchase"]
    assert any(i.values["coupon"] for i in purchases)
    assert any((i.installments or 0) > 1 for i in purchases)
    assert all(i.values["item_revenue"] is not None for i in purchases)
    checkouts: dict[str, Decimal] = collections.defaultdict(Decimal)
    for e, i in items:
        if e.event_name == "begin_checkout":
            checkouts[e.event_id] += i.values["price_in_usd"] * i.values["quantity"]
    assert max(checkouts.values()) > 500                                       # high-value carts


def test_sessions_have_exact_30_minute_gaps_and_cross_midnight(parsed):
    good, _ = parsed
    by_user = collections.defaultdict(set)
    for _, e in good:
        by_user[(e.user_id, e.platform)].add(e.event_timestamp)
    gaps = collections.Counter()
    crossings = 0
    for times in by_user.values():
        ordered = sorted(times)
        for a, b in zip(ordered, ordered[1:]):
            gaps[b - a] += 1
            if 0 < b - a <= 30 * MINUTE_US and a // 86_400_000_000 != b // 86_400_000_000:
                crossings += 1
    assert gaps[30 * MINUTE_US] > 5 and gaps[30 * MINUTE_US + 1] > 0
    assert crossings > 0


def test_prices_change_and_some_change_back():
    sim = Simulator(SimConfig(events=10, seed=1))
    histories = [p.prices for p in sim.products]
    assert any(len(h) > 1 for h in histories)
    assert any(len(h) == 3 and h[0] == h[2] != h[1] for h in histories)    # A -> B -> A


def test_batches_are_cut_by_arrival_time_or_count(tmp_path, chaos_messages):
    paths = simulate.write_batches(chaos_messages, str(tmp_path / "a"), batches=5)
    assert len(paths) == 5
    lines = [line for p in paths for line in open(p, encoding="utf-8").read().splitlines()]
    assert lines == [m.line() for m in chaos_messages]
    windows = simulate.write_batches(chaos_messages, str(tmp_path / "b"), batch_minutes=60)
    for path in windows:
        hours = {wire.parse_envelope(line).sent_timestamp_ms // 3_600_000 for line in open(path, encoding="utf-8")}
        assert len(hours) == 1
    name = windows[0].rsplit("/", 1)[1]
    stamp = dt.datetime.strptime(name.split("_")[2], "%Y%m%dT%H%M%S").replace(tzinfo=dt.timezone.utc)
    assert int(stamp.timestamp() * 1000) <= chaos_messages[0].sent_ms


def test_cli_writes_files_and_reports_its_speed(tmp_path):
    out = subprocess.run([sys.executable, "-m", "nelo_etl.simulate", "--events", "500", "--chaos",
                          "--batches", "3", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "simulated 500 events" in out.stdout and "events/s" in out.stdout
    assert len(list(tmp_path.glob("processing_batch_*.jsonl"))) == 3
    bad = subprocess.run([sys.executable, "-m", "nelo_etl.simulate", "--events", "5"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--out" in bad.stderr
