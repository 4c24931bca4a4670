"""The scheduler against real Redis: missed fire times run once, retries back off, every run
is recorded, and one scheduler holds the lease while another stands by and takes over.

The job kind here is a probe that records what it is asked to run (the scheduler's
own extension point, not a stand-in for a service); the wall clock is a variable so
fire times can pass without waiting for them. The lease expires in real time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from riffle.dataflows.scheduler import Scheduler, SchedulerError
from riffle.operators.schedule import Job, JobFailedError
from riffle.sinks.redis.schedule import Run, ScheduleStore
from tests.conftest import RedisTarget

pytestmark = pytest.mark.integration

ZONE = "Europe/Berlin"
T0 = 1_796_374_830.0
"""2026-12-04 10:00:30 UTC: half a minute past a fire time of a per-minute job."""


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Probe:
    """A job kind that records its attempts; fails the first ``fail`` of them; may block."""

    kind = "probe"

    def __init__(self, cron: str = "* * * * *", fail: int = 0) -> None:
        self.cron = cron
        self.fail = fail
        self.calls: list[tuple[str, int, dict[str, Any]]] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def jobs(self) -> Sequence[Job]:
        return [Job(self.kind, "every", "t1", self.cron, ZONE)]

    def run(self, run: Run) -> dict[str, Any]:
        self.calls.append((run.id, run.attempts, dict(run.details)))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(20)
        if self.fail:
            self.fail -= 1
            raise JobFailedError(f"attempt {run.attempts} failed", {"tried": run.attempts})
        return {"done": run.attempts}


@pytest.fixture
def store(redis_url: RedisTarget) -> Iterator[ScheduleStore]:
    client = redis.Redis.from_url(redis_url.url)
    yield ScheduleStore(client, f"{redis_url.prefix}-{time.monotonic_ns()}")
    client.close()


def scheduler(store: ScheduleStore, kind: Probe, clock: Clock, **kw: Any) -> Scheduler:
    return Scheduler({kind.kind: kind}, store, clock=clock, registry=CollectorRegistry(), **kw)


def settle(s: Scheduler, until: Callable[[], bool] = lambda: True, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if s.idle() and until():
            return
        time.sleep(0.02)
    raise AssertionError("the scheduler did not settle")


def test_missed_fire_times_run_once_after_downtime(store: ScheduleStore) -> None:
    clock, probe = Clock(), Probe()
    first = scheduler(store, probe, clock)
    assert first.start(wait_s=5)
    first.step()  # a new job starts from now: nothing before it runs
    settle(first)
    assert probe.calls == []
    clock.now += 60
    first.step()
    settle(first, lambda: len(probe.calls) == 1)
    first.close()
    clock.now += 5 * 60  # five fire times while no scheduler runs
    second = scheduler(store, probe, clock)
    assert second.start(wait_s=5)
    second.step()
    settle(second, lambda: len(probe.calls) == 2)
    second.step()
    settle(second)
    assert len(probe.calls) == 2
    [newest, older] = store.runs("probe:every")
    assert (newest.status, newest.missed, newest.attempts, newest.trigger) == (
        "succeeded",
        4,
        1,
        "schedule",
    )
    assert newest.due == int((T0 + 6 * 60 - 30) * 1000)
    assert (older.status, older.missed) == ("succeeded", 0)
    assert newest.details == {"done": 1}
    assert second.metrics.missed.labels("probe")._value.get() == 4
    second.close()


def test_a_failed_attempt_is_retried_with_backoff_and_recorded(store: ScheduleStore) -> None:
    clock, probe = Clock(), Probe("0 * * * *", fail=2)
    s = scheduler(store, probe, clock, backoff_s=30, max_attempts=5)
    assert s.start(wait_s=5)
    s.step()
    clock.now += 3570  # 11:00, the next fire time; no other falls during the retries
    s.step()
    settle(s, lambda: len(probe.calls) == 1)
    [run] = store.runs("probe:every")
    assert (run.status, run.attempts, run.error) == ("retrying", 1, "attempt 1 failed")
    assert run.not_before == int(clock.now * 1000) + 30_000
    clock.now += 20
    s.step()
    settle(s)
    assert len(probe.calls) == 1  # not before the backoff
    clock.now += 11
    s.step()
    settle(s, lambda: len(probe.calls) == 2)
    clock.now += 59  # the second wait is twice the first
    s.step()
    settle(s)
    assert len(probe.calls) == 2
    clock.now += 2
    s.step()
    settle(s, lambda: len(probe.calls) == 3)
    # Each attempt sees what the one before recorded.
    assert [c[1:] for c in probe.calls] == [(1, {}), (2, {"tried": 1}), (3, {"tried": 2})]
    [run] = store.runs("probe:every")
    assert (run.status, run.attempts, run.error, run.details) == ("succeeded", 3, None, {"done": 3})
    assert s.metrics.runs.labels("probe", "retrying")._value.get() == 2
    assert s.metrics.runs.labels("probe", "succeeded")._value.get() == 1
    s.close()


def test_a_run_that_keeps_failing_is_recorded_failed(store: ScheduleStore) -> None:
    clock, probe = Clock(), Probe("0 * * * *", fail=10)
    s = scheduler(store, probe, clock, backoff_s=1, max_attempts=2)
    assert s.start(wait_s=5)
    s.step()
    clock.now += 3570
    s.step()
    settle(s, lambda: len(probe.calls) == 1)
    clock.now += 2
    s.step()
    settle(s, lambda: len(probe.calls) == 2)
    [run] = store.runs("probe:every")
    assert (run.status, run.attempts, run.error) == ("failed", 2, "attempt 2 failed")
    assert run.finished_at is not None
    assert store.queued() == []
    s.close()


def test_a_standby_takes_over_when_the_holder_stops(store: ScheduleStore) -> None:
    clock, probe = Clock(), Probe("0 * * * *")
    holder = scheduler(store, probe, clock, lease_s=1.0)
    standby = scheduler(store, probe, clock, lease_s=1.0)
    assert holder.start(wait_s=5)
    holder.step()
    assert not standby.start(wait_s=0.3)  # the lease is held: the standby waits
    probe.gate = threading.Event()
    clock.now += 3570
    holder.step()
    assert probe.entered.wait(5)  # the holder's run is in flight …
    # … when the holder stops renewing (a crash): the standby takes over after the lease.
    took: list[float] = []
    began = time.monotonic()
    waiter = threading.Thread(target=lambda: took.append(float(standby.start(wait_s=10))))
    waiter.start()
    waiter.join(10)
    assert took == [1.0]
    assert time.monotonic() - began < 2.5
    # The interrupted run counts as a failed attempt and is queued again.
    [run] = store.queued()
    assert (run.status, run.attempts) == ("retrying", 1)
    assert run.error is not None and run.error.startswith("interrupted")
    # The old holder's late result is refused, and it cannot step any more.
    probe.gate.set()
    settle(holder)
    with pytest.raises(SchedulerError, match="lost its lease"):
        holder.step()
    assert store.get(run.id) == run
    # The new holder runs it again after the backoff.
    probe.gate = None
    clock.now += 31
    standby.step()
    settle(standby, lambda: len(probe.calls) == 2)
    [done] = store.runs("probe:every")
    assert (done.status, done.attempts) == ("succeeded", 2)
    holder.close(release=False)
    standby.close()


def test_a_jobs_own_retry_policy_replaces_the_schedulers(store: ScheduleStore) -> None:
    class Patient(Probe):
        def jobs(self) -> Sequence[Job]:
            return [Job(self.kind, "every", "t1", self.cron, ZONE, max_attempts=2, backoff_s=5)]

    clock, probe = Clock(), Patient("0 * * * *", fail=10)
    s = scheduler(store, probe, clock, backoff_s=30, max_attempts=5)
    assert s.start(wait_s=5)
    s.step()
    clock.now += 3570
    s.step()
    settle(s, lambda: len(probe.calls) == 1)
    [run] = store.runs("probe:every")
    assert (run.status, run.not_before) == ("retrying", int(clock.now * 1000) + 5_000)
    clock.now += 5
    s.step()
    settle(s, lambda: len(probe.calls) == 2)
    [run] = store.runs("probe:every")
    assert (run.status, run.attempts) == ("failed", 2)
    s.close()


def test_a_bug_in_a_kind_is_recorded_and_backed_off(store: ScheduleStore) -> None:
    class Broken(Probe):
        def run(self, run: Run) -> dict[str, Any]:
            self.calls.append((run.id, run.attempts, {}))
            raise ValueError("a bug")

    clock, probe = Clock(), Broken("0 * * * *")
    s = scheduler(store, probe, clock, backoff_s=30)
    assert s.start(wait_s=5)
    s.step()
    clock.now += 3570
    s.step()
    settle(s, lambda: len(probe.calls) == 1)
    for _ in range(3):  # not tried again before its backoff
        s.step()
        settle(s)
    [run] = store.runs("probe:every")
    assert (run.status, run.attempts, len(probe.calls)) == ("retrying", 1, 1)
    assert run.error == "unexpected error: ValueError('a bug')"
    s.close()


def test_two_scheduler_processes_one_leads_the_other_stands_by(
    store: ScheduleStore, redis_url: RedisTarget
) -> None:
    from riffle.config.settings import Settings
    from riffle.dataflows.scheduler.run import run_scheduler

    settings = Settings(
        redis_url=redis_url.url,
        redis_prefix=store.base.removesuffix(":sched"),
        scheduler_lease_seconds=1.0,
        scheduler_metrics_port=0,
    )
    stops = [threading.Event(), threading.Event()]
    registries = [CollectorRegistry(), CollectorRegistry()]
    threads = [
        threading.Thread(target=run_scheduler, args=(settings, {"probe": Probe()}, stop, reg))
        for stop, reg in zip(stops, registries, strict=True)
    ]
    for thread in threads:
        thread.start()

    def leaders() -> list[float]:
        return [r.get_sample_value("riffle_scheduler_leader") or 0.0 for r in registries]

    deadline = time.monotonic() + 10
    while sorted(leaders()) != [0.0, 1.0]:
        assert time.monotonic() < deadline, leaders()
        time.sleep(0.05)
    first = leaders().index(1.0)
    stops[first].set()  # the leader stops (and releases): the other takes over
    threads[first].join(10)
    deadline = time.monotonic() + 5
    while leaders()[1 - first] != 1.0:
        assert time.monotonic() < deadline, leaders()
        time.sleep(0.05)
    stops[1 - first].set()
    threads[1 - first].join(10)
    assert not any(t.is_alive() for t in threads)
    assert store.client.get(store.lease.key) is None
