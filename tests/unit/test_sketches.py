"""Sketched aggregations: accuracy within the sketches' stated bounds, merges, recovery."""

from __future__ import annotations

import pickle
import random

import orjson
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


def test_kll_rank_error_within_bound() -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(3, 1) for _ in range(100_000)]
    spec = SketchSpec("kll", 200, quantiles=(0.5, 0.9, 0.99))
    sketch, other = Sketch(spec), Sketch(spec)
    for i, v in enumerate(values):
        (sketch if i % 2 else other).update(v)
    sketch.merge(other)
    ordered = sorted(values)
    for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
        rank = sum(1 for v in ordered if v <= sketch.detail()[name]) / len(ordered)
        assert abs(rank - q) < 0.0165 * 1.5, (name, rank)


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
