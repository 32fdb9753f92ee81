"""A seeded, deterministic traffic simulator in the queue's wire format.

It makes realistic in-app store traffic (users on IOS and ANDROID, sessions with 30-minute gaps, list
impressions, product views, checkouts, purchases, coupons, installments, campaign codes, experiment
arms, price changes) and, with the chaos knobs, what a real queue adds: SQS redelivery (same
MessageId), producer re-sends (same event, new MessageId and ``replay_timestamp``), late events and
bad messages. It writes batch files cut by arrival time, or sends the messages to a queue.

    python -m nelo_etl.simulate --events 20000 --out staging/
    python -m nelo_etl.simulate --events 500 --endpoint-url http://127.0.0.1:5000 --queue-name q
"""
from __future__ import annotations

import argparse
import bisect
import dataclasses
import functools
import itertools
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Iterable, Iterator, Sequence

from . import wire

US = 1_000_000
MINUTE_US = 60 * US
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
MXN_PER_USD = 19.76


# --------------------------------------------------------------------------------------------
# serialisation: the producer's side of the wire format

def java_double(x: float, scientific: bool = False) -> str:
    """Java's ``Double.toString``: ``899.0``, ``45.5``, ``8.5E-4``, ``1.0E7``.

    ``scientific`` forces the E notation (``1.0399E4``), which some producers emit for any size.
    """
    if x != x or x in (_INF, -_INF):
        raise ValueError("not a finite number")
    ax = abs(x)
    if not scientific and (1e-3 <= ax < 1e7 or x == 0):
        return repr(float(x))          # Python's shortest repr has the same shape in this range
    sign, digits, exponent = Decimal(repr(float(x))).normalize().as_tuple()
    ds = "".join(map(str, digits))
    exp10 = len(ds) - 1 + exponent       # type: ignore[operator]
    mantissa = ds[0] + "." + (ds[1:] or "0")
    return ("-" if sign else "") + f"{mantissa}E{exp10}"


_INF = float("inf")


def _v(value: object) -> str:
    """A value as the producer writes it: None is ``null``."""
    if value is None:
        return "null"
    if type(value) is float:
        return java_double(value)  # type: ignore[arg-type]
    return str(value)


_PARAM_TEMPLATE = ("{{key={key}, value={{string_value={string_value}, int_value={int_value}, "
                   "float_value={float_value}, double_value={double_value}}}}}")


@functools.lru_cache(maxsize=4096)
def param_text(key: str, value: object, slot: str) -> str:
    """One ``{key=K, value={...}}`` with ``value`` placed in the ``slot`` of the four."""
    slots = {"key": key, "string_value": "null", "int_value": "null", "float_value": "null",
             "double_value": "null"}
    if value is not None:
        slots[slot] = value if type(value) is str else _v(value)
    return _PARAM_TEMPLATE.format_map(slots)


# One str.format template for the whole item: C-speed formatting of 27 fields. Keys the producer
# did not fill are written as GA4's "(not set)".
_ITEM_TEMPLATE = "{{" + ", ".join(f"{k}={{{k}}}" for k in wire.ITEM_KEYS[:-1]) + ", item_params=[{item_params}]}}"
_NOT_SET_SLOTS = dict.fromkeys(wire.ITEM_KEYS, "(not set)")


def item_text(fields: dict[str, object], params: Sequence[str]) -> str:
    """One item in Java toString form. ``fields`` maps item keys to values (None is ``null``,
    missing keys are written ``(not set)``); ``params`` are ready ``param_text`` strings."""
    slots = _NOT_SET_SLOTS.copy()
    for key, value in fields.items():
        slots[key] = "null" if value is None else (value if type(value) is str else _v(value))
    slots["item_params"] = ", ".join(params)
    return _ITEM_TEMPLATE.format_map(slots)


def items_text(items: Iterable[str]) -> str:
    return "[" + ", ".join(items) + "]"


