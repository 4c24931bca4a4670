"""Partition clocks, the ingest stage and shard windows, without Bytewax."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riffle.config.spec import load_spec, parse_spec
from riffle.operators.extract import compile_plans
from riffle.operators.ingest import PartitionIngest, bucket_of
from riffle.operators.watermark import IDLE, NEVER, PartitionClock
from riffle.operators.windows import BucketWindows, WindowRule

MIN = 60_000
T0 = 1_767_225_600_000
RULES = {
    "views": WindowRule("count"),
    "spend": WindowRule("sum", horizon_ms=MIN),
    "visits": WindowRule("count", session=True),
    "slow": WindowRule("count", lateness_ms=MIN),
}


def test_clock_follows_newest_event_and_never_goes_back() -> None:
    clock = PartitionClock(idle_ms=2000)
    assert clock.value == NEVER
    clock.observe(T0 + 10_000)
    clock.observe(T0)
    assert clock.value == T0 + 10_000


def test_wall_clock_advances_only_when_caught_up_and_idle() -> None:
    clock = PartitionClock(idle_ms=2000)
    clock.observe(T0)
    clock.arrived(1000)
    assert not clock.idle_advance(9000)  # quiet, but a backlog is left to read
    clock.caught_up = True
    assert not clock.idle_advance(2500)  # caught up, but only 1.5 s quiet
    assert clock.idle_advance(4000)
    assert clock.value == T0 + 3000


def test_caught_up_empty_partition_holds_nothing_back() -> None:
    clock = PartitionClock(idle_ms=2000)
    assert clock.reported == NEVER
    clock.caught_up = True
    assert clock.reported == IDLE
    clock.observe(T0)
    assert clock.reported == T0


def test_bucket_is_stable_and_in_range() -> None:
    dims = (("country", "US"),)
    assert bucket_of("t", "views", dims, 16) == bucket_of("t", "views", dims, 16)
    assert {bucket_of("t", "views", (("c", str(i)),), 16) for i in range(500)} == set(range(16))


def test_windows_close_when_every_partition_has_passed() -> None:
    bw = BucketWindows(RULES, ["p0", "p1"])
    agg = [2.0, 2.0, 1.0, 1.0]
    assert bw.apply("p0", T0 + 2 * MIN, [("t", "views", (), T0, T0 + MIN, list(agg))], 1) == []
    assert bw.partials(now=2)[0].revision == 1
    assert bw.partials(now=3) == []  # nothing changed
    finals = bw.apply("p1", T0 + MIN, [("t", "views", (), T0, T0 + MIN, list(agg))], now=4)
    assert [(f.count, f.is_final, f.revision) for f in finals] == [(4, True, 2)]
    assert bw.windows == {}


def test_metric_lateness_delays_the_final() -> None:
    bw = BucketWindows(RULES, ["p0"])
    assert bw.apply("p0", T0 + MIN, [("t", "slow", (), T0, T0 + MIN, [1.0] * 4)], 1) == []
    (final,) = bw.apply("p0", T0 + 2 * MIN, [], 2)
    assert final.metric == "slow" and final.is_final


def test_correction_within_horizon_else_counted() -> None:
    bw = BucketWindows(RULES, ["p0"])
    bw.apply("p0", T0, [("t", "spend", (), T0, T0 + MIN, [1.0, 5.0, 5.0, 5.0])], now=1)
    (final,) = bw.apply("p0", T0 + MIN, [], now=2)
    assert final.sum == 5.0 and final.revision == 1
    late = [("t", "spend", (), T0, T0 + MIN, [1.0, 2.0, 2.0, 2.0])]
    (fixed,) = bw.apply("p0", T0 + MIN, late, now=3)
    assert (fixed.sum, fixed.count, fixed.revision, fixed.is_final) == (7.0, 2, 2, True)
    bw.apply("p0", T0 + 3 * MIN, [], 4)  # past end + horizon: forgotten
    assert bw.apply("p0", T0 + 3 * MIN, late, 5) == []
    assert bw.dropped_after_close == 1 and bw.corrections == 1


def test_sessions_merge_and_retract_the_stale_start() -> None:
    bw = BucketWindows(RULES, ["p0"])
    gap = 10_000
    bw.apply("p0", T0, [("t", "visits", (), T0 + 20_000, T0 + 25_000 + gap, [2.0] * 4)], 1)
    (first,) = bw.partials(2)
    assert first.window_start == T0 + 20_000
    # An earlier piece that reaches into it: one session from T0 + 12 s.
    earlier = [("t", "visits", (), T0 + 12_000, T0 + 14_000 + gap, [1.0] * 4)]
    (retraction,) = bw.apply("p0", T0, earlier, 3)
    (merged,) = bw.partials(4)
    assert retraction.retracted and retraction.window_start == T0 + 20_000
    assert (merged.window_start, merged.window_end, merged.count) == (T0 + 12_000, T0 + 35_000, 3)
    # A separate session of the same series stays apart.
    bw.apply("p0", T0, [("t", "visits", (), T0 + 60_000, T0 + 60_000 + gap, [1.0] * 4)], 5)
    assert len(bw.partials(6)) == 1
    finals = bw.apply("p0", T0 + 40_000, [], 7)
    assert [(f.window_start, f.count, f.is_final) for f in finals] == [(T0 + 12_000, 3, True)]


def test_bucket_snapshot_round_trip_continues_identically() -> None:
    bw = BucketWindows(RULES, ["p0"])
    bw.apply("p0", T0, [("t", "views", (), T0, T0 + MIN, [3.0, 3.0, 1.0, 1.0])], now=1)
    bw.partials(now=2)
    twin = BucketWindows(RULES, ["p0"]).restore(bw.snapshot())
    a = bw.apply("p0", T0 + MIN, [], now=3)
    b = twin.apply("p0", T0 + MIN, [], now=3)
    assert a == b and a[0].revision == 2


def _ingest(spec_text: str | None = None, lateness_ms: int = 10_000) -> PartitionIngest:
    spec = parse_spec(spec_text) if spec_text else load_spec("config/demo.yaml")
    return PartitionIngest(
        compile_plans(spec, default_lateness_ms=lateness_ms),
        source="k:p0",
        default_tenant="t",
        buckets=4,
        clock=PartitionClock(idle_ms=1000),
    )


def _event(i: int, ts: int, kind: str = "page_view", **props: object) -> tuple[bytes, None, int]:
    body = {"event_id": str(i), "type": kind, "ts": ts, "props": props}
    return (orjson.dumps(body), None, i)


@settings(deadline=None)  # each example parses the demo spec: slow on a loaded machine
@given(
    st.lists(st.tuples(st.integers(0, 5 * MIN), st.integers(0, 100)), max_size=200),
    st.integers(1, 50),
)
def test_ingest_in_time_counts_are_exact(events: list[tuple[int, int]], poll: int) -> None:
    """Whatever the poll size, ok + dead = seen and ok events all land in windows."""
    ingest = _ingest()
    msgs = [_event(i, T0 + off, page=str(p % 3)) for i, (off, p) in enumerate(events)]
    seen = ok = late = 0
    counted = 0.0
    for start in range(0, len(msgs), poll):
        result = ingest.process(msgs[start : start + poll], now=0)
        seen += result.seen
        ok += result.ok
        late += result.late
        assert result.seen == result.ok + len(result.dead)
        counted += sum(
            p[5][0] for items in result.partials.values() for p in items if p[1] == "page_views_10s"
        )
    assert seen == len(events) and ok + late == seen and counted == ok


HOPPING = """
event_types: {click: {}}
metrics:
  - name: clicks_5m
    events: [click]
    aggregation: count
    window: {kind: hopping, size: 5m, step: 1m}
  - name: clicks_fixed
    events: [click]
    aggregation: count
    window: 1m
    late: correct
    late_horizon: 10m
  - name: clicks_strict
    events: [click]
    aggregation: count
    window: 1m
