"""Each Silver SQL file the dbt-ga4 way (a few input events, the real SQL, the expected rows), and
hypothesis-made small histories against a plain-Python reference of metrics.md's definitions."""
from __future__ import annotations

import pytest

import hashlib
import itertools
from datetime import datetime, timezone
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, given, settings, strategies as st

from nelo_etl import simulate, wire

from .silver_helpers import load, make_project

T0 = 1_760_700_000_000_000           # 2025-10-17T11:20:00Z, in microseconds
MIN = 60_000_000
_counter = itertools.count()


def item(item_id: str, price: float, quantity: int = 1, usd: float | None = None, **fields) -> str:
    values = {"item_id": item_id, "price": price, "price_in_usd": usd if usd is not None else price / 20,
              "quantity": quantity, **fields}
    return simulate.item_text(values, [])


def line(ts: int, name: str, items: list[str], user: str = "u1", platform: str = "IOS") -> str:
    body = simulate.body_text(ts, user, name, platform, simulate.items_text(items), "2025-10-17T00:00:00Z")
    return wire.message_line(f"m{next(_counter)}", body, ts // 1000 + 500)


def warehouse(tmp: Path, *batches: list[str]) -> duckdb.DuckDBPyConnection:
    """Load each list of lines as one batch file, in order; return a read-only connection."""
    cfg = make_project(tmp)
    for n, lines in enumerate(batches):
        path = tmp / f"processing_batch_2025101{n}T000000_t{n}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        load(cfg, [path])
    return duckdb.connect(str(cfg.database_path), read_only=True)


def session_id(user: str, platform: str, start_us: int) -> str:
    return hashlib.sha256(f"{user}\x1f{platform}\x1f{start_us}".encode()).hexdigest()[:32]


def test_sessions_split_on_gaps_over_30_minutes_and_keep_their_start_date(tmp_path):
    midnight = 1_760_745_600_000_000 - 10 * MIN                      # 2025-10-17T23:50:00Z
    times = [midnight, midnight + 30 * MIN, midnight + 60 * MIN + 1, midnight + 61 * MIN]
    con = warehouse(tmp_path, [line(t, "view_item", [item("A", 10)]) for t in times])
    rows = con.execute("SELECT session_id, session_start_ts, session_end_ts, session_date, events_in_session "
                       "FROM silver_user_sessions ORDER BY session_start_ts").fetchall()
    as_ts = lambda us: datetime.fromtimestamp(us / 1e6, tz=timezone.utc).replace(tzinfo=None)
    assert rows == [
        (session_id("u1", "IOS", times[0]), as_ts(times[0]), as_ts(times[1]), as_ts(times[0]).date(), 2),
        (session_id("u1", "IOS", times[2]), as_ts(times[2]), as_ts(times[3]), as_ts(times[2]).date(), 2)]
    assert str(rows[0][3]) == "2025-10-17"                           # runs past midnight, belongs to its start


def test_session_features_cart_is_the_last_checkout(tmp_path):
    a = [line(T0, "view_item_list", [item("A", 100, item_list_id="l1")]),
         line(T0 + MIN, "view_item", [item("A", 100)]),
         line(T0 + 2 * MIN, "begin_checkout", [item("A", 100, 2, usd=300.0)]),
         line(T0 + 3 * MIN, "begin_checkout", [item("B", 50, 1, usd=400.0), item("A", 100, 1, usd=300.0)])]
    other = [line(T0, "view_item_list", [item("A", 100)], user="u2")]                # a bounce
    con = warehouse(tmp_path, a + other)
    rows = con.execute("SELECT user_id, events_in_session, has_list_view, has_product_view, has_checkout, "
                       "has_purchase, is_bounce, is_abandoned_checkout, cart_value, cart_value_usd, cart_products, "
                       "is_high_value_abandon FROM silver_session_features ORDER BY user_id").fetchall()
    assert rows == [("u1", 4, True, True, True, False, False, True, 150.0, 700.0, ["A", "B"], True),
                    ("u2", 1, True, False, False, False, True, False, None, None, None, False)]


def test_checkout_tie_goes_to_the_greatest_event_id_and_purchase_ends_abandonment(tmp_path):
    first = line(T0, "begin_checkout", [item("A", 10)])
    second = line(T0, "begin_checkout", [item("B", 20)])
    ids = sorted(wire.parse_body(wire.parse_envelope(l).body).event_id for l in (first, second))
    winner = {wire.parse_body(wire.parse_envelope(l).body).event_id: p for l, p in ((first, "A"), (second, "B"))}
    con = warehouse(tmp_path, [first, second, line(T0 + MIN, "purchase", [item("A", 10)])])
    assert con.execute("SELECT cart_products, is_abandoned_checkout, has_purchase FROM silver_session_features"
                       ).fetchall() == [([winner[ids[-1]]], False, True)]


def test_product_versions_a_b_a_and_a_late_event_splits_an_old_version(tmp_path):
    early = [line(T0 + k * MIN, "view_item", [item("P", price)]) for k, price in ((0, 100), (10, 120), (20, 100))]
    late = [line(T0 + 5 * MIN, "purchase", [item("P", 90)])]     # arrives later, inside version 1
    con = warehouse(tmp_path, early, late)
    rows = con.execute("SELECT price, version_number, valid_from, valid_to, is_current FROM dim_products "
                       "ORDER BY valid_from").fetchall()
    ts = lambda k: datetime.fromtimestamp((T0 + k * MIN) / 1e6, tz=timezone.utc).replace(tzinfo=None)
    assert rows == [(100.0, 1, ts(0), ts(5), False), (90.0, 2, ts(5), ts(10), False),
                    (120.0, 3, ts(10), ts(20), False), (100.0, 4, ts(20), None, True)]


def test_one_instant_resolves_to_the_greatest_event_id_and_the_last_item_of_an_event(tmp_path):
    a = line(T0, "view_item", [item("P", 100)])
    b = line(T0, "view_item_list", [item("P", 200), item("P", 300)])     # same product twice: 300 wins here
    ea, eb = (wire.parse_body(wire.parse_envelope(x).body).event_id for x in (a, b))
    expected = 300.0 if eb > ea else 100.0
    con = warehouse(tmp_path, [a, b])
    assert con.execute("SELECT price FROM dim_products").fetchall() == [(expected,)]


def test_platforms_are_an_open_set_and_dates_have_no_holes(tmp_path):
    day = 86_400_000_000
    con = warehouse(tmp_path, [line(T0, "view_item", [], platform="web"),
                               line(T0 + 3 * day, "view_item", [], platform="Android")])
    assert [r[0] for r in con.execute("SELECT platform FROM dim_platforms ORDER BY 1").fetchall()] == ["ANDROID", "WEB"]
    days = [str(r[0]) for r in con.execute("SELECT date_day FROM dim_dates ORDER BY 1").fetchall()]
    assert days == ["2025-10-17", "2025-10-18", "2025-10-19", "2025-10-20"]


def test_fact_line_revenue_falls_back_to_price_times_quantity(tmp_path):
    con = warehouse(tmp_path, [line(T0, "purchase", [item("A", 10, 3, item_revenue=25.0), item("B", 7, 2)])])
    assert con.execute("SELECT item_id, line_revenue, gross_value FROM fct_event_items ORDER BY item_index"
                       ).fetchall() == [("A", 25.0, 30.0), ("B", 14.0, 14.0)]
    assert con.execute("SELECT count(*), max(item_count) FROM fct_events").fetchall() == [(1, 2)]


# ---------------------------------------------------------------------------------------------
# hypothesis: small histories against a plain-Python reference

GAPS = [1, MIN, 29 * MIN, 30 * MIN - 1, 30 * MIN, 30 * MIN + 1, 31 * MIN, 3 * 60 * MIN]


@st.composite
def histories(draw):
    events = []
    for user, platform in draw(st.lists(st.sampled_from([("u1", "IOS"), ("u1", "ANDROID"), ("u2", "IOS")]),
                                        min_size=1, max_size=3, unique=True)):
        t = T0
        for _ in range(draw(st.integers(1, 6))):
            t += draw(st.sampled_from(GAPS))
            events.append((t, user, platform, draw(st.sampled_from(["P", "Q"])), draw(st.sampled_from([100.0, 200.0]))))
    return events, draw(st.integers(1, 3)), draw(st.randoms(use_true_random=False))


def reference_sessions(events):
    out = set()
    by_pair = {}
    for t, user, platform, *_ in events:
        by_pair.setdefault((user, platform), []).append(t)
    for (user, platform), times in by_pair.items():
        times.sort()
        start = prev = times[0]
        count = 1
        for t in times[1:]:
            if t - prev > 30 * MIN:
                out.add((session_id(user, platform, start), count))
                start, count = t, 0
            count += 1
            prev = t
        out.add((session_id(user, platform, start), count))
    return out


def reference_versions(events):
    out = set()
    for product in {e[3] for e in events}:
        observations = sorted((t, price) for t, _, _, p, price in events if p == product)
        current = None
        for t, price in observations:
            if price != current:
                out.add((product, t, price))
                current = price
    return out


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(histories())
def test_small_histories_match_the_reference(tmp_path_factory, history):
    events, n_batches, rnd = history
    # one instant per product at most, so the reference needs no tie rule (tested above)
    seen, unique = set(), []
    for e in events:
        if (e[0], e[3]) not in seen:
            seen.add((e[0], e[3]))
            unique.append(e)
    lines = [line(t, "view_item", [item(p, price)], user=u, platform=pl) for t, u, pl, p, price in unique]
    rnd.shuffle(lines)
    cut = sorted(rnd.sample(range(1, len(lines)), min(n_batches - 1, len(lines) - 1))) if len(lines) > 1 else []
    batches = [lines[a:b] for a, b in zip([0] + cut, cut + [len(lines)])]
    con = warehouse(tmp_path_factory.mktemp("h"), *batches)
    sessions = set(con.execute("SELECT session_id, events_in_session FROM silver_user_sessions").fetchall())
    versions = set(con.execute("SELECT item_id, epoch_us(valid_from), price FROM dim_products").fetchall())
    assert sessions == reference_sessions(unique)
    assert versions == reference_versions(unique)


def test_last_touch_attribution_picks_the_latest_impression_in_session_and_window(tmp_path):
    lines = [line(T0, "view_item_list", [item("A", 10, item_list_id="early", item_list_name="Early")]),
             line(T0 + 5 * MIN, "view_item_list", [item("B", 10, item_list_id="b_list"),
                                                   item("A", 10, item_list_id="late", item_list_name=None)]),
             line(T0 + 10 * MIN, "view_item", [item("A", 10)]),            # -> late (latest impression of A)
             line(T0 + 36 * MIN, "purchase", [item("A", 10, 2, item_revenue=18.0)]),   # 31 min after it: none
             line(T0 + 40 * MIN, "view_item", [item("C", 10)])]            # never impressed: unattributed
    con = warehouse(tmp_path, lines)
    rows = con.execute("SELECT event_name, item_id, item_list_id, line_revenue FROM silver_event_list_attribution "
                       "ORDER BY event_ts").fetchall()
    assert rows == [("view_item", "A", "late", 10.0)]      # the purchase is 31 min after the last impression
    assert con.execute("SELECT item_list_id, count(*) FROM silver_list_impressions GROUP BY 1 ORDER BY 1"
                       ).fetchall() == [("b_list", 1), ("early", 1), ("late", 1)]


def test_attribution_window_is_inclusive_and_null_lists_report_as_not_set(tmp_path):
    lines = [line(T0, "view_item_list", [item("A", 10, item_list_id=None)]),
             line(T0 + 30 * MIN, "begin_checkout", [item("A", 10)])]        # exactly 30:00 later
    con = warehouse(tmp_path, lines)
    assert con.execute("SELECT event_name, item_list_id FROM silver_event_list_attribution").fetchall() == \
        [("begin_checkout", "(not set)")]


def test_list_names_are_the_latest_non_null_over_all_batches(tmp_path):
    first = [line(T0 + 10 * MIN, "view_item_list", [item("A", 1, item_list_id="l", item_list_name="Newer")])]
    late = [line(T0, "view_item_list", [item("A", 1, item_list_id="l", item_list_name="Older")]),
            line(T0 + 20 * MIN, "view_item_list", [item("A", 1, item_list_id="l", item_list_name=None)])]
    con = warehouse(tmp_path, first, late)
    assert con.execute("SELECT item_list_id, item_list_name, first_impression_ts < last_impression_ts "
                       "FROM dim_item_lists").fetchall() == [("l", "Newer", True)]


def codes_param(codes: str) -> str:
    return simulate.param_text("discounts", codes, "string_value")


def coded(item_id: str, price: float, codes: str, quantity: int = 1, discount: float = 0.0, **fields) -> str:
    values = {"item_id": item_id, "price": price, "price_in_usd": price / 20, "quantity": quantity, **fields}
    return simulate.item_text(values, [codes_param(codes),
                                       simulate.param_text("discountt", discount, "double_value")])


def test_campaign_windows_current_flags_experiments_and_product_campaigns(tmp_path):
    day = 86_400_000_000
    lines = [line(T0, "view_item", [coded("A", 100, "OLD|NELO_XP_CHECKOUT_B")]),
             line(T0 + 1 * day, "purchase", [coded("A", 100, "NEW|OLD", 2, 30.0, item_revenue=170.0)]),
             line(T0 + 9 * day, "view_item", [coded("B", 50, "NEW")])]
    con = warehouse(tmp_path, lines[2:], lines[:2])                    # late batch second
    assert con.execute("SELECT campaign_id, epoch_us(first_event_ts), epoch_us(last_event_ts), is_current "
                       "FROM dim_campaigns ORDER BY 1").fetchall() == [
        ("NEW", T0 + day, T0 + 9 * day, True), ("OLD", T0, T0 + day, False)]     # 8 days before the as-of
    assert con.execute("SELECT experiment_id, variant, arm_code FROM dim_experiments").fetchall() == \
        [("CHECKOUT", "B", "NELO_XP_CHECKOUT_B")]
    assert con.execute("SELECT item_id, campaign_id, units, gross_revenue, discount_value, net_revenue, "
                       "epoch_us(first_seen_ts) FROM fct_product_campaigns ORDER BY 1, 2").fetchall() == [
        ("A", "NEW", 2, 200.0, 30.0, 170.0, T0 + day), ("A", "OLD", 2, 200.0, 30.0, 170.0, T0),
        ("B", "NEW", 0, 0.0, 0.0, 0.0, T0 + 9 * day)]


def test_users_get_a_version_at_first_purchase_and_first_installment_use(tmp_path):
    inst = simulate.item_text({"item_id": "A", "price": 10.0, "quantity": 1},
                              [simulate.param_text("number_of_installments", 6, "int_value")])
    lines = [line(T0, "view_item", [item("A", 10)]),
             line(T0 + MIN, "purchase", [item("A", 10)]),
             line(T0 + 2 * MIN, "purchase", [inst], platform="ANDROID")]
    con = warehouse(tmp_path, lines)
    assert con.execute("SELECT epoch_us(valid_from), epoch_us(valid_to), is_current, is_buyer, has_used_installments, "
                       "platforms FROM dim_users ORDER BY valid_from").fetchall() == [
        (T0, T0 + MIN, False, False, False, ["ANDROID", "IOS"]),
        (T0 + MIN, T0 + 2 * MIN, False, True, False, ["ANDROID", "IOS"]),
        (T0 + 2 * MIN, None, True, True, True, ["ANDROID", "IOS"])]


def test_orders_sum_line_revenue_and_carry_their_session(tmp_path):
    inst = simulate.item_text({"item_id": "B", "price": 5.0, "price_in_usd": 0.25, "quantity": 2, "coupon": "NELO10"},
                              [simulate.param_text("number_of_installments", 3, "int_value"),
                               simulate.param_text("discountt", 1.5, "double_value")])
    lines = [line(T0, "view_item", [item("A", 10)]),
             line(T0 + MIN, "purchase", [item("A", 10, 3, item_revenue=25.0, item_revenue_in_usd=1.25), inst]),
             line(T0 + 2 * MIN, "purchase", [])]
    con = warehouse(tmp_path, lines)
    rows = con.execute("SELECT order_value, order_value_usd, gross_value, discount_value, units, is_installment_order, "
                       "max_installments, has_coupon, has_discount, products, session_id = first_value(session_id) "
                       "OVER () FROM fct_orders ORDER BY order_ts").fetchall()
    assert rows == [(35.0, 1.75, 40.0, 1.5, 5, True, 3, True, True, ["A", "B"], True),
                    (0.0, 0.0, 0.0, 0.0, 0, False, None, False, False, [], True)]


def test_a_late_event_moves_an_order_into_the_merged_session_and_later_batches_leave_older_orders(tmp_path):
    as_ts = lambda us: datetime.fromtimestamp(us / 1e6, tz=timezone.utc).replace(tzinfo=None)
    first = [line(T0, "purchase", [item("A", 10)]),
             line(T0 + 40 * MIN, "view_item", [item("A", 10)]),
             line(T0 + 50 * MIN, "purchase", [item("A", 10, 2)])]
    late = [line(T0 + 20 * MIN, "view_item", [item("A", 10)])]       # joins the two sessions
    after = [line(T0 + 5 * 60 * MIN, "purchase", [item("A", 10)])]   # a new session, hours later
    con = warehouse(tmp_path, first, late, after)
    rows = con.execute("SELECT epoch_us(order_ts), session_id, session_date, order_value, recomputed_from_ts "
                       "FROM fct_orders ORDER BY order_ts").fetchall()
    merged = session_id("u1", "IOS", T0)
    assert [r[:4] for r in rows] == [(T0, merged, as_ts(T0).date(), 10.0),
                                     (T0 + 50 * MIN, merged, as_ts(T0).date(), 20.0),
                                     (T0 + 5 * 60 * MIN, session_id("u1", "IOS", T0 + 5 * 60 * MIN),
                                      as_ts(T0 + 5 * 60 * MIN).date(), 10.0)]
    # the late event recomputed the pair from the session in force (T0); the batch after it only
    # its own session: the two earlier orders were not rewritten (they keep the late batch's mark)
    assert [r[4] for r in rows] == [as_ts(T0), as_ts(T0), as_ts(T0 + 5 * 60 * MIN)]
    # and the same rows as one batch of everything
    again = warehouse(tmp_path / "one", first + late + after)
    assert again.execute("SELECT epoch_us(order_ts), session_id, session_date, order_value FROM fct_orders "
                         "ORDER BY order_ts").fetchall() == [r[:4] for r in rows]


@pytest.mark.slow        # seven warehouses (8 s): the full suite runs it, the fast subset does not
def test_product_campaigns_and_users_add_up_across_batches_in_any_order_and_with_redelivery(tmp_path):
    """Both tables add a batch's new rows to what they hold (not the whole history): three
    batches in two orders, one of them re-delivering a purchase, equal one batch of everything."""
    inst = simulate.item_text({"item_id": "A", "price": 10.0, "quantity": 1},
                              [simulate.param_text("number_of_installments", 6, "int_value"), codes_param("NEW")])
    buy = line(T0 + 2 * MIN, "purchase", [coded("A", 100, "NEW|OLD", 2, 30.0, item_revenue=170.0)])
    batches = [[line(T0 + 5 * MIN, "view_item", [coded("A", 100, "OLD")])],
               [buy, line(T0 + 9 * MIN, "purchase", [inst], platform="ANDROID")],
               [line(T0, "view_item", [coded("A", 90, "NEW")], user="u2"), buy]]      # late, and buy again
    query = {"fct_product_campaigns": "SELECT item_id, campaign_id, epoch_us(first_seen_ts), epoch_us(last_seen_ts), "
                                      "units, gross_revenue, discount_value, net_revenue, purchased_lines "
                                      "FROM fct_product_campaigns ORDER BY 1, 2",
             "dim_users": "SELECT user_id, epoch_us(valid_from), epoch_us(valid_to), is_current, is_buyer, "
                          "has_used_installments, epoch_us(first_purchase_ts), platforms FROM dim_users ORDER BY 1, 2"}
    one = warehouse(tmp_path / "one", [x for b in batches for x in b])
    expected = {name: one.execute(q).fetchall() for name, q in query.items()}
    assert expected["fct_product_campaigns"] == [
        ("A", "NEW", T0, T0 + 9 * MIN, 3, 210.0, 30.0, 180.0, 2),
        ("A", "OLD", T0 + 2 * MIN, T0 + 5 * MIN, 2, 200.0, 30.0, 170.0, 1)]
    assert expected["dim_users"] == [
        ("u1", T0 + 2 * MIN, T0 + 9 * MIN, False, True, False, T0 + 2 * MIN, ["ANDROID", "IOS"]),
        ("u1", T0 + 9 * MIN, None, True, True, True, T0 + 2 * MIN, ["ANDROID", "IOS"]),
        ("u2", T0, None, True, False, False, None, ["IOS"])]
    for n, order in enumerate([batches, batches[::-1]]):
        con = warehouse(tmp_path / f"order{n}", *order)
        assert {name: con.execute(q).fetchall() for name, q in query.items()} == expected, n