def body_text(ts_us: int, user_id: str, event_name: str, platform: str, items: str,
              replay_ts: str, extra: dict | None = None) -> str:
    """The body JSON, key order as the producer writes it (built by hand for speed; the strings
    go through the json module's own escaper)."""
    text = (f'{{"event_timestamp": {int(ts_us)}, "user_id": {_js(user_id)}, "event_name": {_js(event_name)}, '
            f'"platform": {_js(platform)}, "items": {_js(items)}, "replay_timestamp": {_js(replay_ts)}')
    if extra:
        text += ", " + json.dumps(extra, ensure_ascii=False)[1:-1]
    return text + "}"


_js = wire.json_quote


def iso_z(epoch_us: int) -> str:
    """ISO-8601 UTC with microseconds and ``Z``."""
    seconds, micros = divmod(epoch_us, US)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def uuid4_text(rng: random.Random) -> str:
    """A random (version 4) UUID drawn from ``rng``, so runs with one seed repeat exactly."""
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


# --------------------------------------------------------------------------------------------
# the world

@dataclass(eq=False)
class Product:
    item_id: str
    name: str
    brand: str | None
    category: str
    change_ts: list[int]        # version starts, ascending; change_ts[0] is the start of time
    prices: list[float]

    def price_at(self, ts: int) -> float:
        return self.prices[bisect.bisect_right(self.change_ts, ts) - 1]


NAMES = [
    ("Audífonos JBL Tune 520BT, con Micrófono", "JBL", "Audio", 899.0),
    ('Pantalla Samsung 55" Crystal UHD 4K (2025)', "Samsung", "TV", 10399.0),
    ("Tenis Nike Revolution 7 = Talla 27", "Nike", "Calzado", 1271.0),
    ("Licuadora Oster 10 velocidades", "Oster", "Hogar", 1149.0),
    ("iPhone 15 128GB (Negro)", "Apple", "Celulares", 17999.0),
    ("Laptop Lenovo IdeaPad 3, 8GB RAM, 512GB SSD", "Lenovo", "Cómputo", 11499.0),
    ("Freidora de aire Ninja 5.5 L", "Ninja", "Hogar", 2299.0),
    ("Playera básica 'Algodón' talla M", None, "Ropa", 199.0),
    ("Consola Nintendo Switch OLED", "Nintendo", "Videojuegos", 7299.0),
    ("Cafetera Nespresso Vertuo, 1.1 L", "Nespresso", "Hogar", 3499.0),
    ("Refrigerador LG 14 pies³ = ahorro", "LG", "Línea blanca", 13999.0),
    ("Mochila escolar 2x1, azul = ahorro", None, "Escolar", 349.0),
]
LISTS = [  # (item_list_id, names over time: the name changes halfway for the first list)
    ("para_ti", ["Para ti", "Para ti ✨"]),
    ("ofertas_2x1", ["Ofertas, 2x1 = ahorro"]),
    ("mas_vendidos", ["Más vendidos"]),
    ("buen_fin", ['Buen Fin "Especial"']),
    ("(not set)", ["(not set)"]),
    (None, [None]),
]
CAMPAIGNS = [  # (code, window start, window end) as fractions of the simulated period
    ("BUENFIN25", 0.0, 0.45), ("HOTSALE", 0.3, 1.0), ("NAVIDAD10", 0.8, 1.0), ("ENVIOGRATIS", 0.1, 0.6),
]
EXPERIMENTS = [("CHECKOUT", ("A", "B")), ("INSTALL12", ("CONTROL", "TREATMENT"))]
COUPONS = ["NELO10", "BIENVENIDA", "APP50"]


@dataclass
class SimConfig:
    events: int = 20_000
    seed: int = 42
    start_us: int = 1_760_659_200 * US          # 2025-10-17T00:00:00Z
    days: float = 14.0
    users: int | None = None                    # default: events / 40
    products: int = 120
    duplicate_rate: float = 0.0                 # SQS redelivery: same MessageId again
    resend_rate: float = 0.0                    # producer re-send: same event, new MessageId
    late_rate: float = 0.0                      # delivered hours or days late
    bad_rate: float = 0.0                       # malformed messages

    @classmethod
    def chaos(cls, **kw: object) -> "SimConfig":
        """The chaos knobs on at realistic rates."""
        base = dict(duplicate_rate=0.02, resend_rate=0.02, late_rate=0.03, bad_rate=0.005)
        base.update(kw)  # type: ignore[arg-type]
        return cls(**base)  # type: ignore[arg-type]


