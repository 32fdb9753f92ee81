"""Hypothesis round trips: what the simulator's serializer writes, the parser reads back."""
from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given, settings, strategies as st

from nelo_etl import simulate, wire

# Values may hold commas, "=", quotes, parentheses and any Unicode, but never brackets or braces,
# nor ", <item key>=" (sqs-messages.md). Control characters are allowed too: JSON escapes them.
_FORBIDDEN_SEQ = re.compile(r", (" + "|".join(wire.ITEM_KEYS + wire.PARAM_VALUE_KEYS + ("value",)) + r")=")
text_value = st.text(
    alphabet=st.characters(blacklist_characters="{}[]", blacklist_categories=("Cs",)),
    min_size=1, max_size=30,
).filter(lambda s: s.strip() and not _FORBIDDEN_SEQ.search(s) and s not in ("null", "(not set)"))
tricky = st.sampled_from(["Ofertas, 2x1 = ahorro", 'Pantalla 55" (2025)', "a=b, c", "Audífonos, con Micrófono",
                          "it's", "x,", "=", ", ", "日本語 ✨"])
names = st.one_of(text_value, tricky)
money = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
code = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", min_size=1, max_size=12)


def as_money(x: float | None) -> Decimal | None:
    """What the parser makes of a Java double: its decimal text rounded to six places."""
    return None if x is None else Decimal(repr(x)).quantize(Decimal("0.000001"), ROUND_HALF_UP)


@st.composite
def items(draw):
    fields = {
        "item_id": draw(names), "item_name": draw(names), "item_brand": draw(st.none() | names),
        "price": draw(money), "price_in_usd": draw(money), "quantity": draw(st.integers(-5, wire.INTEGER_LIMITS["quantity"])),
        "item_list_id": draw(st.none() | names), "item_list_name": draw(st.none() | names),
        "coupon": draw(st.none() | names), "item_revenue": draw(st.none() | money),
    }
    # a code holding the experiment pattern is an arm, never a campaign (the contract)
    campaigns = draw(st.lists(code.filter(lambda c: "NELO_XP_" not in c), max_size=3, unique=True))
    arms = draw(st.lists(st.tuples(code.filter(lambda c: "_" not in c), code.filter(lambda c: "_" not in c)),
                         max_size=2, unique=True))
    codes = campaigns + [f"NELO_XP_{e}_{v}" for e, v in arms]
    discount = draw(st.none() | money)
    installments = draw(st.none() | st.integers(0, 48))
    scientific = draw(st.booleans())
    params = [simulate.param_text("in_stock", draw(st.integers(0, 1)), "int_value")]
    if codes:
        params.append(simulate.param_text("discounts", "|".join(codes), "string_value"))
    if discount is not None:
        params.append(simulate.param_text("discountt", simulate.java_double(discount, scientific), "double_value"))
    if installments is not None:
        params.append(simulate.param_text("number_of_installments", installments, "int_value"))
    return fields, codes, campaigns, arms, discount, installments, params


@settings(max_examples=300, deadline=None)
@given(st.lists(items(), max_size=4))
def test_items_round_trip(generated):
    text = simulate.items_text(simulate.item_text(fields, params) for fields, *_, params in generated)
    parsed = wire.parse_items(text)
    assert len(parsed) == len(generated)
    for index, (item, (fields, codes, campaigns, arms, discount, installments, _)) in enumerate(zip(parsed, generated)):
        assert item.item_index == index
        for key, value in fields.items():
            expected = as_money(value) if key in wire.NUMBER_KEYS else value
            assert item.values[key] == expected, key
        assert item.values["item_variant"] is None                 # written as (not set)
        assert item.discount_codes == [c for i, c in enumerate(codes) if c not in codes[:i]]
        assert item.campaign_codes == [c for c in campaigns if "NELO_XP_" not in c]
        assert [(a.experiment_id, a.variant) for a in item.experiment_arms] == list(arms)
        assert item.discount_value == as_money(discount)
        assert item.installments == installments


@settings(max_examples=200, deadline=None)
@given(ts=st.integers(wire.MIN_EVENT_TS_US, wire.MAX_EVENT_TS_US - 1), user=names, event=names,
       platform=names, extra=st.dictionaries(st.sampled_from(["app_version", "os", "x"]), names, max_size=2))
def test_body_and_line_round_trip(ts, user, event, platform, extra):
    body = simulate.body_text(ts, user, event, platform, "[]", "2025-10-17T15:57:40.002311Z", extra)
    line = wire.message_line("m-1", body, 1760716660002, 2)
    assert json.loads(line)["Body"] == body
    env = wire.parse_envelope(line)
    assert (env.message_id, env.sent_timestamp_ms, env.receive_count) == ("m-1", 1760716660002, 2)
    parsed = wire.parse_body(env.body)
    assert (parsed.event_timestamp, parsed.user_id, parsed.event_name, parsed.platform) == \
        (ts, user, event, platform.upper())
    assert parsed.extra_fields == extra
    assert parsed.event_id == wire.event_id_of(ts, user, event, platform, "[]")


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.booleans())
def test_java_doubles_round_trip(x, scientific):
    text = simulate.java_double(x, scientific)
    assert wire.parse_number(text, "x") == x
    if scientific or (x != 0 and not 1e-3 <= abs(x) < 1e7):
        assert re.fullmatch(r"-?\d\.\d+E-?\d+", text), text
    else:
        assert re.fullmatch(r"-?\d+\.\d+", text), text