"""


def test_hopping_windows_take_each_event_size_over_step_times() -> None:
    result = _ingest(HOPPING).process([_event(0, T0 + 3 * MIN + 30_000, "click")], now=0)
    starts = sorted(
        p[3] for items in result.partials.values() for p in items if p[1] == "clicks_5m"
    )
    assert starts == [T0 + k * MIN for k in range(-1, 4)]


def test_late_events_are_corrected_or_dead_lettered_per_metric() -> None:
    ingest = _ingest(HOPPING)
    ingest.process([_event(0, T0 + 10 * MIN, "click")], now=0)
    result = ingest.process([_event(1, T0 + 5 * MIN, "click")], now=0)  # 5 min behind
    took = {p[1] for items in result.partials.values() for p in items}
    assert "clicks_fixed" in took and "clicks_strict" not in took
    assert result.corrected == {"clicks_fixed": 1}
    assert result.dropped == {"clicks_5m": 1, "clicks_strict": 1}
    (letter,) = result.dead
    assert letter.failure_type == "late" and "clicks_strict" in letter.reason
    assert letter.lateness_ms == 5 * MIN - 10_000
    assert result.late == 1 and result.ok == 0


@pytest.mark.parametrize("tenant_header", [None, "acme"])
def test_tenant_comes_from_header_or_default(tenant_header: str | None) -> None:
    ingest = _ingest()
    raw = orjson.dumps(
        {"event_id": "1", "type": "signup", "ts": T0, "props": {}, "tenant": "spoofed"}
    )
    result = ingest.process([(raw, tenant_header, 0)], now=0)
    tenants = {p[0] for items in result.partials.values() for p in items}
    assert tenants == {tenant_header or "t"}


def test_partitions_idle_from_the_start_do_not_close_future_windows() -> None:
    """A flow started on an empty topic: every partition reports IDLE before any event.

    Found by the broker-restart test: the shard's clock became IDLE, windows were
    "closed through" the far future and every later event's partial was dropped.
    """
    bw = BucketWindows(RULES, ["p0", "p1"])
    assert bw.apply("p0", IDLE, [], 1) == []
    assert bw.apply("p1", IDLE, [], 2) == []
    assert bw.closed_through == NEVER
    # p1 is still caught up and empty: p0's clock alone closes the window, with its event.
    (final,) = bw.apply("p0", T0 + 2 * MIN, [("t", "views", (), T0, T0 + MIN, [1.0] * 4)], 3)
    assert (final.count, final.is_final) == (1, True)
    assert bw.dropped_after_close == 0
