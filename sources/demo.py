"""Demo traffic of a web shop for ``config/demo.yaml``, and a paced Kafka producer for it.

Visitors browse in sessions (landing page, search, categories, products, cart,
checkout); some add to cart, fewer buy, a few sign up, and every page calls
the shop's backend (``api_request``). Dimensions are skewed as in real
traffic: countries follow a Zipf-like curve, devices are 60 % mobile, 35 %
desktop and 5 % tablet, and some pages are far more popular than others. The
overall rate follows a daily curve (quiet at night, peak in the evening,
UTC) and anomalies come and go: traffic spikes from one country, traffic
drops, bursts of server errors and slow endpoints on one route (see
:func:`anomalies`, the ground truth for detectors). About 0.5 % of events
arrive late (event time minutes in the past) and about 0.5 % are malformed
(bad JSON, missing fields, wrong types) so the dead-letter path has work.

Determinism: a :class:`DemoGenerator` with a given seed produces the same
sequence of events (ids, types, sessions, props) whatever the clock says;
event times come from the ``now_ms`` passed in, and anomaly effects (country
of a spike, error status, slow latency) depend on the seed and event time
only. :func:`generate` fixes the clock too, so its output is reproducible byte
for byte.
"""

from __future__ import annotations

import bisect
import math
import random
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any, Literal

import orjson
import structlog
from confluent_kafka import KafkaError, Message, Producer

log = structlog.get_logger(__name__)

AnomalyKind = Literal["spike", "drop", "errors", "slow"]

LATE_SHARE = 0.005
MALFORMED_SHARE = 0.005
TICK_S = 0.05
"""How often the producer wakes to send what its rate allows (a wake-up costs CPU; at
200 events/s each one sends about ten)."""
RFC3339_SHARE = 0.1
ANOMALY_SLOT_MS = 15 * 60 * 1000
"""Anomalies are drawn per slot of this length: at most one per slot."""

_DAY_MS = 86_400_000
_HOURLY_SHAPE = (
    0.55,
    0.4,
    0.3,
    0.25,
    0.22,
    0.25,
    0.35,
    0.55,
    0.8,
    0.95,
    1.05,
    1.1,
    1.15,
    1.1,
    1.05,
    1.05,
    1.1,
    1.2,
    1.35,
    1.55,
    1.65,
    1.55,
    1.2,
    0.85,
)
_HOURLY = tuple(h * 24 / sum(_HOURLY_SHAPE) for h in _HOURLY_SHAPE)

# Countries by traffic rank; weights fall off as 1 / rank ** 1.1.
_COUNTRIES: tuple[tuple[str, str, float], ...] = (
    # code, currency, units per US dollar
    ("US", "USD", 1.0),
    ("GB", "GBP", 0.79),
    ("DE", "EUR", 0.92),
    ("IN", "INR", 83.0),
    ("FR", "EUR", 0.92),
    ("BR", "BRL", 5.0),
    ("CA", "CAD", 1.36),
    ("JP", "JPY", 150.0),
    ("NL", "EUR", 0.92),
    ("ES", "EUR", 0.92),
    ("IT", "EUR", 0.92),
    ("AU", "AUD", 1.5),
    ("MX", "MXN", 17.0),
    ("PL", "PLN", 4.0),
    ("SE", "SEK", 10.5),
    ("TR", "TRY", 32.0),
    ("KR", "KRW", 1350.0),
    ("ZA", "ZAR", 18.5),
    ("IE", "EUR", 0.92),
    ("AR", "ARS", 900.0),
)
_WHOLE_UNITS = frozenset({"JPY", "KRW"})
_SPIKE_COUNTRIES = ("BR", "IN", "DE", "MX", "PL")

