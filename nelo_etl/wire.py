"""The queue's wire format (../shared/contract/sqs-messages.md): envelope, body and `items` text.

This is the contract parser. Every message either parses into a :class:`ParsedEvent` or raises
:class:`RejectedMessage` with a stable reason code (``invalid_json``, ``missing_field:user_id``,
``bad_type:event_timestamp``, ``items_unparseable``, ...), which is what a dead-letter record carries.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterator

#: The item keys of the Java toString, in the order the producer writes them.
ITEM_KEYS: tuple[str, ...] = (
    "item_id", "item_name", "item_brand", "item_variant", "item_category", "item_category2",
    "item_category3", "item_category4", "item_category5", "price_in_usd", "price", "quantity",
    "item_revenue_in_usd", "item_revenue", "item_refund_in_usd", "item_refund", "coupon",
    "affiliation", "location_id", "item_list_id", "item_list_name", "item_list_index",
    "promotion_id", "promotion_name", "creative_name", "creative_slot", "item_params",
)
#: Item keys whose values are numbers (Java's toString of a Double or Long).
NUMBER_KEYS = frozenset({
    "price_in_usd", "price", "item_revenue_in_usd", "item_revenue", "item_refund_in_usd", "item_refund",
})
TEXT_KEYS: tuple[str, ...] = tuple(
    k for k in ITEM_KEYS if k not in NUMBER_KEYS and k not in ("quantity", "item_params")
)
PARAM_VALUE_KEYS = ("string_value", "int_value", "float_value", "double_value")
#: Item params that become typed columns; every other param is kept raw in ``item_params_extra``.
TYPED_PARAMS = ("in_stock", "discounts", "discountt", "totalPrice", "number_of_installments",
                "installment_price")
REQUIRED_FIELDS = ("event_timestamp", "user_id", "event_name", "platform", "items")

#: Plausible event times, microseconds since the epoch. A timestamp outside this range is almost
#: always a unit error (seconds or milliseconds), so it is rejected rather than loaded as 1970.
MIN_EVENT_TS_US = 946_684_800_000_000      # 2000-01-01T00:00:00Z
MAX_EVENT_TS_US = 4_102_444_800_000_000    # 2100-01-01T00:00:00Z
#: How far an event may lie after the envelope's SentTimestamp (producer clock skew). An event
#: cannot happen after it was sent; comparing with the envelope, not the wall clock, keeps the
#: verdict the same whenever the batch is (re)processed.
MAX_FUTURE_SKEW_US = 24 * 3600 * 1_000_000

#: SentTimestamp (epoch milliseconds) is kept only inside the same years as event times.
MIN_SENT_MS = MIN_EVENT_TS_US // 1000
MAX_SENT_MS = MAX_EVENT_TS_US // 1000

UNIT_SEPARATOR = "\x1f"

# --- value ranges (README "Value ranges": why no warehouse sum can overflow) -----------------
#: Money is held as DECIMAL(18, 6): six decimal places, rounded half away from zero (what
#: DuckDB's cast does), and less than 10^12 in absolute value. Anything else is dead-lettered.
MONEY_SCALE = 6
MONEY_LIMIT = Decimal(10) ** 12
_MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
#: Whole-number item values: |value| <= the limit, else dead-lettered.
INTEGER_LIMITS = {"quantity": 100_000, "number_of_installments": 1_000}
#: Items in one event at most (a 1 MiB SQS message holds far fewer); more is dead-lettered.
MAX_ITEMS = 10_000
#: Characters at most in the text repeated on each of an event's item rows (user_id, event_name,
#: platform, replay_timestamp): longer is dead-lettered. Without it one hostile message (a
#: 200 KB user_id and 10,000 items) became 2 GB of rows.
MAX_TEXT = 1_024
#: Money keys in US dollars; every other money value is local currency (MXN).
USD_KEYS = frozenset({"price_in_usd", "item_revenue_in_usd", "item_refund_in_usd"})
MONEY_PARAMS = ("discountt", "totalPrice", "installment_price")

# Fields split only on ", " + a known key + "=" (values may hold commas, "=" and quotes).
_ITEM_FIELD_RE = re.compile(r"(?:^|, )(" + "|".join(ITEM_KEYS) + r")=")
_PARAM_VALUE_FIELD_RE = re.compile(r"(?:^|, )(" + "|".join(PARAM_VALUE_KEYS) + r")=")
_PARAM_RE = re.compile(r"\{key=([^{}\[\]]*?), value=\{([^{}\[\]]*)\}\}")
_BRACKET_RE = re.compile(r"[\[\]{}]")
# Java's toString of a number: 899.0, 8.5E-4, 1.0E7, 12.
_JAVA_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
# Money text: an optional currency code (before or after), sign, "$" (the peso sign in local
# fields, the dollar in _in_usd ones) and thousands groups of exactly three: "$1,299.00",
# "MXN 1,299.50", "1,299.00 MXN". Nothing else: "1.299,50", "12abc" and "1,2,3.4" are rejected.
_MONEY_TEXT_RE = re.compile(
    r"(?:(?P<pre>[A-Z]{3}) ?)?(?P<sign>-)?\$?(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)"
    r"(?: ?(?P<post>[A-Z]{3}))?")


class RejectedMessage(Exception):
    """A message that cannot be loaded. ``reason`` is a stable code; ``detail`` is for humans."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ExperimentArm:
    code: str
    experiment_id: str
    variant: str


