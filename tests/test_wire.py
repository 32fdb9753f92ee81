"""The contract parser, starting from every one of the twelve samples."""
from __future__ import annotations

import hashlib
import json

import pytest
from decimal import Decimal

from nelo_etl import wire
from nelo_etl.wire import RejectedMessage


def parse_sample(sample_lines: list[str], n: int) -> wire.ParsedEvent:
    env = wire.parse_envelope(sample_lines[n - 1])
    return wire.parse_body(env.body, sent_timestamp_ms=env.sent_timestamp_ms)


def reject_reason(sample_lines: list[str], n: int) -> str:
    env = wire.parse_envelope(sample_lines[n - 1])
    with pytest.raises(RejectedMessage) as info:
        wire.parse_body(env.body, sent_timestamp_ms=env.sent_timestamp_ms)
    return info.value.reason


def contract_event_id(body: dict) -> str:
    """event_id exactly as sqs-messages.md words it, written independently of the parser."""
    key = "\x1f".join([str(body["event_timestamp"]), body["user_id"], body["event_name"],
                       body["platform"].upper(), body["items"]])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def test_every_sample_is_loaded_or_rejected_as_the_contract_says(sample_lines):
    outcomes = {}
    for n in range(1, 13):
        try:
            outcomes[n] = parse_sample(sample_lines, n).event_name
        except RejectedMessage as exc:
            outcomes[n] = "rejected:" + exc.reason
    assert outcomes == {
        1: "view_item_list", 2: "view_item", 3: "begin_checkout", 4: "purchase", 5: "purchase",
        6: "begin_checkout", 7: "view_item_list", 8: "view_item_list",
        9: "rejected:invalid_json", 10: "rejected:missing_field:user_id",
        11: "rejected:items_unparseable", 12: "add_to_cart",
    }


def test_bad_samples_have_distinct_reasons_and_details(sample_lines):
    reasons = [reject_reason(sample_lines, n) for n in (9, 10, 11)]
    assert len(set(reasons)) == 3
    env = wire.parse_envelope(sample_lines[9])
    with pytest.raises(RejectedMessage) as info:
        wire.parse_body(env.body)
    # sample 10 is also mistyped; the detail says so
    assert "bad_type:event_timestamp" in info.value.detail


def test_event_id_follows_the_contract_for_every_good_sample(sample_lines):
    for n in (1, 2, 3, 4, 5, 6, 7, 8, 12):
        env = wire.parse_envelope(sample_lines[n - 1])
        assert parse_sample(sample_lines, n).event_id == contract_event_id(json.loads(env.body))


def test_sample_5_is_the_same_event_as_sample_4(sample_lines):
    four, five = parse_sample(sample_lines, 4), parse_sample(sample_lines, 5)
    assert wire.parse_envelope(sample_lines[3]).message_id != wire.parse_envelope(sample_lines[4]).message_id
    assert four.replay_timestamp != five.replay_timestamp
    assert four.event_id == five.event_id


def test_sample_1_gives_two_item_rows_with_exact_values(sample_lines):
    event = parse_sample(sample_lines, 1)
    assert event.platform == "ANDROID" and event.event_timestamp == 1760716659123456
    first, second = event.items
    assert (first.item_index, second.item_index) == (0, 1)
    assert first.values["item_id"] == "SKU-100231"
    assert first.values["item_name"] == "Audífonos JBL Tune 520BT, con Micrófono"
    assert (first.values["price"], first.values["price_in_usd"], first.values["quantity"]) == (899.0, 45.5, 1)
    assert first.values["item_brand"] is None and first.values["coupon"] is None   # (not set)
    assert first.values["item_revenue"] is None                                   # null
    assert (first.values["item_list_id"], first.values["item_list_name"], first.values["item_list_index"]) \
        == ("para_ti", "Para ti", "1")
    assert first.discount_codes == ["BUENFIN25", "NELO_XP_CHECKOUT_B"]
    assert first.campaign_codes == ["BUENFIN25"]
    assert first.experiment_arms == [wire.ExperimentArm("NELO_XP_CHECKOUT_B", "CHECKOUT", "B")]
    assert (first.discount_value, first.total_price, first.is_in_stock) == (Decimal("134.85"), Decimal("764.15"), True)
    assert second.values["item_id"] == "SKU-208871"
    assert second.values["item_name"] == 'Pantalla Samsung 55" Crystal UHD 4K (2025)'
    assert (second.values["price"], second.values["price_in_usd"]) == (10399.0, 525.25)
    assert second.values["item_list_index"] == "2"
    assert second.campaign_codes == [] and second.experiment_arms == [] and second.discount_value is None


