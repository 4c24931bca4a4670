"""The scheduler's loop: claim due runs, run them on worker threads, retry, record.

Call :meth:`Scheduler.start`, then :meth:`Scheduler.step` in a loop (or
:meth:`Scheduler.run`), then :meth:`Scheduler.close`. See the package doc for
what it guarantees.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

import redis as redis_client
import structlog
from prometheus_client import REGISTRY, CollectorRegistry

from riffle.config.errors import RiffleError
from riffle.dataflows.scheduler.kinds import JobKind
from riffle.dataflows.scheduler.metrics import SchedulerMetrics
from riffle.operators.schedule import Job, JobFailedError, latest_due, next_due
from riffle.sinks.redis.schedule import LeaseLostError, Run, ScheduleStore, run_id

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 3600.0
"""Longest wait between two attempts at a run."""


class SchedulerError(RiffleError):
    """The scheduler cannot go on (it lost its lease)."""


class Scheduler:
    """Runs the jobs of ``kinds`` (by kind name) with its state in ``store``."""

    def __init__(
        self,
        kinds: Mapping[str, JobKind],
        store: ScheduleStore,
        *,
        lease_s: float = 15.0,
        workers: int = 2,
        max_attempts: int = 5,
        backoff_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.kinds = dict(kinds)
        self.store = store
        self.lease_ms = int(lease_s * 1000)
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.clock = clock
        self.metrics = SchedulerMetrics(registry)
        self.owner = uuid.uuid4().hex
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self._lost = False
        self._jobs: dict[str, Job] = {}

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def start(self, wait_s: float | None = 120.0, stop: threading.Event | None = None) -> bool:
        """Take the lease (waiting up to ``wait_s``; ``None``: as long as it takes) and pick up
        runs a stopped scheduler left. False when ``wait_s`` passed or ``stop`` was set.

        A scheduler that lost its lease (and was closed) may start again."""
        if not self.store.lease.wait(self.owner, self.lease_ms, wait_s=wait_s, stop=stop):
            return False
        self._lost = False
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="scheduler")
        self.metrics.leader.set(1)
        now = self._now_ms()
        self.jobs()
        for run in self.store.queued():
            if run.status == "running":  # its scheduler stopped during the attempt
                self._finish_attempt(run, "interrupted: the scheduler stopped during the run", now)
        log.info("scheduler_start", owner=self.owner, kinds=sorted(self.kinds))
        return True

    def jobs(self) -> dict[str, Job]:
        """Every job of every kind, by key (kept for the retry policies of their runs)."""
        self._jobs = {job.key: job for kind in self.kinds.values() for job in kind.jobs()}
        return self._jobs

    def step(self) -> float:
        """Renew the lease, claim runs that came due, start queued runs whose time came;
        returns how long to wait before the next step (seconds)."""
        if self._lost or not self.store.lease.renew(self.owner, self.lease_ms):
            self.metrics.leader.set(0)
            raise SchedulerError("the scheduler lost its lease; another one took over")
        now = self._now_ms()
        jobs = self.jobs()
        cursors = self.store.cursors()
        wake = now + self.lease_ms // 3
        try:
            for key, job in jobs.items():
                if key not in cursors:
                    self.store.start_cursor(self.owner, key, now)
                    cursors[key] = now
                due, count = latest_due(job.cron, job.zone, cursors[key], now)
                if due is not None:
                    self._claim(job, due, count, now)
                    cursors[key] = due
                wake = min(wake, next_due(job.cron, job.zone, max(now, cursors[key])))
            queued = sorted(self.store.queued(), key=lambda r: (r.due, r.id))
            self.metrics.queued.set(len(queued))
            for run in queued:
                if run.job_key not in jobs:
                    gone = "the job no longer exists"
                    self.store.save(
                        self.owner, run.but(status="cancelled", finished_at=now, error=gone)
                    )
                    self.metrics.runs.labels(run.kind, "cancelled").inc()
                elif run.not_before <= now:
                    self._submit(run)
                else:
                    wake = min(wake, run.not_before)
        except LeaseLostError as exc:
            self._lost = True
            raise SchedulerError(f"stopping: {exc}") from exc
        return max(0.05, (wake - self._now_ms()) / 1000)

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set; raises :class:`SchedulerError` when the lease is lost."""
        while not stop.is_set():
            stop.wait(self.step())

    def idle(self) -> bool:
        """No run in flight (for tests and shutdown)."""
        with self._lock:
            return not self._in_flight

    def close(self, release: bool = True) -> None:
        """Wait for runs in flight, then give the lease up (``release``)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.metrics.leader.set(0)
        if release:
            self.store.lease.release(self.owner)

    def _claim(self, job: Job, due: int, count: int, now: int) -> None:
        run = Run(
            id=run_id(job.key, due),
            kind=job.kind,
            job=job.name,
            tenant=job.tenant,
            due=due,
            missed=count - 1,
            not_before=now,
        )
        self.store.claim(self.owner, run)
        if run.missed:
            self.metrics.missed.labels(job.kind).inc(run.missed)
        log.info("scheduler_due", run=run.id, missed=run.missed)

    def _submit(self, run: Run) -> None:
        with self._lock:
            busy = {r.rsplit("@", 1)[0] for r in self._in_flight}
            if run.id in self._in_flight or run.job_key in busy:  # one run of a job at a time
                return
            self._in_flight.add(run.id)
        assert self._pool is not None, "start() first"
        self._pool.submit(self._attempt, run)

    def _attempt(self, run: Run) -> None:
        try:
            self._attempt_now(run)
        except (LeaseLostError, redis_client.RedisError) as exc:
            # Still queued in Redis: the scheduler holding the lease runs it again.
            log.warning("scheduler_state_error", run=run.id, error=str(exc))
            self._lost = self._lost or isinstance(exc, LeaseLostError)
        finally:
            with self._lock:
                self._in_flight.discard(run.id)

    def _attempt_now(self, run: Run) -> None:
        kind = self.kinds[run.kind]
        began = time.perf_counter()
        running = run.but(
            status="running", attempts=run.attempts + 1, started_at=self._now_ms(), error=None
        )
        self.store.save(self.owner, running)
        try:
            details = kind.run(running)
        except JobFailedError as exc:
            running = running.but(details=exc.details or running.details)
            self._finish_attempt(running, str(exc), self._now_ms(), exc.retryable)
        except RiffleError as exc:
            self._finish_attempt(running, str(exc), self._now_ms())
        except Exception as exc:
            # A bug in a kind is recorded on its run and backed off; the scheduler goes on.
            log.exception("scheduler_run_bug", run=run.id)
            self._finish_attempt(running, f"unexpected error: {exc!r}", self._now_ms())
        else:
            done = running.but(
                status="succeeded", finished_at=self._now_ms(), error=None, details=details
            )
            self.store.save(self.owner, done)
            self.metrics.runs.labels(run.kind, "succeeded").inc()
            log.info("scheduler_run_succeeded", run=run.id, attempts=done.attempts)
        finally:
            self.metrics.duration.labels(run.kind).observe(time.perf_counter() - began)

    def _finish_attempt(self, run: Run, error: str, now: int, retryable: bool = True) -> None:
        """Record a failed attempt: retry after the backoff, or fail the run for good (the
        job's policy, else the scheduler's)."""
        job = self._jobs.get(run.job_key)
        max_attempts = self.max_attempts if job is None else job.max_attempts or self.max_attempts
        backoff_s = self.backoff_s if job is None or job.backoff_s is None else job.backoff_s
        if retryable and run.attempts < max_attempts:
            wait_s = min(MAX_BACKOFF_S, backoff_s * 2 ** max(0, run.attempts - 1))
            after = run.but(status="retrying", error=error, not_before=now + int(wait_s * 1000))
            outcome = "retrying"
        else:
            after = run.but(status="failed", error=error, finished_at=now)
            outcome = "failed"
        self.store.save(self.owner, after)
        self.metrics.runs.labels(run.kind, outcome).inc()
        log.warning("scheduler_run_" + outcome, run=run.id, attempts=run.attempts, error=error)