@dataclass
class ParsedItem:
    """One item of an event, with params turned into columns."""

    item_index: int
    values: dict[str, Any]                      # every key of ITEM_KEYS but item_params
    is_in_stock: bool | None = None
    discount_codes: list[str] = field(default_factory=list)
    campaign_codes: list[str] = field(default_factory=list)
    experiment_arms: list[ExperimentArm] = field(default_factory=list)
    discount_value: Decimal | None = None
    total_price: Decimal | None = None
    installments: int | None = None
    installment_price: Decimal | None = None
    item_params_extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedEvent:
    event_id: str
    event_timestamp: int                        # microseconds since the epoch, UTC
    user_id: str
    event_name: str
    platform: str                               # upper-cased
    items_raw: str
    replay_timestamp: str | None
    extra_fields: dict[str, Any]
    items: list[ParsedItem]


@dataclass
class Envelope:
    """One line of a batch file: an SQS message as ReceiveMessage returns it."""

    message_id: str
    body: str
    sent_timestamp_ms: int | None
    receive_count: int | None


# --------------------------------------------------------------------------------------------
# identity

def event_id_of(event_timestamp: int, user_id: str, event_name: str, platform: str, items_raw: str) -> str:
    """First 32 hex digits of SHA-256 over the five identity fields joined by U+001F."""
    key = UNIT_SEPARATOR.join((str(event_timestamp), user_id, event_name, platform.upper(), items_raw))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


# --------------------------------------------------------------------------------------------
# scalars

def _null(raw: str) -> str | None:
    """Java's ``null`` and GA4's ``(not set)`` are nulls; so is an empty value."""
    if raw == "null" or raw == "(not set)" or raw == "":
        return None
    return raw


def parse_number(raw: Any, what: str) -> float | None:
    """A Java number (``899.0``, ``8.5E-4``, ``1``) as a float; None for null. Not for money:
    see :func:`parse_money`."""
    if raw is None:
        return None
    if isinstance(raw, bool):
        raise RejectedMessage(f"bad_item_value:{what}", f"not a number: {raw!r}")
    if isinstance(raw, (int, float)):
        value = float(raw)
    else:
        text = raw.strip()
        if _null(text) is None:
            return None
        if not _JAVA_NUMBER_RE.fullmatch(text):
            raise RejectedMessage(f"bad_item_value:{what}", f"not a number: {text[:80]!r}")
        value = float(text)
    if not math.isfinite(value):
        raise RejectedMessage(f"bad_item_value:{what}", f"not a finite number: {str(raw)[:80]!r}")
    return value