def test_sample_4_purchase_reads_text_money_and_installments(sample_lines):
    (item,) = parse_sample(sample_lines, 4).items
    assert item.total_price == Decimal("764.15")               # "$764.15" as text
    assert (item.values["item_revenue"], item.values["item_revenue_in_usd"]) == (Decimal("764.15"), Decimal("38.68"))
    assert item.values["coupon"] == "NELO10"
    assert (item.installments, item.installment_price) == (4, Decimal("191.04"))


def test_sample_6_java_numbers_survive(sample_lines):
    big, shoes = parse_sample(sample_lines, 6).items
    assert big.total_price == 10399.0                         # 1.0399E4
    assert (big.installments, big.installment_price, big.discount_value) == (12, Decimal("866.58"), 0)
    assert big.campaign_codes == ["HOTSALE"]
    assert shoes.values["item_name"] == "Tenis Nike Revolution 7 = Talla 27"
    assert shoes.values["quantity"] == 2 and shoes.is_in_stock is False
    assert shoes.discount_codes == []                         # discounts with every value null
    assert shoes.item_params_extra == {"_el": "8.5E-4"}       # diagnostics kept raw, exactly
    assert float(shoes.item_params_extra["_el"]) == 0.00085


def test_sample_7_list_name_with_comma_and_equals_and_lower_case_platform(sample_lines):
    event = parse_sample(sample_lines, 7)
    assert event.platform == "IOS"
    (item,) = event.items
    assert item.values["item_list_name"] == "Ofertas, 2x1 = ahorro"
    assert item.values["item_list_id"] == "(not set)"          # reported as the list "(not set)"


def test_sample_8_has_no_items_and_sample_12_keeps_extra_fields(sample_lines):
    assert parse_sample(sample_lines, 8).items == []
    twelve = parse_sample(sample_lines, 12)
    assert twelve.event_name == "add_to_cart"
    assert twelve.extra_fields == {"app_version": "4.18.0"}


def test_the_samples_file_is_a_valid_batch_file(samples_path):
    envelopes = [wire.parse_envelope(line) for _, line in wire.iter_batch_lines(str(samples_path))]
    assert len(envelopes) == 12
    assert len({e.message_id for e in envelopes}) == 12
    assert envelopes[10].receive_count == 3 and envelopes[0].sent_timestamp_ms == 1760716660002


GOOD = {"event_timestamp": 1760716659123456, "user_id": "u1", "event_name": "view_item",
        "platform": "IOS", "items": "[]"}


