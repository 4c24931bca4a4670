"""Cardinality caps (``max_values``) through the whole flow against a brute-force reference.

The reference ranks each window's series by event count (ties by dimension
values), keeps the top N and sums the rest into the ``other`` series. The
flow must store exactly that — partial series that were folded later are
retracted — whatever the poll size, shard count, worker layout or
interleaving of the partitions.
"""

from __future__ import annotations

import random
from collections import defaultdict

import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from prometheus_client import CollectorRegistry

from riffle.config.errors import SpecError
from riffle.config.settings import Settings
from riffle.config.spec import parse_spec
from riffle.dataflows.metrics import FlowOutputs, build_flow
from riffle.dataflows.telemetry import FlowTelemetry
from riffle.operators.records import DeadLetter, Dims, WindowResult
from riffle.operators.sketches import Sketch, sketch_for
from riffle.sources.kafka import PartitionPoll
from riffle.stack import free_port

T0 = 1_767_225_600_000
MIN = 60_000
N = 3
SPEC = parse_spec(f"""
event_types: {{view: {{}}}}
dimensions: {{page: {{path: props.page}}, country: {{path: props.country}}}}
metrics:
  - {{name: views, events: [view], aggregation: count, dimensions: [page, country],
      window: 1m, max_values: {N}}}
  - {{name: spend, events: [view], aggregation: sum, value: props.n, dimensions: [page],
      window: {{kind: hopping, size: 2m, step: 1m}}, max_values: 2}}
  - {{name: users, events: [view], aggregation: distinct, value: props.user,
      dimensions: [country], window: 1m, max_values: 1}}
  - {{name: uncapped, events: [view], aggregation: count, dimensions: [page], window: 1m}}
""")
PAGES = [f"p{i}" for i in range(12)]
COUNTRIES = ["de", "fr", "us", "other"]  # a real "other" value folds in too
Key = tuple[str, Dims, int]