def currency_of(key: str) -> str:
    """The currency code a money field may name: USD for the ``_in_usd`` fields, else MXN."""
    return "USD" if key in USD_KEYS else "MXN"


def parse_money(raw: str | None, what: str) -> Decimal | None:
    """A money value as DECIMAL(18, 6): a Java number or strict money text (see _MONEY_TEXT_RE)
    whose currency code, if any, is the field's; rounded half away from zero to six places and
    less than 10^12 in absolute value. None for null."""
    if raw is None:
        return None
    text = raw.strip()
    if _null(text) is None:
        return None
    if _JAVA_NUMBER_RE.fullmatch(text):
        value = Decimal(text)
    else:
        m = _MONEY_TEXT_RE.fullmatch(text)
        if not m or (m["pre"] and m["post"]):
            raise RejectedMessage(f"bad_item_value:{what}", f"not a number: {text[:80]!r}")
        code = m["pre"] or m["post"]
        if code and code != currency_of(what):
            raise RejectedMessage(f"bad_item_value:{what}",
                                  f"{code} amount in a {currency_of(what)} field: {text[:80]!r}")
        value = Decimal(m["number"].replace(",", ""))
        if m["sign"]:
            value = -value
    # checked before rounding, so quantize never works on a huge exponent
    if not value.is_finite() or abs(value) >= MONEY_LIMIT * 10:
        raise RejectedMessage(f"bad_item_value:{what}", f"out of range (|value| < 10^12): {text[:80]!r}")
    rounded = value.quantize(_MONEY_QUANTUM, rounding=ROUND_HALF_UP)
    if abs(rounded) >= MONEY_LIMIT:
        raise RejectedMessage(f"bad_item_value:{what}", f"out of range (|value| < 10^12): {text[:80]!r}")
    return rounded


_INTEGER_RE = re.compile(r"\s*-?\d+\s*")


def parse_integer(raw: Any, what: str) -> int | None:
    """A whole number, written as ``4``, ``4.0`` or ``1.0E1``; a fraction is rejected, and so is
    a value beyond ``INTEGER_LIMITS``. Read exactly (no detour through a float)."""
    if raw is None:
        return None
    text = raw.strip() if isinstance(raw, str) else str(raw)
    if _null(text) is None:
        return None
    limit = INTEGER_LIMITS.get(what, 2**62)
    if _INTEGER_RE.fullmatch(text) and text.isascii():
        # Decimal, not int(): int() refuses text of more than 4300 digits (leading zeros count)
        value = Decimal(text)
    elif _JAVA_NUMBER_RE.fullmatch(text):
        value = Decimal(text)
        if abs(value) > limit:
            raise RejectedMessage(f"bad_item_value:{what}", f"out of range (|value| <= {limit}): {text[:80]!r}")
        if value != value.to_integral_value():
            raise RejectedMessage(f"bad_item_value:{what}", f"not a whole number: {text[:80]!r}")
    else:
        raise RejectedMessage(f"bad_item_value:{what}", f"not a whole number: {text[:80]!r}")
    if abs(value) > limit:
        raise RejectedMessage(f"bad_item_value:{what}", f"out of range (|value| <= {limit}): {text[:80]!r}")
    return int(value)


def split_codes(raw: str | None, experiment_pattern: str) -> tuple[list[str], list[str], list[ExperimentArm]]:
    """Split a ``discounts`` value into (all codes, campaign codes, experiment arms).

    Codes are pipe-separated, trimmed, empty ones dropped, repeats kept once (first position).
    A code containing ``experiment_pattern`` is an experiment arm ``<pattern><EXPERIMENT>_<VARIANT>``
    (the variant is the last ``_`` token); an arm is never a campaign.
    """
    if raw is None:
        return [], [], []
    codes: list[str] = []
    for part in raw.split("|"):
        code = part.strip()
        if code and code not in codes:
            codes.append(code)
    campaigns: list[str] = []
    arms: list[ExperimentArm] = []
    for code in codes:
        at = code.find(experiment_pattern) if experiment_pattern else -1
        if at < 0:
            campaigns.append(code)
            continue
        rest = code[at + len(experiment_pattern):]
        experiment, sep, variant = rest.rpartition("_")
        if not sep or not experiment or not variant:
            # An arm without a variant token still is an arm (never a campaign): the whole
            # remainder names the experiment and the variant is reported as "(not set)".
            experiment, variant = rest or code, "(not set)"
        arms.append(ExperimentArm(code, experiment, variant))
    return codes, campaigns, arms


