"""The de-duplicator alone: verdicts, tenants, the horizon, sealing, snapshots."""

from __future__ import annotations

import random

from riffle.config.spec import load_spec
from riffle.operators.dedup import GENERATIONS, Deduplicator

HOUR = 3_600_000
T0 = 1_767_225_600_000


def test_first_copy_counts_later_copies_do_not() -> None:
    dedup = Deduplicator(24 * HOUR)
    assert dedup.first("demo", "e1", T0)
    assert not dedup.first("demo", "e1", T0)
    assert dedup.first("other", "e1", T0), "ids are per tenant"
    assert dedup.first("demo", "e2", T0)
    assert len(dedup) == 3


def test_state_is_bounded_by_the_horizon_in_event_time() -> None:
    dedup = Deduplicator(HOUR)
    for i in range(1000):
        dedup.first("demo", f"e{i}", T0 + i)
    assert len(dedup) == 1000
    assert not dedup.first("demo", "e5", T0 + 5), "within the horizon"
    dedup.first("demo", "later", T0 + HOUR + HOUR // GENERATIONS + 1000)
    assert len(dedup) == 1, "every id of the first hour expired"
    # Behind the newest event by more than the horizon: no memory, passes as a first copy.
    assert dedup.first("demo", "e5", T0 + 5)
    assert dedup.first("demo", "e5", T0 + 5)


def test_sealed_generations_answer_like_fresh_ones() -> None:
    rng = random.Random(3)
    dedup = Deduplicator(24 * HOUR)
    ids = [(f"e{i}", T0 + i * 10_000) for i in range(20_000)]  # 55 h of event time
    for event_id, ts in ids:
        assert dedup.first("demo", event_id, ts)
    assert any(g.sealed for g in dedup.generations.values())
    newest = ids[-1][1]
    for event_id, ts in rng.sample(ids, 2000):
        inside = ts >= newest - 24 * HOUR
        assert dedup.first("demo", event_id, ts) is not inside, (event_id, ts)
    # New ids late into a sealed generation are kept too.
    assert dedup.first("demo", "late-1", newest - 20 * HOUR)
    assert not dedup.first("demo", "late-1", newest - 20 * HOUR)


def test_snapshot_round_trip_gives_the_same_verdicts() -> None:
    rng = random.Random(5)
    stream = [(f"e{rng.randrange(3000)}", T0 + i * 5_000) for i in range(6000)]
    whole = Deduplicator(2 * HOUR)
    verdicts = [whole.first("demo", i, ts) for i, ts in stream]
    first = Deduplicator(2 * HOUR)
    resumed: list[bool] = [first.first("demo", i, ts) for i, ts in stream[:3500]]
    second = Deduplicator(2 * HOUR).restore(first.snapshot())
    resumed += [second.first("demo", i, ts) for i, ts in stream[3500:]]
    assert resumed == verdicts
    assert False in verdicts and True in verdicts


def test_spec_section() -> None:
    spec = load_spec("config/demo.yaml")
    assert spec.dedup.enabled and spec.dedup.horizon_ms == 24 * HOUR
    off = spec.dedup.model_copy(update={"enabled": False})
    assert off.horizon_ms == 0