#: An item as (its text, that text escaped twice: once inside the body JSON, once inside the line).
ItemRef = tuple[str, str]


def escaped_twice(text: str) -> str:
    return wire.json_quote(wire.json_quote(text)[1:-1])[1:-1]


@dataclass
class Message:
    """One message as it arrives (``sent_ms`` orders arrival). It is kept compact (item texts are
    shared) and rendered only when written, so a million of them fit in memory."""

    sent_ms: int
    seq: int
    message_id: str
    ts: int
    user_id: str
    event_name: str
    platform: str
    items: tuple[ItemRef, ...]
    receive_count: int = 1
    extra: dict | None = None
    bad_body: str | None = None

    @property
    def items_raw(self) -> str:
        return "[" + ", ".join(ref[0] for ref in self.items) + "]"

    @property
    def body(self) -> str:
        if self.bad_body is not None:
            return self.bad_body
        return body_text(self.ts, self.user_id, self.event_name, self.platform, self.items_raw,
                         iso_z(self.sent_ms * 1000), self.extra)

    def line(self) -> str:
        """The batch-file line; equal to ``wire.message_line(id, body, ...)`` but built in one pass."""
        if self.bad_body is not None or self.extra:
            return wire.message_line(self.message_id, self.body, self.sent_ms, self.receive_count)
        return "".join((
            '{"MessageId": ', wire.json_quote(self.message_id), ', "Attributes": {"SentTimestamp": "',
            str(self.sent_ms), '", "ApproximateReceiveCount": "', str(self.receive_count),
            '"}, "Body": "{\\"event_timestamp\\": ', str(self.ts),
            ', \\"user_id\\": \\"', escaped_twice(self.user_id),
            '\\", \\"event_name\\": \\"', escaped_twice(self.event_name),
            '\\", \\"platform\\": \\"', escaped_twice(self.platform),
            '\\", \\"items\\": \\"[', ", ".join(ref[1] for ref in self.items),
            ']\\", \\"replay_timestamp\\": \\"', iso_z(self.sent_ms * 1000), '\\"}"}'))