# --------------------------------------------------------------------------------------------
# the items text

def _split_top_level(inner: str) -> list[str]:
    """Split ``{..}, {..}`` into the contents of each top-level ``{}`` (values hold no brackets)."""
    items: list[str] = []
    depth = 0
    start = -1
    expect_at = 0          # where the next item's "{" must stand
    for m in _BRACKET_RE.finditer(inner):
        ch = m.group()
        pos = m.start()
        if ch in "{[":
            if depth == 0:
                if ch != "{" or pos != expect_at:
                    raise RejectedMessage("items_unparseable", f"unexpected text at {pos}")
                start = pos
            depth += 1
        else:
            depth -= 1
            if depth < 0:
                raise RejectedMessage("items_unparseable", f"unbalanced {ch!r} at {pos}")
            if depth == 0:
                if ch != "}":
                    raise RejectedMessage("items_unparseable", f"unbalanced {ch!r} at {pos}")
                items.append(inner[start + 1:pos])
                if inner.startswith(", ", pos + 1):
                    expect_at = pos + 3
                elif pos + 1 == len(inner):
                    expect_at = -1
                else:
                    raise RejectedMessage("items_unparseable", f"unexpected text after item at {pos}")
    if depth != 0 or expect_at != -1:
        raise RejectedMessage("items_unparseable", "truncated items text")
    return items


def _split_fields(text: str, pattern: re.Pattern[str], what: str) -> dict[str, str]:
    parts = pattern.split(text)
    # parts = ['', key1, value1, key2, value2, ...]; anything before the first key is garbage.
    if len(parts) < 3 or parts[0] != "":
        raise RejectedMessage("items_unparseable", f"{what} does not start with a known key")
    fields: dict[str, str] = {}
    for i in range(1, len(parts), 2):
        key = parts[i]
        if key in fields:
            raise RejectedMessage("items_unparseable", f"{what} repeats key {key}")
        fields[key] = parts[i + 1]
    return fields


def _param_value(inner: str) -> Any:
    """The one set value of ``{string_value=.., int_value=.., float_value=.., double_value=..}``."""
    fields = _split_fields(inner, _PARAM_VALUE_FIELD_RE, "item param value")
    for key in PARAM_VALUE_KEYS:
        raw = fields.get(key)
        if raw is not None and raw != "null":
            return raw
    return None


def parse_item_params(text: str) -> dict[str, Any]:
    """``[{key=K, value={...}}, ...]`` to {K: raw value text or None}."""
    if not (text.startswith("[") and text.endswith("]")):
        raise RejectedMessage("items_unparseable", "item_params is not a list")
    inner = text[1:-1]
    params: dict[str, Any] = {}
    pos = 0
    for m in _PARAM_RE.finditer(inner):
        if m.start() != pos:
            raise RejectedMessage("items_unparseable", "malformed item_params")
        params[m.group(1)] = _param_value(m.group(2))
        pos = m.end()
        if inner.startswith(", ", pos):
            pos += 2
    if pos != len(inner) or (inner and inner.endswith(", ")):
        raise RejectedMessage("items_unparseable", "malformed item_params")
    return params


