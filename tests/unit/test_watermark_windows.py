"""Watermark bookkeeping, the ingest stage and shard windows, without Bytewax."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.spec import load_spec
from operators.extract import compile_plans
from operators.ingest import PartitionIngest, bucket_of
from operators.watermark import IDLE, NEVER, Watermark
from operators.windows import BucketWindows, window_start

MIN = 60_000
T0 = 1_767_225_600_000
METRICS = {"views": (MIN, "count"), "spend": (MIN, "sum")}


def test_watermark_trails_newest_event_and_never_goes_back() -> None:
    wm = Watermark(lateness_ms=5000, idle_ms=2000)
    assert wm.value == NEVER
    assert wm.observe(T0 + 10_000) == T0 + 5000
    assert wm.observe(T0) == T0 + 5000  # older event: no step back
    assert wm.observe(T0 + 20_000) == T0 + 15_000


def test_wall_clock_advances_only_after_idleness() -> None:
    wm = Watermark(lateness_ms=5000, idle_ms=2000)
    wm.observe(T0)
    wm.arrived(1000)
    assert not wm.idle_advance(9000)  # quiet, but a backlog is left to read
    wm.caught_up = True
    assert not wm.idle_advance(2500)  # caught up, but only 1.5 s quiet
    assert wm.value == T0 - 5000
    assert wm.idle_advance(4000)
    assert wm.value == T0 - 5000 + 3000
    assert wm.next_idle_check() == 3000


def test_caught_up_empty_partition_holds_nothing_back() -> None:
    wm = Watermark(lateness_ms=5000, idle_ms=2000)
    assert wm.reported == NEVER
    wm.caught_up = True
    assert wm.reported == IDLE
    wm.observe(T0)
    assert wm.reported == T0 - 5000


def test_bucket_is_stable_and_in_range() -> None:
    dims = (("country", "US"),)
    assert bucket_of("t", "views", dims, 16) == bucket_of("t", "views", dims, 16)
    assert {bucket_of("t", "views", (("c", str(i)),), 16) for i in range(500)} == set(range(16))


def test_window_start_is_epoch_aligned() -> None:
    assert window_start(T0 + 59_999, MIN) == T0
    assert window_start(T0 + 60_000, MIN) == T0 + MIN


def test_windows_close_when_every_partition_has_passed() -> None:
    bw = BucketWindows(METRICS, ["p0", "p1"], correction_ms=0)
    agg = [2.0, 2.0, 1.0, 1.0]
    assert bw.apply("p0", T0 + 2 * MIN, [("t", "views", (), T0, list(agg))], now=1) == []
    assert bw.partials(now=2)[0].revision == 1
    assert bw.partials(now=3) == []  # nothing changed
    finals = bw.apply("p1", T0 + MIN, [("t", "views", (), T0, list(agg))], now=4)
    assert [(f.count, f.is_final, f.revision) for f in finals] == [(4, True, 2)]
    assert bw.windows == {}


def test_partial_after_close_is_corrected_within_horizon_else_counted() -> None:
    bw = BucketWindows(METRICS, ["p0"], correction_ms=MIN)
    bw.apply("p0", T0, [("t", "spend", (), T0, [1.0, 5.0, 5.0, 5.0])], now=1)
    (final,) = bw.apply("p0", T0 + MIN, [], now=2)
    assert final.sum == 5.0 and final.revision == 1
    (fixed,) = bw.apply("p0", T0 + MIN, [("t", "spend", (), T0, [1.0, 2.0, 2.0, 2.0])], now=3)
    assert (fixed.sum, fixed.count, fixed.revision, fixed.is_final) == (7.0, 2, 2, True)
    bw.apply("p0", T0 + 3 * MIN, [("t", "views", (), T0 + 3 * MIN, [1.0, 1.0, 1.0, 1.0])], 4)
    assert bw.apply("p0", T0 + 3 * MIN, [("t", "spend", (), T0, [1.0, 1.0, 1.0, 1.0])], 5) == []
    assert bw.dropped_after_close == 1 and bw.corrections == 1


def test_bucket_snapshot_round_trip_continues_identically() -> None:
    bw = BucketWindows(METRICS, ["p0"], correction_ms=MIN)
    bw.apply("p0", T0, [("t", "views", (), T0, [3.0, 3.0, 1.0, 1.0])], now=1)
    bw.partials(now=2)
    twin = BucketWindows(METRICS, ["p0"], correction_ms=MIN).restore(bw.snapshot())
    a = bw.apply("p0", T0 + MIN, [], now=3)
    b = twin.apply("p0", T0 + MIN, [], now=3)
    assert a == b and a[0].revision == 2


@given(
    st.lists(st.tuples(st.integers(0, 5 * MIN), st.integers(0, 100)), max_size=200),
    st.integers(1, 50),
)
def test_ingest_in_time_counts_are_exact(events: list[tuple[int, int]], poll: int) -> None:
    """Whatever the poll size, ok + late + dead = seen and ok events all land in windows."""
    plans = compile_plans(load_spec("config/demo.yaml"))
    ingest = PartitionIngest(
        plans,
        source="k:p0",
        default_tenant="t",
        buckets=4,
        watermark=Watermark(lateness_ms=10_000, idle_ms=1000),
    )
    msgs = [
        (
            orjson.dumps(
                {
                    "event_id": str(i),
                    "type": "page_view",
                    "ts": T0 + off,
                    "props": {"page": str(p % 3)},
                }
            ),
            None,
            i,
        )
        for i, (off, p) in enumerate(events)
    ]
    seen = ok = late = 0
    counted = 0.0
    for start in range(0, len(msgs), poll):
        result = ingest.process(msgs[start : start + poll], now=0)
        seen += result.seen
        ok += result.ok
        late += result.late
        assert result.seen == result.ok + len(result.dead)
        counted += sum(
            p[4][0] for items in result.partials.values() for p in items if p[1] == "page_views_10s"
        )
    assert seen == len(events) and ok + late == seen and counted == ok


@pytest.mark.parametrize("tenant_header", [None, "acme"])
def test_tenant_comes_from_header_or_default(tenant_header: str | None) -> None:
    plans = compile_plans(load_spec("config/demo.yaml"))
    ingest = PartitionIngest(
        plans,
        source="k:p0",
        default_tenant="demo",
        buckets=1,
        watermark=Watermark(lateness_ms=0, idle_ms=1),
    )
    raw = orjson.dumps(
        {"event_id": "1", "type": "signup", "ts": T0, "props": {}, "tenant": "spoofed"}
    )
    result = ingest.process([(raw, tenant_header, 0)], now=0)
    tenants = {p[0] for items in result.partials.values() for p in items}
    assert tenants == {tenant_header or "demo"}