@pytest.mark.parametrize("change, reason", [
    ({"event_timestamp": "1760716659123456"}, "bad_type:event_timestamp"),
    ({"event_timestamp": 1760716659123456.0}, "bad_type:event_timestamp"),
    ({"event_timestamp": True}, "bad_type:event_timestamp"),
    ({"event_timestamp": 1760716659123}, "bad_value:event_timestamp"),        # milliseconds
    ({"event_timestamp": 1760716659}, "bad_value:event_timestamp"),           # seconds
    ({"user_id": 42}, "bad_type:user_id"),
    ({"user_id": ""}, "bad_type:user_id"),
    ({"platform": "  "}, "bad_type:platform"),
    ({"items": ["x"]}, "bad_type:items"),
    ({"event_name": None}, "missing_field:event_name"),
    ({"items": "[{item_id=A, price=abc}]"}, "bad_item_value:price"),
    ({"items": "[{item_id=A, quantity=1.5}]"}, "bad_item_value:quantity"),
    ({"items": "[{item_id=A, price=NaN}]"}, "bad_item_value:price"),
    ({"items": "[{item_id=A}"}, "items_unparseable"),
    ({"items": "[{item_id=A}, ]"}, "items_unparseable"),
    ({"items": "[{item_id=A}{item_id=B}]"}, "items_unparseable"),
    ({"items": "[{item_id=A, item_id=B}]"}, "items_unparseable"),
    ({"items": "[{foo=1, item_id=A}]"}, "items_unparseable"),
    ({"items": "[{item_id=A, item_params=[{key=x, value={string_value=1}}, ]}]"}, "items_unparseable"),
    ({"items": "{item_id=A}"}, "items_unparseable"),
    ({"user_id": "\ud800"}, "invalid_utf8"),
    ({"user_id": "u" * (wire.MAX_TEXT + 1)}, "bad_value:user_id"),
    ({"event_name": "é" * (wire.MAX_TEXT + 1)}, "bad_value:event_name"),
    ({"platform": "I" * (wire.MAX_TEXT + 1)}, "bad_value:platform"),
    ({"replay_timestamp": "2" * (wire.MAX_TEXT + 1)}, "bad_value:replay_timestamp"),
])
def test_bad_bodies_get_stable_reason_codes(change, reason):
    body = dict(GOOD, **change)
    with pytest.raises(RejectedMessage) as info:
        wire.parse_body(json.dumps(body))
    assert info.value.reason == reason