_DEVICES = (("mobile", 0.60), ("desktop", 0.35), ("tablet", 0.05))
_USER_AGENTS = {
    "mobile": (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
        "Mozilla/5.0 (Linux; Android 13; SM-A546B) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/125.0.0.0 Mobile Safari/537.36",
    ),
    "desktop": (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
        "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    ),
    "tablet": (
        "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    ),
}
_CHANNELS = (
    ("organic", 0.40),
    ("paid_search", 0.25),
    ("social", 0.15),
    ("referral", 0.10),
    ("email", 0.10),
)
_FIRST_OCTETS = (23, 31, 45, 62, 77, 81, 89, 91, 103, 109, 151, 176, 185, 188, 193, 203, 212)

# Where a session lands, and where it goes from each page ("exit" ends it).
_LANDING = (("home", 0.35), ("product", 0.30), ("search", 0.15), ("category", 0.15), ("help", 0.05))
_NEXT: dict[str, tuple[tuple[str, float], ...]] = {
    "home": (
        ("search", 0.30),
        ("category", 0.28),
        ("product", 0.20),
        ("account", 0.07),
        ("help", 0.03),
        ("exit", 0.12),
    ),
    "search": (("product", 0.55), ("search", 0.20), ("category", 0.05), ("exit", 0.20)),
    "category": (("product", 0.60), ("category", 0.15), ("search", 0.10), ("exit", 0.15)),
    "product": (
        ("product", 0.30),
        ("search", 0.15),
        ("category", 0.15),
        ("cart", 0.12),
        ("home", 0.08),
        ("exit", 0.20),
    ),
    "cart": (("checkout", 0.55), ("product", 0.20), ("exit", 0.25)),
    "checkout": (("purchase", 0.65), ("cart", 0.10), ("exit", 0.25)),
    "account": (("home", 0.40), ("product", 0.20), ("exit", 0.40)),
    "help": (("home", 0.30), ("exit", 0.70)),
}
_ADD_TO_CART = 0.18  # chance a product view is followed by adding it
_SIGNUP = 0.5  # chance an anonymous visitor on the account or checkout page signs up

# Backend calls: route, method, median latency ms, 4xx share, 4xx status.
_Route = tuple[str, str, float, float, int]
_ROUTES: dict[str, _Route] = {
    "recommendations": ("/api/recommendations", "GET", 60.0, 0.005, 400),
    "search": ("/api/search", "GET", 80.0, 0.02, 400),
    "category": ("/api/categories/{id}/products", "GET", 45.0, 0.01, 404),
    "product": ("/api/products/{id}", "GET", 25.0, 0.03, 404),
    "cart": ("/api/cart", "GET", 20.0, 0.005, 401),
    "cart_add": ("/api/cart/items", "POST", 35.0, 0.02, 422),
    "checkout": ("/api/checkout", "POST", 250.0, 0.04, 422),
    "orders": ("/api/orders", "POST", 300.0, 0.01, 409),
    "account": ("/api/account", "GET", 30.0, 0.06, 401),
    "users": ("/api/users", "POST", 120.0, 0.05, 409),
}
_PAGE_CALLS: dict[str, tuple[str, ...]] = {
    "home": ("recommendations",),
    "search": ("search",),
    "category": ("category",),
    "product": ("product", "recommendations"),
    "cart": ("cart",),
    "checkout": ("checkout",),
    "account": ("account",),
    "help": (),
}
_ERROR_ROUTES = ("/api/checkout", "/api/search", "/api/products/{id}", "/api/orders")
_SERVER_ERROR = 0.004
_SERVER_STATUSES = (500, 502, 503)

_MALFORMED_KINDS = (
    "truncated",
    "not_object",
    "bad_utf8",
    "missing_event_id",
    "missing_type",
    "missing_ts",
    "ts_wrong_type",
    "props_wrong_type",
)


def _cumulative(weights: Sequence[float]) -> list[float]:
    total = sum(weights)
    return [w / total for w in accumulate(weights)]


class _Picker:
    """Weighted choice with one uniform draw (``random.choices`` costs more per call)."""

    __slots__ = ("cum", "items")

    def __init__(self, pairs: Sequence[tuple[str, float]]) -> None:
        self.items = [name for name, _ in pairs]
        self.cum = _cumulative([w for _, w in pairs])

    def pick(self, u: float) -> str:
        return self.items[min(bisect.bisect_right(self.cum, u), len(self.items) - 1)]


_COUNTRY_PICK = _Picker([(c, 1 / (rank + 1) ** 1.1) for rank, (c, _, _) in enumerate(_COUNTRIES)])
_CURRENCY = {code: (currency, rate) for code, currency, rate in _COUNTRIES}
_DEVICE_PICK = _Picker(_DEVICES)
_CHANNEL_PICK = _Picker(_CHANNELS)
_LANDING_PICK = _Picker(_LANDING)
_NEXT_PICK = {page: _Picker(pairs) for page, pairs in _NEXT.items()}


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One injected anomaly, active over ``[start_ms, end_ms)`` of event time.

    ``spike`` multiplies the event rate by ``factor`` and sends most new
    sessions from ``country``; ``drop`` multiplies the rate by ``factor`` (< 1);
    ``errors`` makes ``factor`` of the calls to ``endpoint`` fail with 5xx;
    ``slow`` multiplies the latency of ``endpoint`` by ``factor``.
    """

    kind: AnomalyKind
    start_ms: int
    end_ms: int
    factor: float
    country: str | None = None
    endpoint: str | None = None


def _slot_anomaly(seed: int, slot: int) -> Anomaly | None:
    """The anomaly of one slot, if any: a pure function of seed and slot."""
    rng = random.Random(f"riffle-demo-anomaly:{seed}:{slot}")
    if rng.random() >= 0.6:
        return None
    kind: AnomalyKind = rng.choice(("spike", "drop", "errors", "slow"))
    duration = rng.randint(45_000, 180_000)
    start = slot * ANOMALY_SLOT_MS + rng.randint(0, ANOMALY_SLOT_MS - duration)
    if kind == "spike":
        return Anomaly(
            kind,
            start,
            start + duration,
            rng.uniform(2.5, 4.0),
            country=rng.choice(_SPIKE_COUNTRIES),
        )
    if kind == "drop":
        return Anomaly(kind, start, start + duration, rng.uniform(0.1, 0.3))
    if kind == "errors":
        return Anomaly(
            kind, start, start + duration, rng.uniform(0.3, 0.6), endpoint=rng.choice(_ERROR_ROUTES)
        )
    return Anomaly(
        kind, start, start + duration, rng.uniform(4.0, 8.0), endpoint=rng.choice(_ERROR_ROUTES)
    )


def anomalies(seed: int, start_ms: int, end_ms: int) -> list[Anomaly]:
    """Every anomaly of ``seed`` that overlaps ``[start_ms, end_ms)``, in time order."""
    found = []
    for slot in range(start_ms // ANOMALY_SLOT_MS, (end_ms - 1) // ANOMALY_SLOT_MS + 1):
        anomaly = _slot_anomaly(seed, slot)
        if anomaly is not None and anomaly.start_ms < end_ms and anomaly.end_ms > start_ms:
            found.append(anomaly)
    return found


def daily_factor(ts_ms: int) -> float:
    """Traffic relative to the daily mean at a UTC time: ~0.3 before dawn, ~1.7 at 20:00.

    A typical shop's hourly profile, interpolated linearly between hours. It
    averages 1.0 over a day, so a rate given as "events per second" is the
    daily mean.
    """
    hour = (ts_ms % _DAY_MS) / 3_600_000
    whole = int(hour)
    low, high = _HOURLY[whole], _HOURLY[(whole + 1) % 24]
    return low + (high - low) * (hour - whole)


@dataclass(slots=True)
class _Session:
    session_id: str
    user_id: str
    registered: bool
    country: str
    device: str
    ip: str
    user_agent: str
    channel: str
    page: str | None = None
    cart: list[tuple[str, int, float]] = field(default_factory=list)  # product, qty, usd
    pending: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    done: bool = False


class DemoGenerator:
    """An endless stream of web-shop events over ``sessions`` concurrent sessions.

    Each call to :meth:`next_event` advances one randomly chosen session by
    one event; a session that ends is replaced by a new one. Not thread-safe.
    """

    def __init__(self, seed: int = 0, *, sessions: int = 300, users: int = 50_000) -> None:
        if sessions < 1 or users < 1:
            raise ValueError("sessions and users must be positive")
        self.seed = seed
        self._rng = random.Random(seed)
        self._users = users
        self._next_user = users  # ids of visitors who sign up count on from here
        self._slot = -1
        self._slot_anomaly: Anomaly | None = None
        self._sessions = [self._new_session(0) for _ in range(sessions)]

    def anomaly_at(self, ts_ms: int) -> Anomaly | None:
        """The anomaly active at event time ``ts_ms``, if any (see :func:`anomalies`)."""
        slot = ts_ms // ANOMALY_SLOT_MS
        if slot != self._slot:
            self._slot, self._slot_anomaly = slot, _slot_anomaly(self.seed, slot)
        found = self._slot_anomaly
        return found if found is not None and found.start_ms <= ts_ms < found.end_ms else None

    def rate_factor(self, ts_ms: int) -> float:
        """Event rate at ``ts_ms`` relative to the mean: the daily curve times spikes/drops."""
        factor = daily_factor(ts_ms)
        anomaly = self.anomaly_at(ts_ms)
        if anomaly is not None and anomaly.kind in ("spike", "drop"):
            factor *= anomaly.factor
        return factor

    def next_event(self, now_ms: int) -> tuple[bytes, bytes]:
        """The next event as ``(key, value)``: key is the user id, value JSON bytes.

        The event's ``ts`` is ``now_ms`` less a network delay of up to 0.4 s,
        or minutes earlier for a late event; a malformed value may not be
        JSON at all.
        """
        rng = self._rng
        index = rng.randrange(len(self._sessions))
        session = self._sessions[index]
        anomaly = self.anomaly_at(now_ms)
        while not session.pending:
            self._advance(session, anomaly)
            if not session.pending:  # the visitor left: someone else arrives
                session = self._sessions[index] = self._new_session(now_ms)
        event_type, props = session.pending.pop(0)
        if session.done and not session.pending:
            self._sessions[index] = self._new_session(now_ms)
        late = rng.random() < LATE_SHARE
        delay = rng.randint(120_000, 600_000) if late else rng.randint(0, 400)
        ts_ms = now_ms - delay
        as_text = rng.random() < RFC3339_SHARE
        ts: int | str = _rfc3339(ts_ms) if as_text else ts_ms
        event: dict[str, Any] = {
            "event_id": _uuid(rng),
            "type": event_type,
            "ts": ts,
            "props": props,
            "context": {
                "country": session.country,
                "device": session.device,
                "user_id": session.user_id,
                "session_id": session.session_id,
                "ip": session.ip,
                "user_agent": session.user_agent,
            },
        }
        malformed = rng.random() < MALFORMED_SHARE
        kind = _MALFORMED_KINDS[rng.randrange(len(_MALFORMED_KINDS))]
        # Keyed by user, so every event of a user lands on one partition: the
        # enrich stage's sessions (per user, per partition) are then exact.
        key = session.user_id.encode()
        return key, (_malform(event, kind) if malformed else orjson.dumps(event))

    def _new_session(self, now_ms: int) -> _Session:
        rng = self._rng
        returning = rng.random() < 0.7
        user = rng.randrange(self._users)
        user_id = f"u{user:07d}" if returning else f"anon-{rng.getrandbits(48):012x}"
        # A user keeps country, device and address across sessions.
        profile = random.Random(f"riffle-demo-user:{self.seed}:{user}")
        country = _COUNTRY_PICK.pick(profile.random())
        device = _DEVICE_PICK.pick(profile.random())
        ip = (
            f"{profile.choice(_FIRST_OCTETS)}.{profile.randrange(256)}."
            f"{profile.randrange(256)}.{profile.randrange(1, 255)}"
        )
        user_agent = profile.choice(_USER_AGENTS[device])
        surge = rng.random()
        anomaly = self.anomaly_at(now_ms)
        # Only spikes have a country: most of their extra sessions come from it.
        if anomaly is not None and anomaly.country is not None and surge < 1 - 1 / anomaly.factor:
            country = anomaly.country
        return _Session(
            session_id=f"s-{rng.getrandbits(64):016x}",
            user_id=user_id,
            registered=returning,
            country=country,
            device=device,
            ip=ip,
            user_agent=user_agent,
            channel=_CHANNEL_PICK.pick(rng.random()),
        )

    def _advance(self, session: _Session, anomaly: Anomaly | None) -> None:
        """Queue the session's next step: a page view with its backend calls, or the end."""
        rng = self._rng
        if session.page is None:
            page = _LANDING_PICK.pick(rng.random())
        else:
            page = _NEXT_PICK[session.page].pick(rng.random())
        if page == "cart" and not session.cart:
            page = "product"  # nothing to show in the cart yet
        if page == "purchase" and session.cart:
            self._purchase(session, anomaly)
            session.done = True
            return
        if page in ("exit", "purchase"):
            session.done = True
            return
        session.page = page
        self._queue(session, "page_view", self._page_props(page))
        for route in _PAGE_CALLS[page]:
            self._queue(session, "api_request", self._call(route, anomaly))
        if page == "product" and rng.random() < _ADD_TO_CART:
            self._add_to_cart(session, anomaly)
        if page in ("account", "checkout") and not session.registered and rng.random() < _SIGNUP:
            self._signup(session, anomaly)

    def _queue(self, session: _Session, event_type: str, props: dict[str, Any]) -> None:
        session.pending.append((event_type, props))

    def _page_props(self, page: str) -> dict[str, Any]:
        rng = self._rng
        if page == "product":
            product = _product(rng)
            return {"page": page, "path": f"/p/{product}", "product_id": product}
        if page == "category":
            return {"page": page, "path": f"/c/{rng.randint(1, 40)}"}
        if page == "search":
            return {"page": page, "path": "/search", "results": rng.randint(0, 60)}
        return {"page": page, "path": "/" if page == "home" else f"/{page}"}

    def _add_to_cart(self, session: _Session, anomaly: Anomaly | None) -> None:
        rng = self._rng
        product = _product(rng)
        quantity = 1 if rng.random() < 0.8 else rng.randint(2, 4)
        usd = round(math.exp(rng.gauss(3.2, 0.8)), 2)  # median ~25 USD
        session.cart.append((product, quantity, usd))
        currency, per_usd = _CURRENCY[session.country]
        self._queue(
            session,
            "add_to_cart",
            {
                "product_id": product,
                "quantity": quantity,
                "price": _money(usd * per_usd, currency),
                "currency": currency,
            },
        )
        self._queue(session, "api_request", self._call("cart_add", anomaly))

    def _purchase(self, session: _Session, anomaly: Anomaly | None) -> None:
        rng = self._rng
        currency, per_usd = _CURRENCY[session.country]
        usd = sum(quantity * price for _, quantity, price in session.cart)
        shipping = 0.0 if usd > 50 else 4.99
        self._queue(session, "page_view", {"page": "confirmation", "path": "/order/thanks"})
        self._queue(session, "api_request", self._call("orders", anomaly))
        self._queue(
            session,
            "purchase",
            {
                "order_id": f"o-{rng.getrandbits(48):012x}",
                "amount": _money((usd + shipping) * per_usd, currency),
                "currency": currency,
                "items": sum(quantity for _, quantity, _ in session.cart),
            },
        )
        session.cart.clear()

    def _signup(self, session: _Session, anomaly: Anomaly | None) -> None:
        session.user_id = f"u{self._next_user:07d}"
        self._next_user += 1
        session.registered = True
        self._queue(session, "api_request", self._call("users", anomaly))
        self._queue(
            session,
            "signup",
            {
                "channel": session.channel,
                "plan": "newsletter" if self._rng.random() < 0.3 else "basic",
            },
        )

    def _call(self, route_name: str, anomaly: Anomaly | None) -> dict[str, Any]:
        """Props of one backend call; a fixed number of draws whatever the anomaly."""
        rng = self._rng
        endpoint, method, median, client_error, client_status = _ROUTES[route_name]
        latency = median * math.exp(rng.gauss(0.0, 0.5))
        u_error = rng.random()
        u_status = rng.randrange(len(_SERVER_STATUSES))
        server_error = _SERVER_ERROR
        if anomaly is not None and anomaly.endpoint == endpoint:
            if anomaly.kind == "errors":
                server_error = anomaly.factor
            elif anomaly.kind == "slow":
                latency *= anomaly.factor
        if u_error < server_error:
            status = _SERVER_STATUSES[u_status]
            latency = latency * 3 if status == 503 else latency
        elif u_error < server_error + client_error:
            status = client_status
        else:
            status = 201 if method == "POST" else 200
        return {
            "endpoint": endpoint,
            "method": method,
            "status": status,
            "status_class": f"{status // 100}xx",
            "latency_ms": round(latency, 1),
        }


def _product(rng: random.Random) -> str:
    # Popular products: a Pareto tail over a catalogue of 5,000.
    return f"sku-{min(int(rng.paretovariate(1.2)), 5000):05d}"


def _money(amount: float, currency: str) -> float:
    return float(round(amount)) if currency in _WHOLE_UNITS else round(amount, 2)


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}"


def _rfc3339(ts_ms: int) -> str:
    moment = datetime.fromtimestamp(ts_ms // 1000, tz=UTC).replace(microsecond=ts_ms % 1000 * 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _malform(event: dict[str, Any], kind: str) -> bytes:
    """A broken rendering of ``event`` that the envelope check must reject."""
    if kind == "truncated":
        raw = orjson.dumps(event)
        return raw[: len(raw) // 2]
    if kind == "not_object":
        return orjson.dumps([event["type"], event["ts"], event["props"]])
    if kind == "bad_utf8":
        return orjson.dumps(event).replace(b'"type"', b'"ty\xffpe"', 1)
    broken = dict(event)
    if kind == "missing_event_id":
        del broken["event_id"]
    elif kind == "missing_type":
        del broken["type"]
    elif kind == "missing_ts":
        del broken["ts"]
    elif kind == "ts_wrong_type":
        broken["ts"] = "yesterday"
    else:
        broken["props"] = "n/a"
    return orjson.dumps(broken)


def generate(
    n: int, seed: int = 0, start_ms: int | None = None, rate: float = 200.0
) -> list[bytes]:
    """``n`` event values as JSON bytes, as the producer would send them, without a broker.

    Event time starts at ``start_ms`` (default: now) and advances as traffic
    of mean ``rate`` events/s would, following :func:`daily_factor` and the
    anomalies of ``seed``. With ``start_ms`` given the result is the same
    bytes on every call, in every process. Roughly 50k events/s on one core.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    generator = DemoGenerator(seed)
    clock = float(time.time_ns() // 1_000_000 if start_ms is None else start_ms)
    out = []
    for _ in range(n):
        now = int(clock)
        out.append(generator.next_event(now)[1])
        clock += 1000.0 / (rate * generator.rate_factor(now))
    return out


@dataclass(frozen=True, slots=True)
class ProduceSummary:
    """What a producer run did: messages acknowledged, messages lost, and for how long."""

    sent: int
    failed: int
    seconds: float


class _Delivery:
    """Counts broker acknowledgements; librdkafka calls it from ``poll``/``flush``."""

    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.sent += 1
            return
        self.failed += 1
        if self.failed <= 5 or self.failed % 1000 == 0:
            log.warning(
                "demo_delivery_failed", error=error.str(), failed=self.failed, topic=message.topic()
            )


def produce(
    servers: str,
    topic: str,
    *,
    rate: float,
    seed: int = 0,
    duration: float | None = None,
    count: int | None = None,
    stop: threading.Event | None = None,
    extra_config: Mapping[str, object] | None = None,
) -> ProduceSummary:
    """Send demo events to ``topic`` at a mean of ``rate`` events/s until told to stop.

    Stops after ``duration`` seconds, after ``count`` events, or when ``stop``
    is set, whichever comes first (with none given it runs until
    interrupted); always flushes before returning, also on
    ``KeyboardInterrupt``. Pacing is by tokens against the monotonic clock,
    scaled by :meth:`DemoGenerator.rate_factor`, so the long-run rate does not
    drift; a producer that falls more than a second behind does not burst to
    catch up. Messages are keyed by user id; the producer is idempotent
    with ``acks=all``. ``failed`` counts messages the broker did not
    acknowledge, including those still queued when the final flush timed out.
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    stop = stop or threading.Event()
    config: dict[str, object] = {
        "bootstrap.servers": servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 50,
        "batch.num.messages": 10_000,
        "compression.type": "lz4",
        **(extra_config or {}),
    }
    producer = Producer(config)
    delivery = _Delivery()
    generator = DemoGenerator(seed)
    started = last = time.monotonic()
    deadline = None if duration is None else started + duration
    credit = 0.0
    produced = 0
    anomaly: Anomaly | None = None
    next_report = started + 30.0
    log.info("demo_produce_start", topic=topic, rate=rate, seed=seed, duration=duration)
    try:
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            now_ms = time.time_ns() // 1_000_000
            current = generator.rate_factor(now_ms) * rate
            credit = min(credit + (now - last) * current, max(current, 1.0))
            last = now
            due = int(credit)
            if count is not None:
                due = min(due, count - produced)
            for _ in range(due):
                key, value = generator.next_event(now_ms)
                _send(producer, topic, key, value, delivery)
            credit -= due
            produced += due
            if count is not None and produced >= count:
                break
            active = generator.anomaly_at(now_ms)
            if active != anomaly:
                anomaly = active
                if active is not None:
                    log.info(
                        "demo_anomaly",
                        kind=active.kind,
                        factor=round(active.factor, 2),
                        country=active.country,
                        endpoint=active.endpoint,
                        seconds=(active.end_ms - active.start_ms) // 1000,
                    )
            if now >= next_report:
                next_report = now + 30.0
                log.info(
                    "demo_produce_progress",
                    sent=delivery.sent,
                    failed=delivery.failed,
                    rate_now=round(current, 1),
                )
            producer.poll(0)
            stop.wait(TICK_S)
    finally:
        unflushed = producer.flush(30.0)
        seconds = time.monotonic() - started
        summary = ProduceSummary(delivery.sent, delivery.failed + unflushed, seconds)
        log.info(
            "demo_produce_done",
            topic=topic,
            sent=summary.sent,
            failed=summary.failed,
            seconds=round(seconds, 2),
            rate=round(summary.sent / seconds, 1) if seconds > 0 else 0.0,
        )
    return summary


def _send(producer: Producer, topic: str, key: bytes, value: bytes, delivery: _Delivery) -> None:
    """Queue one message, waiting for room when librdkafka's queue is full."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=delivery)
        except BufferError:
            producer.poll(0.05)
        else:
            return