def parse_items(items_raw: str, experiment_pattern: str = "NELO_XP_") -> list[ParsedItem]:
    """Parse the Java-toString ``items`` text into items, in array order."""
    text = items_raw.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise RejectedMessage("items_unparseable", "items is not a [...] list")
    inner = text[1:-1]
    if not inner.strip():
        return []
    result: list[ParsedItem] = []
    bodies = _split_top_level(inner)
    if len(bodies) > MAX_ITEMS:
        raise RejectedMessage("bad_value:items", f"{len(bodies)} items; at most {MAX_ITEMS} are accepted")
    for index, body in enumerate(bodies):
        fields = _split_fields(body, _ITEM_FIELD_RE, "item")
        values: dict[str, Any] = {}
        for key in TEXT_KEYS:
            raw = fields.get(key)
            value = None if raw is None else _null(raw)
            if value is None and key == "item_list_id" and raw == "(not set)":
                value = "(not set)"   # reported as the list "(not set)"
            values[key] = value
        for key in NUMBER_KEYS:
            values[key] = parse_money(fields.get(key), key)
        values["quantity"] = parse_integer(fields.get("quantity"), "quantity")
        params = parse_item_params(fields["item_params"]) if "item_params" in fields else {}
        item = ParsedItem(item_index=index, values=values)
        in_stock = params.get("in_stock")
        if in_stock is not None:
            flag = in_stock.strip().lower()
            if flag in ("true", "false"):
                item.is_in_stock = flag == "true"
            else:
                number = parse_number(in_stock, "in_stock")
                item.is_in_stock = None if number is None else number != 0
        discounts = params.get("discounts")
        item.discount_codes, item.campaign_codes, item.experiment_arms = split_codes(
            None if discounts is None else _null(discounts), experiment_pattern)
        item.discount_value = parse_money(params.get("discountt"), "discountt")
        item.total_price = parse_money(params.get("totalPrice"), "totalPrice")
        item.installments = parse_integer(params.get("number_of_installments"), "number_of_installments")
        item.installment_price = parse_money(params.get("installment_price"), "installment_price")
        item.item_params_extra = {k: v for k, v in params.items() if k not in TYPED_PARAMS}
        result.append(item)
    return result


# --------------------------------------------------------------------------------------------
# the body and the envelope

def parse_body(body: Any, experiment_pattern: str = "NELO_XP_",
               sent_timestamp_ms: int | None = None) -> ParsedEvent:
    """Parse and validate one message body (a JSON text)."""
    if not isinstance(body, str):
        raise RejectedMessage("bad_type:Body", "the message body is not text")
    _require_utf8(body, "Body")
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise RejectedMessage("invalid_json", str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise RejectedMessage("not_an_object", f"body is a JSON {type(obj).__name__}")
    problems = _field_problems(obj)
    if problems:
        # The reason is the first problem (missing before mistyped); the detail lists them all.
        reason, detail = problems[0]
        also = "; ".join(p[0] for p in problems[1:])
        raise RejectedMessage(reason, f"{detail}; also {also}" if also else detail)
    ts = obj["event_timestamp"]
    if not MIN_EVENT_TS_US <= ts < MAX_EVENT_TS_US:
        raise RejectedMessage("bad_value:event_timestamp",
                              f"{ts} is not microseconds between 2000 and 2100 (seconds or milliseconds?)")
    if sent_timestamp_ms is not None and ts > sent_timestamp_ms * 1000 + MAX_FUTURE_SKEW_US:
        raise RejectedMessage("bad_value:event_timestamp", "event time is more than a day after it was sent")
    replay = obj.get("replay_timestamp")
    if isinstance(replay, str) and len(replay) > MAX_TEXT:
        raise RejectedMessage("bad_value:replay_timestamp", f"{len(replay)} characters; at most {MAX_TEXT} are accepted")
    items_raw: str = obj["items"]
    items = parse_items(items_raw, experiment_pattern)
    platform = obj["platform"].upper()
    extra = {k: v for k, v in obj.items() if k not in REQUIRED_FIELDS and k != "replay_timestamp"}
    return ParsedEvent(
        event_id=event_id_of(ts, obj["user_id"], obj["event_name"], platform, items_raw),
        event_timestamp=ts,
        user_id=obj["user_id"],
        event_name=obj["event_name"],
        platform=platform,
        items_raw=items_raw,
        replay_timestamp=replay if isinstance(replay, str) else None,
        extra_fields=extra,
        items=items,
    )


def _field_problems(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """(reason, detail) for each required field that is missing or mistyped, missing ones first."""
    missing = [(f"missing_field:{n}", f"{n} is missing or null") for n in REQUIRED_FIELDS if obj.get(n) is None]
    mistyped: list[tuple[str, str]] = []
    ts = obj.get("event_timestamp")
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool)):
        mistyped.append(("bad_type:event_timestamp", f"expected an integer, got {type(ts).__name__}"))
    for name in ("user_id", "event_name", "platform", "items"):
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            mistyped.append((f"bad_type:{name}", f"expected a string, got {type(value).__name__}"))
        elif name != "items" and not value.strip():
            mistyped.append((f"bad_type:{name}", "empty string"))
        elif name != "items" and len(value) > MAX_TEXT:
            mistyped.append((f"bad_value:{name}", f"{len(value)} characters; at most {MAX_TEXT} are accepted"))
        else:
            try:
                _require_utf8(value, name)
            except RejectedMessage as exc:
                mistyped.append((exc.reason, exc.detail))
    return missing + mistyped


