"""The whole metrics flow in-process (Bytewax testing runtime) against the SQL reference."""

from __future__ import annotations

from collections import Counter

import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from prometheus_client import CollectorRegistry

from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec, load_spec
from riffle.dataflows.metrics import FlowOutputs, build_flow
from riffle.dataflows.telemetry import FlowTelemetry
from riffle.operators.records import DeadLetter, WindowResult
from riffle.sources.kafka import PartitionPoll
from riffle.stack import free_port
from tests.scenario import (
    Sent,
    comparable,
    expected_windows,
    late_valid_count,
    scenario,
    with_copies,
)

SPEC = load_spec("config/demo.yaml")


def polls(sent: list[Sent], size: int) -> list[tuple[str, PartitionPoll]]:
    """Arrival order kept within each partition; partitions interleaved poll by poll."""
    per_part: dict[int, list[tuple[bytes | None, str | None, int]]] = {}
    for item in sent:
        msgs = per_part.setdefault(item.partition, [])
        msgs.append((item.raw, None, len(msgs)))
    out = []
    for start in range(0, max(len(m) for m in per_part.values()), size):
        for part, msgs in sorted(per_part.items()):
            chunk = msgs[start : start + size]
            if chunk:
                key = f"events/{part}"
                out.append((key, PartitionPoll(key, chunk, at_end=False)))
    return out


def run(
    sent: list[Sent],
    *,
    poll_size: int = 64,
    buckets: int = 4,
    partitions: int = 2,
    mode: str = "single",
    spec: PipelineSpec = SPEC,
) -> tuple[list[WindowResult], list[DeadLetter], CollectorRegistry]:
    windows: list[WindowResult] = []
    dead: list[DeadLetter] = []
    registry = CollectorRegistry()
    settings = Settings(lateness_seconds=10, buckets=buckets, partial_interval_seconds=0.05)
    flow = build_flow(
        spec,
        settings,
        source=TestingSource(polls(sent, poll_size)),
        partitions=[f"events/{p}" for p in range(partitions)],
        outputs=FlowOutputs(TestingSink(windows), None, TestingSink(dead)),
        telemetry=FlowTelemetry(registry),
    )
    if mode == "single":
        run_main(flow)
    elif mode == "cluster_of_one":
        cluster_main(flow, [f"127.0.0.1:{free_port()}"], 0)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=2)
    return windows, dead, registry


@pytest.mark.parametrize(
    ("poll_size", "buckets", "mode"),
    [
        (1, 1, "single"),
        (64, 4, "single"),
        (1000, 16, "single"),
        (64, 4, "cluster_of_one"),
        (64, 4, "two_workers"),
    ],
)
def test_finals_match_sql_reference(poll_size: int, buckets: int, mode: str) -> None:
    """Same finals whatever the poll size, shard count, or worker layout."""
    sent = scenario()
    windows, _, _ = run(sent, poll_size=poll_size, buckets=buckets, mode=mode)
    finals = [w for w in windows if w.is_final]
    per_window = Counter((w.metric, w.dims, w.window_start) for w in finals)
    assert set(per_window.values()) == {1}, "every window has exactly one final"
    expected = expected_windows(sent, SPEC, lateness_ms=10_000)
    covered = {m.name for m in comparable(SPEC)}
    got = {(w.metric, w.dims, w.window_start): w for w in finals if w.metric in covered}
    assert got.keys() == expected.keys()
    for key, (count, total, low, high) in expected.items():
        result = got[key]
        assert result.count == count, key
        assert result.sum == pytest.approx(total), key
        assert result.min == pytest.approx(low) and result.max == pytest.approx(high), key
    # Partials never outrank the final of their window.
    for w in windows:
        if not w.is_final and w.metric in covered:
            assert w.revision < got[(w.metric, w.dims, w.window_start)].revision


def test_every_event_accounted_for() -> None:
    sent = scenario()
    _, dead, registry = run(sent)
    sample = registry.get_sample_value
    seen = sample("riffle_dataflow_events_in_total")
    ok = sample("riffle_dataflow_events_total", {"outcome": "ok"})
    late = sample("riffle_dataflow_events_total", {"outcome": "late"})
    rejected = sample("riffle_dataflow_events_total", {"outcome": "dead"})
    assert seen == len(sent)
    assert seen == ok + late + rejected
    assert sample("riffle_dataflow_events_total", {"outcome": "duplicate"}) == 0
    assert late and late == sum(1 for d in dead if d.failure_type == "late")
    # Every invalid event is a dead letter (late, if it is also behind the watermark).
    invalid = Counter(s.raw for s in sent if not s.valid)
    late_valid = [d.raw for d in dead if d.failure_type == "late" and d.raw not in invalid]
    assert Counter(d.raw for d in dead) == invalid + Counter(late_valid)
    assert len(late_valid) == late_valid_count(sent, 10_000)
    assert len(dead) == rejected + late
    assert all(d.raw for d in dead)
    assert {d.failure_type for d in dead} == {
        "parse",
        "envelope",
        "unknown_type",
        "schema",
        "late",
    }
    late_letters = [d for d in dead if d.failure_type == "late"]
    assert all(d.lateness_ms and d.lateness_ms > 0 for d in late_letters)


def _finals(windows: list[WindowResult]) -> dict[tuple[object, ...], tuple[object, ...]]:
    return {
        (w.metric, w.dims, w.window_start): (w.count, round(w.sum, 6), w.min, w.max, w.detail)
        for w in windows
        if w.is_final
    }


def _outcomes(registry: CollectorRegistry) -> dict[str, float | None]:
    return {
        o: registry.get_sample_value("riffle_dataflow_events_total", {"outcome": o})
        for o in ("ok", "dead", "late", "duplicate")
    }


@pytest.mark.parametrize("mode", ["single", "two_workers"])
def test_duplicates_never_reach_a_window(mode: str) -> None:
    """10 % of the events twice, then everything once more: the finals of the clean stream."""
    sent = scenario(users=True)
    clean, clean_dead, clean_registry = run(sent, mode=mode)
    doubled = with_copies(sent, 0.1, seed=1) + sent
    windows, dead, registry = run(doubled, mode=mode)
    assert _finals(windows) == _finals(clean)
    got, want = _outcomes(registry), _outcomes(clean_registry)
    assert (got["ok"], got["late"]) == (want["ok"], want["late"])
    # Copies of malformed events are dead letters again; every other copy is a duplicate.
    assert got["duplicate"] == len(doubled) - len(sent) - (len(dead) - len(clean_dead))
    assert registry.get_sample_value("riffle_dataflow_events_in_total") == sum(
        v or 0 for v in got.values()
    )
    assert got["duplicate"] and got["duplicate"] >= sum(
        s.valid for s in doubled[len(sent) :] if s.valid
    )


def test_dedup_off_counts_copies_again() -> None:
    """``dedup: {enabled: false}``: the copies reach the windows (the switch is honoured)."""
    sent = scenario(n=1500)
    off = SPEC.model_copy(update={"dedup": SPEC.dedup.model_copy(update={"enabled": False})})
    clean, _, _ = run(sent, spec=off)
    windows, _, registry = run(with_copies(sent, 0.1, seed=2), spec=off)
    assert _finals(windows) != _finals(clean)
    assert registry.get_sample_value("riffle_dataflow_events_total", {"outcome": "duplicate"}) == 0