def events(seed: int, n: int = 1500) -> list[tuple[int, int, dict[str, object]]]:
    """``(partition, ts, props)``: Zipf-ish pages, ~0.2 s apart, disorder within lateness."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        props = {
            "page": PAGES[min(int(rng.paretovariate(1.2)) - 1, len(PAGES) - 1)],
            "country": rng.choice(COUNTRIES),
            "n": rng.randint(1, 9),
            "user": f"u{rng.randint(1, 40)}",
        }
        out.append((rng.randrange(2), T0 + i * 200 + rng.randint(-3000, 3000), props))
    return out


def reference(evs: list[tuple[int, int, dict[str, object]]]) -> dict[Key, tuple[int, float]]:
    """``(metric, dims, start) -> (count, value)`` with the cap rule, by enumeration."""
    raw: dict[tuple[str, int], dict[Dims, list[tuple[float, str]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for _, ts, p in evs:
        minute = ts - ts % MIN
        page, country = str(p["page"]), str(p["country"])
        raw["views", minute][(("country", country), ("page", page))].append((1.0, ""))
        for start in (minute - MIN, minute):
            raw["spend", start][(("page", page),)].append((float(p["n"]), ""))  # type: ignore[arg-type]
        raw["users", minute][(("country", country),)].append((0.0, str(p["user"])))
        raw["uncapped", minute][(("page", page),)].append((1.0, ""))
    caps = {"views": N, "spend": 2, "users": 1}
    out: dict[Key, tuple[int, float]] = {}
    for (metric, start), series in raw.items():
        other = tuple((d, "other") for d, _ in next(iter(series)))
        ranked = sorted((d for d in series if d != other), key=lambda d: (-len(series[d]), d))
        cap = caps.get(metric, len(ranked))
        kept, folded = ranked[:cap], ranked[cap:] + ([other] if other in series else [])
        groups = {d: series[d] for d in kept}
        if folded:
            groups[other] = [item for d in folded for item in series[d]]
        for dims, items in groups.items():
            if metric == "users":
                value = float(len({user for _, user in items}))
            elif metric == "spend":
                value = sum(v for v, _ in items)
            else:
                value = float(len(items))
            out[(metric, dims, start)] = (len(items), value)
    return out


def run(
    evs: list[tuple[int, int, dict[str, object]]], poll: int, buckets: int, mode: str
) -> tuple[dict[Key, WindowResult], CollectorRegistry]:
    per_part: dict[int, list[tuple[bytes | None, str | None, int]]] = defaultdict(list)
    for i, (part, ts, props) in enumerate(evs):
        body = {"event_id": str(i), "type": "view", "ts": ts, "props": props}
        per_part[part].append((orjson.dumps(body), None, len(per_part[part])))
    polls = []
    for start in range(0, max(len(m) for m in per_part.values()), poll):
        for part in sorted(per_part, reverse=poll % 2 == 0):  # vary the interleaving
            chunk = per_part[part][start : start + poll]
            if chunk:
                polls.append((f"p{part}", PartitionPoll(f"p{part}", chunk, at_end=False)))
    out: list[WindowResult] = []
    dead: list[DeadLetter] = []
    registry = CollectorRegistry()
    flow = build_flow(
        SPEC,
        Settings(lateness_seconds=10, buckets=buckets, partial_interval_seconds=0.01),
        source=TestingSource(polls),
        partitions=["p0", "p1"],
        outputs=FlowOutputs(TestingSink(out), None, TestingSink(dead)),
        telemetry=FlowTelemetry(registry),
    )
    if mode == "single":
        run_main(flow)
    elif mode == "cluster_of_one":
        cluster_main(flow, [f"127.0.0.1:{free_port()}"], 0)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert not dead
    # What a store keeps: upserts by window, partials never over finals, retractions delete.
    stored: dict[Key, WindowResult] = {}
    for result in out:
        key = (result.metric, result.dims, result.window_start)
        held = stored.get(key)
        if held is not None and held.is_final and not result.is_final:
            continue
        if result.retracted:
            if held is None or not held.is_final:
                stored.pop(key, None)
        else:
            stored[key] = result
    return stored, registry


@pytest.mark.parametrize(
    ("poll", "buckets", "mode"),
    [(7, 1, "single"), (64, 4, "single"), (500, 16, "single"), (64, 4, "cluster_of_one"),
     (33, 4, "two_workers")],
)  # fmt: skip
def test_caps_keep_the_top_series_and_fold_the_rest(poll: int, buckets: int, mode: str) -> None:
    evs = events(seed=3)
    stored, registry = run(evs, poll, buckets, mode)
    assert all(r.is_final for r in stored.values()), "no folded partial is left behind"
    # HLL estimates of a few dozen users are exact to rounding.
    got = {k: (r.count, None if r.value is None else round(r.value, 3)) for k, r in stored.items()}
    assert got == reference(evs)
    per_window: dict[tuple[str, int], int] = defaultdict(int)
    for metric, _dims, start in stored:
        per_window[metric, start] += 1
    assert max(n for (m, _), n in per_window.items() if m == "views") == N + 1
    # Every folded series is counted once per window (the real "other" series included).
    folded = sum(
        max(0, len({d for (m, d, s) in _raw_series(evs) if m == "views" and s == start}) - N)
        for start in {s for (m, _, s) in stored if m == "views"}
    )
    assert registry.get_sample_value(
        "riffle_dataflow_capped_series_total", {"metric": "views"}
    ) == (folded)
    sketch = sketch_for(SPEC.metrics[2])
    assert sketch is not None
    for (metric, _dims, _start), result in stored.items():
        if metric == "users":  # the fold series' sketch is the union of the folded ones
            assert result.sketch is not None
            assert Sketch(sketch, result.sketch).value() == result.value


def _raw_series(evs: list[tuple[int, int, dict[str, object]]]) -> set[Key]:
    return {
        ("views", (("country", str(p["country"])), ("page", str(p["page"]))), ts - ts % MIN)
        for _, ts, p in evs
    }


def test_caps_refuse_sessions_corrections_and_ratio_parts() -> None:
    base = """
event_types: {view: {}}
dimensions: {page: {path: props.page}}
metrics:
  - {name: a, events: [view], aggregation: count, dimensions: [page], max_values: 5, %s}
  - {name: b, events: [view], aggregation: count, dimensions: [page]}
ratios: [{name: r, numerator: a, denominator: b}]
"""
    with pytest.raises(SpecError) as caught:
        parse_spec(base % "window: {kind: session, gap: 1m}")
    assert "session windows cannot be capped" in str(caught.value)
    assert "a ratio needs every series" in str(caught.value)
    with pytest.raises(SpecError, match="cannot take corrections"):
        parse_spec(base % "late: correct")
