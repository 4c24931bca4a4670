"""Sketched aggregations: accuracy within the sketches' stated bounds, merges, recovery."""

from __future__ import annotations

import pickle
import random

import datasketches as ds
import orjson
import pytest
from bytewax.testing import TestingSink, TestingSource, run_main
from prometheus_client import CollectorRegistry

from riffle.config.settings import Settings
from riffle.config.spec import parse_spec
from riffle.dataflows.metrics import FlowOutputs, build_flow
from riffle.dataflows.telemetry import FlowTelemetry
from riffle.operators.records import DeadLetter, WindowResult
from riffle.operators.sketches import Sketch, SketchSpec
from riffle.operators.windows import BucketWindows, WindowRule
from riffle.sources.kafka import PartitionPoll

T0 = 1_767_225_600_000


def test_hll_within_its_error_on_a_million_distinct_values_merged_from_parts() -> None:
    spec = SketchSpec("hll", 12)
    parts = [Sketch(spec) for _ in range(8)]
    for i in range(1_000_000):
        parts[i % 8].update(f"user-{i}")
    total = Sketch(spec)
    for part in parts:
        total.merge(part.to_bytes())  # across processes only bytes travel
    estimate = total.value()
    assert estimate is not None
    assert abs(estimate - 1_000_000) / 1_000_000 < 3 * 1.04 / 64  # 3 sigma at lgK 12
    assert total.detail()["lower"] <= 1_000_000 <= total.detail()["upper"] * 1.01