class Simulator:
    """Generates the traffic of ``SimConfig``; ``messages()`` returns them in arrival order."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.end_us = cfg.start_us + int(cfg.days * DAY_US)
        self.products = self._make_products()
        self.high_value = [p for p in self.products if p.prices[0] / MXN_PER_USD > 500]
        self._seq = 0
        self._item_cache: dict[tuple, ItemRef] = {}

    # ---- the catalogue
    def _make_products(self) -> list[Product]:
        rng, cfg = self.rng, self.cfg
        span = self.end_us - cfg.start_us
        products = []
        for i in range(cfg.products):
            name, brand, category, base = NAMES[i % len(NAMES)]
            if i >= len(NAMES):
                name = f"{name} #{i // len(NAMES)}"
            price = round(base * rng.uniform(0.8, 1.25), 0) if i >= len(NAMES) else base
            change_ts, prices = [0], [price]
            roll = rng.random()
            if roll < 0.25:        # A -> B -> A: a temporary markdown that is undone
                t1 = cfg.start_us + int(span * rng.uniform(0.1, 0.6))
                t2 = t1 + int(span * rng.uniform(0.05, 0.3))
                change_ts += [t1, t2]
                prices += [round(price * rng.choice((0.8, 0.85, 0.9)), 0), price]
            elif roll < 0.55:      # one or two permanent changes
                for frac in sorted(rng.uniform(0.05, 0.95) for _ in range(rng.randint(1, 2))):
                    change_ts.append(cfg.start_us + int(span * frac))
                    prices.append(round(prices[-1] * rng.choice((0.9, 1.05, 1.1, 0.75)), 0))
            products.append(Product(f"SKU-{100000 + i * 7919 % 900000:06d}", name, brand, category,
                                    change_ts, prices))
        return products

    # ---- one item
    def _item(self, product: Product, ts: int, event_name: str, quantity: int, list_id: str | None,
              list_name: str | None, list_index: int | None, codes: list[str], coupon: str | None,
              installments: int | None) -> ItemRef:
        """One item's text. The random draws come first, so the text can be cached by its inputs
        (most items repeat) without changing what the seed produces."""
        rng = self.rng.random
        in_stock = 1 if rng() < 0.93 else 0
        money_style = rng()
        diagnostic = rng()
        price = product.price_at(ts)
        key = (product.item_id, price, event_name == "purchase", quantity, list_id, list_name, list_index,
               tuple(codes), coupon, installments, in_stock,
               0 if money_style >= 0.2 else 1 if money_style < 0.1 else 2,
               int(diagnostic * 150) if diagnostic < 0.02 else -1)
        ref = self._item_cache.get(key)
        if ref is None:
            text = self._item_text(product, price, key)
            ref = self._item_cache[key] = (text, escaped_twice(text))
        return ref

    @staticmethod
    def _item_text(product: Product, price: float, key: tuple) -> str:
        (_, _, is_purchase, quantity, list_id, list_name, list_index, codes, coupon, installments,
         in_stock, money_style, diagnostic) = key
        price_usd = round(price / MXN_PER_USD, 2)
        has_campaign = any("NELO_XP_" not in c for c in codes)
        discount = round(price * quantity * 0.15, 2) if has_campaign else 0.0
        total = round(price * quantity - discount, 2)
        fields: dict[str, object] = {
            "item_id": product.item_id, "item_name": product.name, "item_brand": product.brand or "(not set)",
            "item_category": product.category, "price_in_usd": price_usd, "price": price,
            "quantity": quantity, "item_revenue_in_usd": round(total / MXN_PER_USD, 2) if is_purchase else None,
            "item_revenue": total if is_purchase else None,
            "item_refund_in_usd": None, "item_refund": None, "coupon": coupon or "(not set)",
            "item_list_id": list_id, "item_list_name": list_name, "item_list_index": list_index,
        }
        params = [param_text("in_stock", in_stock, "int_value")]
        if codes:
            params.append(param_text("discounts", "|".join(codes), "string_value"))
            params.append(param_text("discountt", discount, "double_value"))
            if money_style == 1:     # some producers send money as formatted text: "$1,299.00"
                params.append(param_text("totalPrice", f"${total:,.2f}", "string_value"))
            else:                    # or in E notation: 1.0399E4
                params.append(param_text("totalPrice", java_double(total, scientific=money_style == 2),
                                         "double_value"))
        if installments:
            params.append(param_text("number_of_installments", installments, "int_value"))
            params.append(param_text("installment_price", round(total / installments, 2), "double_value"))
        if diagnostic >= 0:
            params.append(param_text("_el", (8.5e-4, 1.2e-3, 3.0e-5)[diagnostic % 3], "double_value"))
        return item_text(fields, params)

    def _codes_at(self, ts: int, user_arm: str, event_name: str) -> list[str]:
        rng, span = self.rng, self.end_us - self.cfg.start_us
        codes = [c for c, a, b in CAMPAIGNS
                 if self.cfg.start_us + a * span <= ts <= self.cfg.start_us + b * span and rng.random() < 0.5]
        if event_name in ("begin_checkout", "purchase", "view_item") and rng.random() < 0.6:
            codes.append(user_arm)
        if codes and rng.random() < 0.02:
            codes.append(" " + codes[0] + " ")   # a repeat with blanks: trimmed and kept once
        return codes

    # ---- the traffic
    def events(self) -> Iterator[tuple[int, str, str, str, str]]:
        """(ts_us, user_id, event_name, raw platform, items text), session by session."""
        rng, cfg = self.rng, self.cfg
        n_users = cfg.users or max(5, cfg.events // 40)
        users = []
        for _ in range(n_users):
            uid = uuid4_text(rng)
            platform = "ANDROID" if rng.random() < 0.55 else "IOS"
            exp, variants = rng.choice(EXPERIMENTS)
            users.append([uid, platform, f"NELO_XP_{exp}_{rng.choice(variants)}",
                          cfg.start_us + rng.randrange(0, max(1, self.end_us - cfg.start_us))])
        made = 0
        span = self.end_us - cfg.start_us
        while made < cfg.events:
            user = users[rng.randrange(n_users)]
            uid, platform, arm, next_ts = user
            if next_ts >= self.end_us or rng.random() < 0.05:
                # start over somewhere in the period; now and then right before UTC midnight
                day0 = cfg.start_us + rng.randrange(0, max(1, span))
                if rng.random() < 0.1:
                    day0 = day0 - day0 % DAY_US + DAY_US - rng.randrange(1, 15) * MINUTE_US
                next_ts = day0 + rng.randrange(US)
            raw_platform = platform
            if rng.random() < 0.04:                 # the other platform, sometimes in odd case
                raw_platform = "IOS" if platform == "ANDROID" else "ANDROID"
            if rng.random() < 0.05:
                raw_platform = raw_platform.lower() if rng.random() < 0.5 else raw_platform.capitalize()
            for ts, name, items in self._session(next_ts, arm):
                made += 1
                yield ts, uid, name, raw_platform, items
                last = ts
            # the next session of this user: more than 30 minutes later (sometimes 30:00 + 1 us)
            gap = 30 * MINUTE_US + 1 if rng.random() < 0.03 else rng.randrange(31 * MINUTE_US, 3 * DAY_US)
            user[3] = last + gap

    def _gap(self) -> int:
        roll = self.rng.random()
        if roll < 0.03:
            return 30 * MINUTE_US            # exactly 30:00 continues the session
        if roll < 0.25:
            return self.rng.randrange(2 * MINUTE_US, 25 * MINUTE_US)
        return self.rng.randrange(3 * US, 2 * MINUTE_US)

    def _session(self, ts: int, arm: str) -> Iterator[tuple[int, str, str]]:
        rng = self.rng
        frac = (ts - self.cfg.start_us) / max(1, self.end_us - self.cfg.start_us)
        list_id, names = LISTS[rng.randrange(len(LISTS))]
        list_name = names[0] if frac < 0.5 or len(names) == 1 else names[1]
        shown = rng.sample(self.products, k=min(len(self.products), rng.randint(2, 5)))
        if rng.random() < 0.2 and self.high_value:
            shown[0] = rng.choice(self.high_value)
        if rng.random() < 0.15:              # a bounce: one list view and gone
            items = [self._item(p, ts, "view_item_list", 1, list_id, list_name, i + 1,
                                self._codes_at(ts, arm, "view_item_list"), None, None)
                     for i, p in enumerate(shown)]
            yield ts, "view_item_list", tuple(items)
            return
        items = [self._item(p, ts, "view_item_list", 1, list_id, list_name, i + 1,
                            self._codes_at(ts, arm, "view_item_list"), None, None)
                 for i, p in enumerate(shown)]
        yield ts, "view_item_list", tuple(items)
        viewed: list[Product] = []
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            ts += self._gap()
            p = rng.choice(shown) if rng.random() < 0.85 else rng.choice(self.products)
            viewed.append(p)
            yield ts, "view_item", (self._item(p, ts, "view_item", 1, None, None, None,
                                               self._codes_at(ts, arm, "view_item"), None, None),)
            if rng.random() < 0.3:
                ts += self._gap()
                yield ts, "add_to_cart", (self._item(p, ts, "add_to_cart", 1, None, None, None,
                                                     [], None, None),)
        if not viewed or rng.random() < 0.55:
            return
        cart = list(dict.fromkeys(viewed))[: rng.randint(1, 3)]
        quantities = [rng.choice((1, 1, 1, 2, 3)) for _ in cart]
        installments = rng.choice((None, None, 3, 6, 12, 1))
        for _ in range(rng.choice((1, 1, 2))):   # sometimes the checkout is started twice
            ts += self._gap()
            codes = self._codes_at(ts, arm, "begin_checkout")
            yield ts, "begin_checkout", tuple(
                [self._item(p, ts, "begin_checkout", q, None, None, None, codes, None, installments)
                 for p, q in zip(cart, quantities)])
        if rng.random() < 0.5:
            return                           # an abandoned checkout
        ts += self._gap()
        codes = self._codes_at(ts, arm, "purchase")
        coupon = rng.choice(COUPONS) if rng.random() < 0.2 else None
        yield ts, "purchase", tuple(
            [self._item(p, ts, "purchase", q, None, None, None, codes, coupon if i == 0 else None,
                        installments)
             for i, (p, q) in enumerate(zip(cart, quantities))])

    def _message_id(self) -> str:
        return uuid4_text(self.rng)

    def messages(self) -> list[Message]:
        """Every message, chaos included, in arrival order."""
        rng, cfg = self.rng, self.cfg
        out: list[Message] = []
        for ts, uid, name, platform, items in itertools.islice(self.events(), cfg.events):
            sent_ms = ts // 1000 + rng.randrange(20, 3000)
            if rng.random() < cfg.late_rate:
                sent_ms += rng.choice((rng.randrange(1, 6), rng.randrange(12, 72))) * 3_600_000
            msg = Message(sent_ms, self._next_seq(), self._message_id(), ts, uid, name, platform, items)
            out.append(msg)
            if rng.random() < cfg.duplicate_rate:      # SQS redelivers the very same message
                out.append(dataclasses.replace(msg, sent_ms=sent_ms + rng.randrange(30_000, 3_600_000),
                                               seq=self._next_seq(), receive_count=2))
            if rng.random() < cfg.resend_rate:         # the producer sends the event again
                extra = {"app_version": "4.18.1"} if rng.random() < 0.5 else None
                out.append(dataclasses.replace(msg, sent_ms=sent_ms + rng.randrange(60_000, 2 * 3_600_000),
                                               seq=self._next_seq(), message_id=self._message_id(),
                                               extra=extra))
            if rng.random() < cfg.bad_rate:
                out.append(dataclasses.replace(msg, sent_ms=sent_ms + 1, seq=self._next_seq(),
                                               message_id=self._message_id(),
                                               bad_body=self._bad_body(msg)))
        out.sort(key=lambda m: (m.sent_ms, m.seq))
        return out

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _bad_body(self, msg: Message) -> str:
        """A malformed body of one of five kinds, each with its own dead-letter reason."""
        kind = self.rng.randrange(5)
        ts, uid, name, platform, items = msg.ts, msg.user_id, msg.event_name, msg.platform, msg.items_raw
        good = body_text(ts, uid, name, platform, items, iso_z(ts))
        if kind == 0:
            return good[: len(good) // 2]                                      # invalid_json
        if kind == 1:                                                           # missing_field:user_id
            return json.dumps({"event_timestamp": ts, "event_name": name, "platform": platform, "items": items})
        if kind == 2:                                                           # bad_type:event_timestamp
            return good.replace(f'"event_timestamp": {ts}', f'"event_timestamp": "{ts}"', 1)
        if kind == 3:                                                           # items_unparseable
            return body_text(ts, uid, name, platform, items[: max(2, len(items) // 2)], iso_z(ts))
        return body_text(ts // 1000, uid, name, platform, items, iso_z(ts))     # bad_value (milliseconds)


# --------------------------------------------------------------------------------------------
# outputs

def batch_file_name(first_sent_ms: int, short_id: str) -> str:
    stamp = datetime.fromtimestamp(first_sent_ms / 1000, tz=timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"processing_batch_{stamp}_{short_id}.jsonl"


def cut_batches(messages: Sequence[Message], batches: int | None = None,
                batch_minutes: float | None = None) -> list[list[Message]]:
    """Cut arrival-ordered messages into ``batches`` equal parts, or windows of ``batch_minutes``."""
    if not messages:
        return []
    if batches:
        size = -(-len(messages) // batches)
        return [list(messages[i:i + size]) for i in range(0, len(messages), size)]
    window = int((batch_minutes or 15) * 60_000)
    groups: dict[int, list[Message]] = {}
    for m in messages:
        groups.setdefault(m.sent_ms // window, []).append(m)
    return [groups[k] for k in sorted(groups)]


def write_batches(messages: Sequence[Message], out_dir: str, batches: int | None = None,
                  batch_minutes: float | None = None, seed: int = 0) -> list[str]:
    """Write batch files (JSONL, the samples.jsonl shape), each by temp file + rename."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for index, group in enumerate(cut_batches(messages, batches, batch_minutes)):
        path = os.path.join(out_dir, batch_file_name(group[0].sent_ms, f"s{seed}n{index:05d}"))
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8", buffering=1 << 20) as fh:
            for m in group:
                fh.write(m.line())
                fh.write("\n")
        os.replace(tmp, path)
        paths.append(path)
    return paths


