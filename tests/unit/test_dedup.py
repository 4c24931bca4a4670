"""The de-duplicator alone: verdicts, tenants, the horizon, sealing, snapshots."""

from __future__ import annotations

import random

import orjson

from riffle.config.spec import load_spec
from riffle.operators.dedup import GENERATIONS, Deduplicator
from riffle.operators.extract import compile_plans
from riffle.operators.ingest import PartitionIngest
from riffle.operators.watermark import PartitionClock

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


def test_a_claim_not_kept_is_forgotten() -> None:
    """The ingest stage keeps a claim only once the event passed every check."""
    dedup = Deduplicator(HOUR)
    claim = dedup.claim("demo", "e1", T0)
    assert claim is not None
    assert dedup.claim("demo", "e1", T0) is not None, "a dead letter's id is not remembered"
    dedup.keep(claim)
    assert dedup.claim("demo", "e1", T0) is None


def _message(offset: int, event_id: str, ts: int, amount: object) -> tuple[bytes, None, int]:
    props = {"amount": amount, "currency": "EUR"}
    body = {"event_id": event_id, "type": "purchase", "ts": ts, "props": props}
    return (orjson.dumps(body), None, offset)


def test_ingest_counts_copies_as_duplicates_and_forgets_dead_letters() -> None:
    spec = load_spec("config/demo.yaml")
    ingest = PartitionIngest(
        compile_plans(spec, default_lateness_ms=10_000),
        source="k:p0",
        default_tenant="t",
        buckets=4,
        clock=PartitionClock(idle_ms=1000),
        dedup=Deduplicator(spec.dedup.horizon_ms),
    )
    broken = ingest.process([_message(0, "p1", T0, "lots")], now=T0)
    assert (broken.ok, len(broken.dead), broken.duplicate) == (0, 1, 0)
    fixed = ingest.process([_message(1, "p1", T0, 5.0), _message(2, "p1", T0, 5.0)], now=T0)
    assert (fixed.ok, len(fixed.dead), fixed.duplicate) == (1, 0, 1)
    # Hours later (far behind the watermark): still a duplicate, not a late event.
    ingest.process([_message(3, "p2", T0 + 3 * HOUR, 1.0)], now=T0)
    again = ingest.process([_message(4, "p1", T0, 5.0)], now=T0)
    assert (again.ok, again.late, again.duplicate) == (0, 0, 1)


def test_a_repeated_snapshot_reuses_what_did_not_change() -> None:
    dedup = Deduplicator(24 * HOUR)
    dedup.first("demo", "old", T0)
    dedup.first("demo", "new", T0 + 2 * HOUR)
    first = dict((start, fresh) for start, _, fresh in dedup.snapshot()[1])
    dedup.first("demo", "newer", T0 + 2 * HOUR + 1)
    second = dict((start, fresh) for start, _, fresh in dedup.snapshot()[1])
    assert second[T0] is first[T0], "an untouched generation is not packed again"
    assert second[T0 + 2 * HOUR] != first[T0 + 2 * HOUR]
    resumed = Deduplicator(24 * HOUR).restore(dedup.snapshot())
    assert not resumed.first("demo", "newer", T0 + 2 * HOUR + 1)