def test_non_object_and_far_future_bodies():
    with pytest.raises(RejectedMessage, match="not_an_object"):
        wire.parse_body("[1, 2]")
    with pytest.raises(RejectedMessage, match="bad_value:event_timestamp"):
        # dated two days after the envelope says it was sent
        wire.parse_body(json.dumps(GOOD), sent_timestamp_ms=GOOD["event_timestamp"] // 1000 - 2 * 86_400_000)
    # a few hours of producer clock skew is tolerated
    event = wire.parse_body(json.dumps(GOOD), sent_timestamp_ms=GOOD["event_timestamp"] // 1000 - 3_600_000)
    assert event.user_id == "u1"


def test_envelope_errors():
    for line, detail in [("not json", "not JSON"), ("[]", "not a JSON object"),
                         ('{"Body": "{}"}', "MessageId"), ('{"MessageId": "m"}', "Body")]:
        with pytest.raises(RejectedMessage) as info:
            wire.parse_envelope(line)
        assert info.value.reason == "invalid_envelope" and detail in info.value.detail
    env = wire.parse_envelope('{"MessageId": "m", "ReceiptHandle": "r", "Body": "{}", "Attributes": {}}')
    assert (env.message_id, env.body, env.sent_timestamp_ms) == ("m", "{}", None)


@pytest.mark.parametrize("raw, what, value", [
    ("899.0", "price", "899"), ("8.5E-4", "price", "0.00085"), ("1.0E7", "price", "10000000"),
    ("1.0399E4", "price", "10399"), ("-2", "price", "-2"),
    ("$1,299.00", "price", "1299"), ("$1,299.00", "price_in_usd", "1299"), ("MXN 1,299.50", "price", "1299.5"),
    ("1,299.00 MXN", "totalPrice", "1299"), ("USD 45.50", "price_in_usd", "45.5"), (" 45.5 ", "price", "45.5"),
    ("-$5.25", "discountt", "-5.25"), ("1234567", "price", "1234567"),
    # six decimal places, rounded half away from zero (as DuckDB's cast to DECIMAL(18, 6))
    ("0.0000005", "price", "0.000001"), ("-0.0000015", "price", "-0.000002"), ("1.23456789", "price", "1.234568"),
    ("999999999999.999999", "price", "999999999999.999999"),
    ("null", "price", None), ("(not set)", "price", None), (None, "price", None),
])
def test_money(raw, what, value):
    parsed = wire.parse_money(raw, what)
    assert parsed == (None if value is None else Decimal(value))
    assert parsed is None or parsed.as_tuple().exponent == -6       # DECIMAL(18, 6)


@pytest.mark.parametrize("raw, what", [
    ("abc", "price"), ("1.2.3", "price"), ("inf", "price"), ("$", "price"), ("NaN", "price"),
    # strict money text: thousands groups of three, a currency code only of the field's currency
    ("1.299,50", "price"), ("12abc", "price"), ("1,2,3.4", "price"), ("12,34", "price"),
    ("MXN 1,299.50", "price_in_usd"), ("USD 5", "price"), ("EUR 5", "price"), ("MXN 5 MXN", "price"),
    ("1_000", "price"), ("0x10", "price"), ("€5", "price"),
    # the range: |value| < 10^12, after rounding
    ("1.0E33", "price"), ("1e999", "price"), ("1.0E12", "price"), ("-1000000000000", "item_revenue"),
    ("999999999999.9999995", "price"), ("1.0E31", "discountt"),
])
def test_money_that_is_not(raw, what):
    with pytest.raises(RejectedMessage, match=f"bad_item_value:{what}"):
        wire.parse_money(raw, what)


@pytest.mark.parametrize("raw, what, value", [
    ("4", "quantity", 4), ("4.0", "quantity", 4), ("1.0E1", "quantity", 10), ("-3", "quantity", -3),
    ("100000", "quantity", 100_000), ("1000", "number_of_installments", 1000), ("null", "quantity", None),
])
def test_whole_numbers(raw, what, value):
    assert wire.parse_integer(raw, what) == value


@pytest.mark.parametrize("raw, what", [
    ("1.5", "quantity"), ("100001", "quantity"), ("1.0E6", "quantity"), ("9223372036854775808", "quantity"),
    ("1001", "number_of_installments"), ("$4", "quantity"), ("4 units", "quantity"),
])
def test_whole_numbers_that_are_not(raw, what):
    with pytest.raises(RejectedMessage, match=f"bad_item_value:{what}"):
        wire.parse_integer(raw, what)


def test_repeated_event_text_up_to_the_limit_is_accepted():
    """user_id and friends are copied onto every item row: up to MAX_TEXT characters (not bytes)."""
    event = wire.parse_body(json.dumps(dict(GOOD, user_id="é" * wire.MAX_TEXT, replay_timestamp="r" * wire.MAX_TEXT)))
    assert event.user_id == "é" * wire.MAX_TEXT and event.replay_timestamp == "r" * wire.MAX_TEXT


def test_an_event_with_too_many_items_is_rejected():
    item = "{item_id=A, price=1.0, quantity=1}"
    assert len(wire.parse_items("[" + ", ".join([item] * wire.MAX_ITEMS) + "]")) == wire.MAX_ITEMS
    with pytest.raises(RejectedMessage) as info:
        wire.parse_items("[" + ", ".join([item] * (wire.MAX_ITEMS + 1)) + "]")
    assert info.value.reason == "bad_value:items"


def test_codes_are_trimmed_deduped_and_split_into_campaigns_and_arms():
    codes, campaigns, arms = wire.split_codes(
        " BUENFIN25 ||NELO_XP_INSTALL12_CONTROL|HOTSALE|BUENFIN25|NELO_XP_SOLO", "NELO_XP_")
    assert codes == ["BUENFIN25", "NELO_XP_INSTALL12_CONTROL", "HOTSALE", "NELO_XP_SOLO"]
    assert campaigns == ["BUENFIN25", "HOTSALE"]
    assert arms == [wire.ExperimentArm("NELO_XP_INSTALL12_CONTROL", "INSTALL12", "CONTROL"),
                    wire.ExperimentArm("NELO_XP_SOLO", "SOLO", "(not set)")]
    assert wire.split_codes(None, "NELO_XP_") == ([], [], [])
    # the pattern comes from config
    assert wire.split_codes("XP_A_B|NELO_XP_C_D", "XP_")[1] == []


def test_unknown_item_params_are_kept_raw_and_in_stock_forms():
    items = wire.parse_items(
        "[{item_id=A, item_params=[{key=error_value, value={string_value=boom, int_value=null, "
        "float_value=null, double_value=null}}, {key=in_stock, value={string_value=false, int_value=null, "
        "float_value=null, double_value=null}}]}, {item_id=B, item_params=[]}]")
    assert items[0].item_params_extra == {"error_value": "boom"} and items[0].is_in_stock is False
    assert items[1].item_params_extra == {} and items[1].is_in_stock is None