def send_to_queue(messages: Sequence[Message], endpoint_url: str | None, queue_name: str,
                  region: str = "us-east-1") -> int:
    """Send each body to the queue (creating it if needed); the server assigns MessageIds."""
    import boto3  # imported here: writing files needs no AWS SDK

    sqs = boto3.client("sqs", endpoint_url=endpoint_url, region_name=region)
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    sent = 0
    for i in range(0, len(messages), 10):
        chunk = messages[i:i + 10]
        resp = sqs.send_message_batch(QueueUrl=queue_url, Entries=[
            {"Id": str(j), "MessageBody": m.body} for j, m in enumerate(chunk)])
        if resp.get("Failed"):
            raise RuntimeError(f"send_message_batch failed: {resp['Failed'][0]}")
        sent += len(chunk)
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nelo_etl.simulate", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python -m nelo_etl.simulate --events 20000 --chaos --batches 20 --out /tmp/batches\n"
               "  python -m nelo_etl.simulate --events 500 --endpoint-url http://127.0.0.1:5000 "
               "--queue-name nelo-events")
    parser.add_argument("--events", type=int, default=20_000, help="events to make (default 20000)")
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument("--days", type=float, default=14.0, help="simulated period in days (default 14)")
    parser.add_argument("--start", default="2025-10-17T00:00:00Z", help="period start, ISO-8601 UTC")
    parser.add_argument("--chaos", action="store_true", help="redelivery, re-sends, late and bad messages")
    for knob in ("duplicate_rate", "resend_rate", "late_rate", "bad_rate"):
        parser.add_argument("--" + knob.replace("_", "-"), type=float, help=f"override the {knob}")
    out = parser.add_argument_group("output (one of)")
    out.add_argument("--out", help="folder to write batch files into")
    out.add_argument("--endpoint-url", help="send to an SQS-protocol server at this URL")
    parser.add_argument("--batches", type=int, help="with --out: cut into this many files")
    parser.add_argument("--batch-minutes", type=float, default=15.0,
                        help="with --out: one file per window of arrival time (default 15)")
    parser.add_argument("--queue-name", default="nelo-events", help="with --endpoint-url (default nelo-events)")
    args = parser.parse_args(argv)
    if bool(args.out) == bool(args.endpoint_url):
        parser.error("give exactly one of --out and --endpoint-url")
    start = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
    cfg = (SimConfig.chaos if args.chaos else SimConfig)(
        events=args.events, seed=args.seed, days=args.days, start_us=int(start.timestamp()) * US)
    for knob in ("duplicate_rate", "resend_rate", "late_rate", "bad_rate"):
        if getattr(args, knob) is not None:
            setattr(cfg, knob, getattr(args, knob))
    t0 = time.perf_counter()
    messages = Simulator(cfg).messages()
    if args.out:
        paths = write_batches(messages, args.out, args.batches, args.batch_minutes, cfg.seed)
        where = f"{len(paths)} batch files in {args.out}"
    else:
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            send_to_queue(messages, args.endpoint_url, args.queue_name)
        except (BotoCoreError, ClientError) as exc:
            # one line, not a traceback: usually missing credentials or an unreachable server
            text = str(exc).strip().splitlines()
            print(f"error: cannot send to queue {args.queue_name} at {args.endpoint_url}: {type(exc).__name__}: "
                  f"{text[0][:300] if text else ''} (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; "
                  f"a local moto server accepts any)", file=sys.stderr)
            return 1
        where = f"queue {args.queue_name} at {args.endpoint_url}"
    seconds = time.perf_counter() - t0
    print(f"simulated {cfg.events} events as {len(messages)} messages into {where} "
          f"in {seconds:.1f} s ({cfg.events / seconds:,.0f} events/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
