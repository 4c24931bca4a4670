"""Every window kind through the whole flow against a brute-force reference.

Random events with disorder and lateness across two partitions; the
reference re-derives lateness from per-partition running maxima and builds
tumbling, hopping and session windows by enumeration. Corrections (``late:
correct``) must leave the last final of each window equal to the reference.
"""

from __future__ import annotations

from collections import defaultdict

import orjson
from bytewax.testing import TestingSink, TestingSource, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from riffle.config.settings import Settings
from riffle.config.spec import parse_spec
from riffle.dataflows.metrics import FlowOutputs, build_flow
from riffle.dataflows.telemetry import FlowTelemetry
from riffle.operators.records import DeadLetter, WindowResult
from riffle.sources.kafka import PartitionPoll

T0 = 1_767_225_600_000
SPEC = parse_spec("""
event_types: {click: {}}
dimensions: {page: {path: props.page}}
metrics:
  - {name: per_minute, events: [click], aggregation: count, dimensions: [page], window: 1m}
  - name: hopping_sum
    events: [click]
    aggregation: sum
    value: props.n
    window: {kind: hopping, size: 2m, step: 30s}
  - name: visits
    events: [click]
    aggregation: count
    dimensions: [page]
    window: {kind: session, gap: 20s}
  - name: corrected
    events: [click]
    aggregation: max
    value: props.n
    window: 1m
    late: correct
    late_horizon: 3m
  - {name: patient, events: [click], aggregation: count, window: 1m, lateness: 45s}
""")
LATENESS = 10_000
Key = tuple[str, tuple[tuple[str, str], ...], int]

events_strategy = st.lists(
    st.tuples(
        st.integers(0, 1),  # partition
        st.integers(0, 30),  # seconds of progress
        st.one_of(st.integers(-15, 5), st.integers(-300, 5)),  # disorder: seconds back
        st.sampled_from(["a", "b"]),
        st.integers(1, 9),
    ),
    min_size=1,
    max_size=120,
)


def reference(events: list[tuple[int, int, int, str]]) -> dict[Key, tuple[int, float, int]]:
    """``(metric, dims, start) -> (count, value, end)`` by enumeration."""
    clock: dict[int, int] = defaultdict(lambda: -(2**62))
    sums: dict[Key, list[float]] = {}
    ends: dict[Key, int] = {}
    session_points: dict[tuple[str, ...], list[int]] = defaultdict(list)

    def add(metric: str, dims: tuple[tuple[str, str], ...], start: int, end: int, n: int) -> None:
        slot = sums.setdefault((metric, dims, start), [0, 0.0, float("-inf")])
        slot[0] += 1
        slot[1] += n
        slot[2] = max(slot[2], n)
        ends[(metric, dims, start)] = end

    for part, ts, page, n in events:
        now = clock[part]
        page_dims = (("page", page),)
        if ts >= now - LATENESS:
            start = ts - ts % 60_000
            add("per_minute", page_dims, start, start + 60_000, n)
            last = ts - ts % 30_000
            for s in range(last - 90_000, last + 1, 30_000):
                add("hopping_sum", (), s, s + 120_000, n)
            session_points[page].append(ts)
        start = ts - ts % 60_000
        if ts >= now - LATENESS or start + 60_000 + 180_000 > now - LATENESS:
            add("corrected", (), start, start + 60_000, n)
        if ts >= now - 45_000:
            add("patient", (), start, start + 60_000, n)
        clock[part] = max(now, ts)
    for page, points in session_points.items():
        points.sort()
        first = last = points[0]
        count = 0
        for ts in points:
            if ts - last >= 20_000:
                add_session(sums, ends, page, first, last, count)
                first, count = ts, 0
            last = ts
            count += 1
        add_session(sums, ends, page, first, last, count)
    out = {}
    for key, (count, total, high) in sums.items():
        value = {"hopping_sum": total, "corrected": high}.get(key[0], float(count))
        out[key] = (count, value, ends[key])
    return out


def add_session(
    sums: dict[Key, list[float]], ends: dict[Key, int], page: str, first: int, last: int, count: int
) -> None:
    key = ("visits", (("page", page),), first)
    sums[key] = [count, float(count), float("-inf")]
    ends[key] = last + 20_000


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_strategy, st.integers(1, 20))
def test_every_window_kind_matches_the_reference(
    raw: list[tuple[int, int, int, str, int]], poll_size: int
) -> None:
    events = []
    progress = {0: T0, 1: T0}
    for part, step, back, page, n in raw:
        progress[part] += step * 1000
        events.append((part, progress[part] + back * 1000, page, n))
    per_part: dict[int, list[tuple[bytes | None, str | None, int]]] = defaultdict(list)
    for i, (part, ts, page, n) in enumerate(events):
        body = {"event_id": str(i), "type": "click", "ts": ts, "props": {"page": page, "n": n}}
        per_part[part].append((orjson.dumps(body), None, len(per_part[part])))
    polls = []
    for start in range(0, max(len(m) for m in per_part.values()), poll_size):
        for part in sorted(per_part):
            chunk = per_part[part][start : start + poll_size]
            if chunk:
                polls.append((f"p{part}", PartitionPoll(f"p{part}", chunk, at_end=False)))
    out: list[WindowResult] = []
    dead: list[DeadLetter] = []
    flow = build_flow(
        SPEC,
        Settings(lateness_seconds=LATENESS / 1000, buckets=3, partial_interval_seconds=0.01),
        source=TestingSource(polls),
        partitions=["p0", "p1"],
        outputs=FlowOutputs(TestingSink(out), None, TestingSink(dead)),
        telemetry=FlowTelemetry(CollectorRegistry()),
    )
    run_main(flow)

    # Replay what a store does: upsert by window, partials never over finals, retractions delete.
    stored: dict[Key, WindowResult] = {}
    for result in out:
        key = (result.metric, result.dims, result.window_start)
        held = stored.get(key)
        if held is not None and held.is_final and not result.is_final:
            continue
        if result.retracted:
            stored.pop(key, None)
        else:
            stored[key] = result
    assert all(r.is_final for r in stored.values())
    got = {k: (r.count, r.value, r.window_end) for k, r in stored.items()}
    assert got == reference(events)