def test_quantiles_within_their_relative_accuracy() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(3, 1) for _ in range(100_000)]
    values += [-v for v in values[:5000]] + [0.0] * 500
    spec = SketchSpec("quantiles", 100, quantiles=(0.01, 0.5, 0.9, 0.99))
    sketch, other = Sketch(spec), Sketch(spec)
    for i, v in enumerate(values):
        (sketch if i % 2 else other).update(v)
    sketch.merge(other)
    ordered = sorted(values)
    for name, q in (("p1", 0.01), ("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        exact = ordered[int(q * (len(ordered) - 1))]
        assert abs(sketch.detail()[name] - exact) <= 0.01 * abs(exact), (name, exact)
    single = Sketch(spec)
    single.update(42.5)
    assert single.detail() == {"p1": 42.5, "p50": 42.5, "p90": 42.5, "p99": 42.5}
    assert Sketch(spec).value() is None and Sketch(spec).detail() == {}


SPECS = (
    SketchSpec("hll", 12),
    SketchSpec("quantiles", 100, quantiles=(0.5, 0.9, 0.99)),
    SketchSpec("items", 10, top=5),
)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.kind)
@pytest.mark.parametrize("n", [3, 300, 5000, 40_000])
def test_same_values_same_numbers_whatever_the_batching_merging_and_restoring(
    spec: SketchSpec, n: int
) -> None:
    """Replay, recovery and clusters split a window's values differently: the numbers stay."""
    rng = random.Random(n)
    values: list[object]
    if spec.kind == "hll":
        values = [f"u{rng.randrange(n)}" for _ in range(n)]
    elif spec.kind == "quantiles":
        values = [rng.lognormvariate(3, 1) * rng.choice([1, 1, -1, 0]) for _ in range(n)]
    else:
        values = [f"p{rng.randrange(300)}" for _ in range(n)]
    outcomes = set()
    for path in range(5):
        rng.shuffle(values)
        parts: list[Sketch | bytes] = []
        start = 0
        while start < n:
            # Path 0 is one uninterrupted sketch; the others split the values at random.
            end = n if path == 0 else start + rng.randint(1, max(1, n // rng.choice([1, 4, 40])))
            part = Sketch(spec)
            for value in values[start:end]:
                part.update(value)
            if rng.random() < 0.5:
                part = pickle.loads(pickle.dumps(part))  # a snapshot and a restore
            parts.append(part.to_bytes() if rng.random() < 0.5 else part)
            start = end
        rng.shuffle(parts)
        total = Sketch(spec)
        for part in parts:
            total.merge(part)
        outcomes.add((total.value(), repr(total.detail())))
    assert len(outcomes) == 1, outcomes


def test_a_kll_sketch_stored_by_an_earlier_release_still_reads() -> None:
    kll = ds.kll_doubles_sketch(200)
    for i in range(1, 10_001):
        kll.update(float(i))
    spec = SketchSpec("quantiles", 100, quantiles=(0.5, 0.99))
    sketch = Sketch(spec, bytes(kll.serialize()))
    assert sketch.detail()["p50"] == pytest.approx(5000, rel=0.03)
    assert sketch.detail()["p99"] == pytest.approx(9900, rel=0.03)
    sketch.merge(Sketch(spec).to_bytes())
    assert sketch.value() == sketch.detail()["p50"]


def test_frequent_items_find_the_heavy_hitters() -> None:
    spec = SketchSpec("items", 6, top=3)
    sketch = Sketch(spec)
    rng = random.Random(1)
    for _ in range(20_000):
        sketch.update(
            rng.choices(
                ["a", "b", "c"] + [f"x{i}" for i in range(500)], weights=[30, 20, 10] + [0.05] * 500
            )[0]
        )
    assert [item for item, _ in sketch.detail()["top"]] == ["a", "b", "c"]


def test_sketched_windows_survive_a_snapshot_round_trip() -> None:
    rule = WindowRule("distinct", sketch=SketchSpec("hll", 12))
    bw = BucketWindows({"users": rule}, ["p0"])
    part = Sketch(rule.sketch)  # type: ignore[arg-type]
    for i in range(500):
        part.update(f"u{i}")
    agg = [500.0, 0.0, float("inf"), float("-inf"), part.to_bytes()]
    bw.apply("p0", T0, [("t", "users", (), T0, T0 + 60_000, agg)], now=1)
    twin = BucketWindows({"users": rule}, ["p0"]).restore(pickle.loads(pickle.dumps(bw.snapshot())))
    (a,) = bw.apply("p0", T0 + 60_000, [], now=2)
    (b,) = twin.apply("p0", T0 + 60_000, [], now=2)
    assert a.value == b.value and a.sketch == b.sketch and 480 < (a.value or 0) < 520


SPEC = parse_spec("""
event_types: {view: {}}
dimensions: {page: {path: props.page}}
metrics:
  - {name: visitors, events: [view], aggregation: distinct, value: context.user_id,
     window: 1m}
  - {name: latency, events: [view], aggregation: quantiles, value: props.ms,
     quantiles: [0.5, 0.9], dimensions: [page], window: 1m}
  - {name: top_pages, events: [view], aggregation: top_k, value: props.page, top: 2,
     window: 1m}
""")


def test_sketched_metrics_through_the_flow() -> None:
    rng = random.Random(7)
    events = []
    for i in range(6000):
        page = rng.choices(["home", "cart", "faq"], weights=[6, 3, 1])[0]
        events.append(
            {
                "event_id": str(i),
                "type": "view",
                "ts": T0 + i * 10,
                "props": {"page": page, "ms": rng.randint(1, 1000)},
                "context": {"user_id": f"u{rng.randint(1, 2000)}"} if i % 10 else {},
            }
        )
    polls = [
        (
            f"p{part}",
            PartitionPoll(
                f"p{part}",
                [(orjson.dumps(e), None, n) for n, e in enumerate(events[part::2][s : s + 250])],
                at_end=False,
            ),
        )
        for s in range(0, 3000, 250)
        for part in (0, 1)
    ]
    out: list[WindowResult] = []
    dead: list[DeadLetter] = []
    flow = build_flow(
        SPEC,
        Settings(lateness_seconds=10, buckets=4),
        source=TestingSource(polls),
        partitions=["p0", "p1"],
        outputs=FlowOutputs(TestingSink(out), None, TestingSink(dead)),
        telemetry=FlowTelemetry(CollectorRegistry()),
    )
    run_main(flow)
    assert not dead
    finals = {(r.metric, r.dims, r.window_start): r for r in out if r.is_final}
    for key, result in finals.items():
        window = [e for e in events if T0 + (key[2] - T0) <= e["ts"] < key[2] + 60_000]
        if key[0] == "visitors":
            exact = len({e["context"]["user_id"] for e in window if e["context"]})
            assert abs((result.value or 0) - exact) / exact < 0.05
            assert result.count == sum(1 for e in window if e["context"])
        elif key[0] == "latency":
            page = dict(key[1])["page"]
            ms = sorted(e["props"]["ms"] for e in window if e["props"]["page"] == page)
            assert result.detail is not None and result.count == len(ms)
            for name, q in (("p50", 0.5), ("p90", 0.9)):
                rank = sum(1 for v in ms if v <= result.detail[name]) / len(ms)
                assert abs(rank - q) < 0.05, (key, name, rank)
            assert (result.min, result.max) == (ms[0], ms[-1])
        else:
            assert result.detail is not None
            assert [row[0] for row in result.detail["top"]] == ["home", "cart"]
        assert result.sketch is not None
        assert WindowResult.from_json(result.to_json()) == result
