"""Bad input never crashes a run: every message is loaded or dead-lettered with a reason, and the
good messages of the same batch are unaffected. 10,000 hypothesis-made bodies in all."""
from __future__ import annotations

import pytest

import json
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, given, settings, strategies as st

from nelo_etl import staging, wire

from ..conftest import SAMPLES
from ..silver_helpers import make_project

GOOD_LINES = [l for l in SAMPLES.read_text(encoding="utf-8").splitlines() if l.strip()]
GOOD_BODY = json.loads(json.loads(GOOD_LINES[0])["Body"])
GOOD_IDS = {wire.parse_body(json.loads(l)["Body"]).event_id for l in GOOD_LINES[:8] + GOOD_LINES[11:]}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=30)
timestamps = st.sampled_from([1760716659123, 1760716659, 4102444800000001, -1, 0, 2**63, 4_070_908_800_000_000])
items_texts = st.one_of(
    st.text(max_size=60),
    st.builds(lambda cut: GOOD_BODY["items"][:cut], st.integers(0, len(GOOD_BODY["items"]))),
    st.builds(lambda a, b: GOOD_BODY["items"].replace(a, b, 1),
              st.sampled_from(["price=899.0", "quantity=1", "{", "}", "]", ", item_name=", "int_value=1"]),
              st.sampled_from(["price=-5", "quantity=-3", "price=1e400", "quantity=9e99", "{{", "", "[",
                               ", item_name=x, item_name=", "int_value=abc", "price=$1,2,3.4"])),
)


@st.composite
def bad_bodies(draw) -> bytes:
    kind = draw(st.integers(0, 6))
    body = dict(GOOD_BODY)
    if kind == 0:                                           # truncated JSON
        text = json.dumps(body)
        return text[: draw(st.integers(0, len(text) - 1))].encode()
    if kind == 1:                                           # a field of the wrong type
        body[draw(st.sampled_from(list(body)))] = draw(json_values)
    elif kind == 2:                                         # timestamps in ms, s, far future, negative
        body["event_timestamp"] = draw(timestamps)
    elif kind == 3:                                         # items text mangled
        body["items"] = draw(items_texts)
    elif kind == 4:                                         # deep nesting
        depth = draw(st.integers(50, 3000))
        return ("[" * depth + "]" * depth).encode()
    elif kind == 5:                                         # invalid UTF-8 bytes in the body
        raw = json.dumps(body, ensure_ascii=False).encode()
        at = draw(st.integers(0, len(raw) - 1))
        return raw[:at] + b"\xff\xfe" + raw[at:]
    else:                                                   # a field missing
        body.pop(draw(st.sampled_from(list(body))))
    return json.dumps(body).encode()


def envelope(i: int, body: bytes) -> bytes:
    # the body is placed as a JSON string; invalid bytes stay raw in the file, as a broken producer would
    quoted = json.dumps(body.decode("utf-8", "surrogateescape"), ensure_ascii=False)
    return (b'{"MessageId": "bad-%d", "Attributes": {"SentTimestamp": "1760716700000"}, "Body": ' % i
            + quoted.encode("utf-8", "surrogateescape") + b"}")


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(bodies=st.lists(bad_bodies(), min_size=500, max_size=500))
def test_ten_thousand_bad_bodies_never_crash_a_run(tmp_path_factory, bodies):
    cfg = make_project(tmp_path_factory.mktemp("bad"))
    lines = [envelope(i, b) for i, b in enumerate(bodies)]
    good = [l.encode() for l in GOOD_LINES]
    mixed = good[:6] + lines + good[6:]                    # the samples around the bad ones
    path = Path(cfg.staging_dir) / "processing_batch_20251017T000000_fuzz.jsonl"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    run = staging.process_files(cfg, [path], refresh_gold=False)
    (result,) = run.files
    assert result.status == "committed", result.error
    assert result.received == len(mixed) == result.loaded_events + result.duplicate_events + result.dead_lettered
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        staged = {r[0] for r in con.execute("SELECT event_id FROM stg_events").fetchall()}
        reasons = con.execute("SELECT reason, count(*) FROM dead_letter_messages GROUP BY 1").fetchall()
        dead_ids = {r[0] for r in con.execute("SELECT message_id FROM dead_letter_messages").fetchall()}
    finally:
        con.close()
    assert GOOD_IDS <= staged                               # good messages unaffected
    assert all(reason for reason, _ in reasons)             # every rejection has a reason code
    assert not any(mid in dead_ids for mid in (json.loads(l)["MessageId"] for l in GOOD_LINES[:8]))
    dead_file = Path(cfg.dead_letter_dir) / path.name
    assert len(dead_file.read_text(encoding="ascii").splitlines()) == result.dead_lettered


def test_what_is_valid_on_purpose(tmp_path):
    """Negative prices and quantities load (producer corrections); an event dated 2099 is rejected
    because it lies more than a day after the message was sent; a 1 MB items text loads."""
    cfg = make_project(tmp_path)
    big_items = "[" + ", ".join(["{item_id=X, item_name=" + "n" * 1000 + ", price=1.0, quantity=1}"] * 1000) + "]"
    bodies = [dict(GOOD_BODY, items=GOOD_BODY["items"].replace("price=899.0", "price=-899.0")
                   .replace("quantity=1,", "quantity=-2,", 1)),
              dict(GOOD_BODY, event_timestamp=4_070_908_800_000_000),      # 2099-01-01
              dict(GOOD_BODY, items=big_items, user_id="big")]
    path = Path(cfg.staging_dir) / "processing_batch_20251017T000000_valid.jsonl"
    path.write_text("\n".join(json.dumps({"MessageId": f"v{i}", "Attributes": {"SentTimestamp": "1760716700000"},
                                          "Body": json.dumps(b)}) for i, b in enumerate(bodies)) + "\n")
    (result,) = staging.process_files(cfg, [path], refresh_gold=False).files
    assert (result.loaded_events, result.dead_lettered) == (2, 1)
    con = duckdb.connect(str(cfg.database_path), read_only=True)
    try:
        assert con.execute("SELECT price, quantity FROM stg_events WHERE user_id <> 'big' AND item_index = 0"
                           ).fetchall() == [(-899.0, -2)]
        assert con.execute("SELECT count(*) FROM stg_events WHERE user_id = 'big'").fetchall() == [(1000,)]
        assert con.execute("SELECT reason FROM dead_letter_messages").fetchall() == [("bad_value:event_timestamp",)]
    finally:
        con.close()
