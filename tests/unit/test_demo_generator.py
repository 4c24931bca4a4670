"""The demo generator alone: shape, proportions, skew, daily curve, anomalies, determinism."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import orjson
import pytest

from riffle.config.settings import DEMO_SPEC
from riffle.config.spec import load_spec
from riffle.operators.enrich import Enricher, compile_enrichment
from riffle.operators.envelope import EnvelopeError, check, decode
from riffle.sources.demo import (
    ANOMALY_SLOT_MS,
    LATE_SHARE,
    MALFORMED_SHARE,
    DemoGenerator,
    anomalies,
    daily_factor,
    generate,
)

START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
N = 20_000


@pytest.fixture(scope="module")
def raw() -> list[bytes]:
    return generate(N, seed=42, start_ms=START + 12 * HOUR, rate=500)


@pytest.fixture(scope="module")
def parsed(raw: list[bytes]) -> tuple[list[tuple[dict[str, Any], int]], int]:
    """Well-formed events with their event time, and the count of malformed ones."""
    good, bad = [], 0
    for value in raw:
        try:
            event = decode(value)
            good.append((event, check(event)))
        except EnvelopeError:
            bad += 1
    return good, bad


def test_every_spec_event_type_appears_in_sensible_proportions(parsed: Any) -> None:
    good, _ = parsed
    types = Counter(event["type"] for event, _ in good)
    assert set(types) == set(load_spec(DEMO_SPEC).event_types)
    share = {name: count / len(good) for name, count in types.items()}
    assert 0.25 < share["page_view"] < 0.6
    assert 0.3 < share["api_request"] < 0.7
    assert 0.01 < share["add_to_cart"] < 0.08
    assert 0.0005 < share["purchase"] < share["add_to_cart"]
    assert 0.0002 < share["signup"] < 0.01


def test_props_carry_what_the_demo_metrics_read(parsed: Any) -> None:
    good, _ = parsed
    spec = load_spec(DEMO_SPEC)
    wanted: dict[str, set[str]] = {}
    for metric in spec.metrics:
        paths = [spec.dimensions[d].path for d in metric.dimensions]
        paths += [p for p in [metric.value] if p] + [c.path for c in metric.filter]
        for event_type in metric.events:
            wanted.setdefault(event_type, set()).update(paths)
    plan = compile_enrichment(spec)
    assert plan is not None
    enricher = Enricher(plan)
    located = 0
    for original, ts in good:
        # The demo's enrichment fills the fields the enriched dimensions read.
        event = copy.deepcopy(original)
        enricher.enrich(event, ts, "demo", ts, "test")
        for path in wanted[event["type"]]:
            holder, field = path.split(".")
            if path == "context.geo_country":  # not every address is in the geo table
                located += event[holder].get(field) is not None
                continue
            assert event[holder].get(field) is not None, (path, event)
        if event["type"] == "purchase":
            assert isinstance(event["props"]["amount"], float)
            assert event["props"]["amount"] > 0
            assert len(event["props"]["currency"]) == 3
        if event["type"] == "api_request":
            props = event["props"]
            assert props["status_class"] == f"{props['status'] // 100}xx"
            assert props["latency_ms"] > 0
    assert located > 0.9 * len(good)


def test_envelope_and_context(parsed: Any) -> None:
    good, _ = parsed
    ids = [event["event_id"] for event, _ in good]
    assert len(set(ids)) == len(ids)
    for event, _ in good:
        assert set(event) == {"event_id", "type", "ts", "props", "context"}
        assert set(event["context"]) == {
            "country", "device", "user_id", "session_id", "ip", "user_agent",
        }  # fmt: skip
    text_ts = sum(isinstance(event["ts"], str) for event, _ in good)
    assert 0.05 < text_ts / len(good) < 0.15


def test_malformed_share_is_small_and_each_is_rejected(raw: list[bytes], parsed: Any) -> None:
    _, bad = parsed
    assert 0.3 * MALFORMED_SHARE < bad / len(raw) < 2 * MALFORMED_SHARE


def test_late_events_are_minutes_behind(parsed: Any) -> None:
    good, _ = parsed
    newest, late = 0, 0
    for _, ts in good:
        if ts < newest - 60_000:
            late += 1
            assert newest - ts < 11 * 60_000
        newest = max(newest, ts)
    assert 0.3 * LATE_SHARE < late / len(good) < 2 * LATE_SHARE


def test_dimensions_are_skewed(parsed: Any) -> None:
    good, _ = parsed
    countries = Counter(event["context"]["country"] for event, _ in good).most_common()
    assert countries[0][0] == "US"
    assert countries[0][1] > 2 * countries[3][1]  # Zipf-like, not uniform
    devices = Counter(event["context"]["device"] for event, _ in good)
    total = sum(devices.values())
    assert devices["mobile"] / total == pytest.approx(0.60, abs=0.08)
    assert devices["desktop"] / total == pytest.approx(0.35, abs=0.08)
    assert devices["tablet"] / total == pytest.approx(0.05, abs=0.04)
    pages = Counter(e["props"]["page"] for e, _ in good if e["type"] == "page_view")
    assert pages.most_common(1)[0][0] == "product"


def test_sessions_browse_then_sometimes_buy(parsed: Any) -> None:
    good, _ = parsed
    by_session: dict[str, list[str]] = {}
    for event, _ in good:
        by_session.setdefault(event["context"]["session_id"], []).append(event["type"])
    assert len(by_session) > 500
    buyers = [types for types in by_session.values() if "purchase" in types]
    assert buyers
    for types in buyers:
        assert types.index("add_to_cart") < types.index("purchase")
    assert len({event["context"]["user_id"] for event, _ in good}) > 500


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    assert generate(500, seed=7, start_ms=START) == generate(500, seed=7, start_ms=START)
    assert generate(500, seed=7, start_ms=START) != generate(500, seed=8, start_ms=START)


def test_event_order_does_not_depend_on_the_clock() -> None:
    """The producer's clock differs run to run; ids, types and sessions must not."""

    def skeleton(start: int) -> list[tuple[str, str, bytes]]:
        generator = DemoGenerator(3)
        out = []
        for i in range(3000):
            key, value = generator.next_event(start + i * 7)
            try:
                event = orjson.loads(value)
                out.append((event["event_id"], event["type"], key))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                out.append(("", "", key))
        return out

    assert skeleton(START) == skeleton(START + 5 * HOUR + 1234)