def parse_envelope(line: str | bytes) -> Envelope:
    """One batch-file line (an SQS message object). ``ReceiptHandle`` and unknown keys are ignored."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise RejectedMessage("invalid_envelope", f"batch line is not JSON: {str(exc)[:120]}") from None
    if not isinstance(obj, dict):
        raise RejectedMessage("invalid_envelope", "batch line is not a JSON object")
    message_id = obj.get("MessageId")
    if not isinstance(message_id, str) or not message_id:
        raise RejectedMessage("invalid_envelope", "MessageId is missing")
    body = obj.get("Body")
    if not isinstance(body, str):
        raise RejectedMessage("invalid_envelope", "Body is missing or not text")
    attrs = obj.get("Attributes") if isinstance(obj.get("Attributes"), dict) else {}
    # SQS metadata out of its range (a corrupted or hand-made line) is unknown, not fatal: the
    # event still loads, without it (an int64 or int32 overflow would wedge the whole file)
    sent = _int_or_none(attrs.get("SentTimestamp"))
    if sent is not None and not MIN_SENT_MS <= sent < MAX_SENT_MS:
        sent = None
    count = _int_or_none(attrs.get("ApproximateReceiveCount"))
    if count is not None and not 0 <= count < 2**31:
        count = None
    return Envelope(message_id, body, sent, count)


def _require_utf8(text: str, what: str) -> None:
    """Reject text that cannot be stored as UTF-8 (raw invalid bytes or a lone \\ud800 escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise RejectedMessage("invalid_utf8", f"{what} is not valid UTF-8") from None


def _int_or_none(raw: Any) -> int | None:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def iter_batch_lines(path: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each non-blank line of a batch file.

    Invalid UTF-8 is kept (as surrogate escapes) so the line can still be dead-lettered verbatim.
    """
    with open(path, encoding="utf-8", errors="surrogateescape", newline="\n") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                yield number, line.rstrip("\n")


def message_line(message_id: str, body: str, sent_timestamp_ms: int | None = None,
                 receive_count: int | None = None) -> str:
    """Serialise one message as a batch-file line (the shape of samples.jsonl)."""
    attrs = []
    if sent_timestamp_ms is not None:
        attrs.append(f'"SentTimestamp": "{int(sent_timestamp_ms)}"')
    if receive_count is not None:
        attrs.append(f'"ApproximateReceiveCount": "{int(receive_count)}"')
    return (f'{{"MessageId": {json_quote(message_id)}, "Attributes": {{{", ".join(attrs)}}}, '
            f'"Body": {json_quote(body)}}}')


def json_quote(text: str) -> str:
    """``text`` as a JSON string literal, non-ASCII kept (what ``json.dumps(ensure_ascii=False)``
    gives). Printable text, the common case, needs only backslashes and quotes escaped, which
    ``str.replace`` does several times faster than the json module's escaper."""
    if text.isprintable():
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _js(text)


_js = json.encoder.encode_basestring  # type: ignore[attr-defined]