def test_daily_curve_averages_one_and_peaks_in_the_evening() -> None:
    samples = [daily_factor(START + minute * 60_000) for minute in range(24 * 60)]
    assert sum(samples) / len(samples) == pytest.approx(1.0, abs=1e-3)
    assert daily_factor(START + 20 * HOUR) > 1.5
    assert daily_factor(START + 4 * HOUR) < 0.4
    assert daily_factor(START + 24 * HOUR - 1) == pytest.approx(daily_factor(START), rel=1e-3)
    assert min(samples) > 0


def test_anomalies_are_seeded_and_change_the_traffic() -> None:
    day = anomalies(5, START, START + 24 * 3_600_000)
    assert day == anomalies(5, START, START + 24 * 3_600_000)
    assert day != anomalies(6, START, START + 24 * 3_600_000)
    assert {a.kind for a in day} == {"spike", "drop", "errors", "slow"}
    assert len(day) <= 24 * 3_600_000 // ANOMALY_SLOT_MS
    generator = DemoGenerator(5)
    for anomaly in day:
        middle = (anomaly.start_ms + anomaly.end_ms) // 2
        assert generator.anomaly_at(middle) == anomaly
        factor = generator.rate_factor(middle) / daily_factor(middle)
        if anomaly.kind in ("spike", "drop"):
            assert factor == pytest.approx(anomaly.factor)
        else:
            assert factor == pytest.approx(1.0)
            assert anomaly.endpoint is not None


def test_error_burst_shows_in_the_events() -> None:
    burst = next(a for a in anomalies(5, START, START + 24 * HOUR) if a.kind == "errors")
    generator = DemoGenerator(5)
    inside: Counter[str] = Counter()
    calls = 0
    for i in range(200_000):
        if calls >= 300:
            break
        value = generator.next_event(burst.start_ms + i % (burst.end_ms - burst.start_ms))[1]
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if type(event) is not dict or event.get("type") != "api_request":
            continue
        props = event.get("props")
        if type(props) is dict and props["endpoint"] == burst.endpoint:
            calls += 1
            inside[props["status_class"]] += 1
    assert calls >= 300
    assert inside["5xx"] / calls == pytest.approx(burst.factor, abs=0.15)


def test_generate_follows_the_rate() -> None:
    events = generate(1000, seed=1, start_ms=START + 12 * HOUR, rate=100)
    times = sorted(check(decode(v)) for v in events if _ok(v))
    span_s = (times[-1] - times[len(times) // 50]) / 1000  # the lowest 2 %: late events
    expected = 1000 / (100 * daily_factor(START + 12 * HOUR))
    assert span_s == pytest.approx(expected, rel=0.1)


def _ok(value: bytes) -> bool:
    try:
        check(decode(value))
    except EnvelopeError:
        return False
    return True


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rate"):
        generate(1, rate=0)
    with pytest.raises(ValueError, match="positive"):
        DemoGenerator(sessions=0)
