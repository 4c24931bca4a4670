"""The scheduler's durable state in Redis: what was claimed, what is queued, every run.

* ``{prefix}:sched:lease`` (string): the running scheduler's id (:mod:`sinks.redis.lease`)
* ``{prefix}:sched:cursor`` (hash): job key → the newest due time (ms) already claimed
* ``{prefix}:sched:queue`` (hash): run id → :class:`Run` JSON, runs not finished yet
* ``{prefix}:sched:runs`` (hash): run id → :class:`Run` JSON, every run kept
* ``{prefix}:sched:index:{job key}`` (sorted set): run ids of one job, score: when recorded

A due time is claimed — cursor moved, run queued and recorded — in one
``MULTI``/``EXEC`` guarded by the lease (:meth:`ScheduleStore.claim`), so a
due time gives exactly one run however often the scheduler restarts, and a
scheduler that lost its lease writes nothing. A run's id is
``{job key}@{due ms}`` (``@manual-{ms}`` for one started by hand), so it is
stable across retries and usable in dedup keys. The newest :data:`KEEP_RUNS`
runs of each job are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import orjson
import redis

from riffle.sinks.errors import SinkError
from riffle.sinks.redis.lease import Lease

KEEP_RUNS = 200
"""Runs kept per job (older ones are dropped when a new one is recorded)."""

Status = Literal["queued", "running", "retrying", "succeeded", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


class LeaseLostError(SinkError):
    """Another scheduler holds the lease: this one must stop."""


@dataclass(frozen=True)
class Run:
    """One run of a job: why it ran, each attempt's outcome, what the job recorded."""

    id: str
    kind: str
    job: str
    tenant: str
    due: int
    """The fire time it was due at (ms); a manual run: when it was asked for."""
    trigger: Literal["schedule", "manual"] = "schedule"
    missed: int = 0
    """Earlier fire times that fell while no scheduler ran, folded into this run."""
    status: Status = "queued"
    attempts: int = 0
    not_before: int = 0
    """Earliest time (ms) of the next attempt."""
    started_at: int | None = None
    finished_at: int | None = None
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    """What the job kind recorded (a report: its period and deliveries)."""

    @property
    def job_key(self) -> str:
        return f"{self.kind}:{self.job}"

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Run:
        return cls(**orjson.loads(raw))

    def but(self, **changes: Any) -> Run:
        """A copy with ``changes``."""
        return replace(self, **changes)


def run_id(job_key: str, due_ms: int, manual: bool = False) -> str:
    """The id of the run of ``job_key`` due at ``due_ms``."""
    return f"{job_key}@manual-{due_ms}" if manual else f"{job_key}@{due_ms}"


class ScheduleStore:
    """Load and save a scheduler's state under ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.base = f"{prefix}:sched"
        self.lease = Lease(client, f"{self.base}:lease")
        self.cursor_key = f"{self.base}:cursor"
        self.queue_key = f"{self.base}:queue"
        self.runs_key = f"{self.base}:runs"

    def index_key(self, job_key: str) -> str:
        return f"{self.base}:index:{job_key}"

    def cursors(self) -> dict[str, int]:
        """The newest claimed due time of every job seen."""
        return {_text(k): int(v) for k, v in self.client.hgetall(self.cursor_key).items()}

    def queued(self) -> list[Run]:
        """Runs not finished (queued, running when a scheduler stopped, waiting to retry)."""
        return [Run.from_json(v) for v in self.client.hvals(self.queue_key)]

    def start_cursor(self, owner: str, job_key: str, at_ms: int) -> None:
        """A job seen for the first time is due from ``at_ms`` on (nothing before it runs)."""
        self._guarded(owner, lambda pipe: pipe.hsetnx(self.cursor_key, job_key, at_ms))

    def claim(self, owner: str, run: Run) -> None:
        """Move the job's cursor to ``run.due``, queue and record ``run``, in one transaction."""

        def writes(pipe: redis.client.Pipeline) -> None:
            pipe.hset(self.cursor_key, run.job_key, run.due)
            pipe.hset(self.queue_key, run.id, run.to_json())
            self._record(pipe, run)

        self._guarded(owner, writes)

    def save(self, owner: str, run: Run) -> None:
        """Record ``run`` as it is now; a finished run leaves the queue."""

        def writes(pipe: redis.client.Pipeline) -> None:
            if run.status in FINISHED:
                pipe.hdel(self.queue_key, run.id)
            else:
                pipe.hset(self.queue_key, run.id, run.to_json())
            self._record(pipe, run)

        self._guarded(owner, writes)

    def record(self, run: Run) -> None:
        """Record a run made outside the scheduler (``riffle reports run``)."""
        pipe = self.client.pipeline(transaction=True)
        self._record(pipe, run)
        pipe.execute()

    def runs(self, job_key: str, limit: int = 50) -> list[Run]:
        """The newest ``limit`` runs of one job, newest first; :class:`SinkError` when Redis
        cannot be read."""
        try:
            ids: list[bytes] = self.client.zrevrange(self.index_key(job_key), 0, max(0, limit - 1))  # type: ignore[assignment]
            found = self.client.hmget(self.runs_key, ids) if ids else []
        except redis.RedisError as exc:
            raise SinkError(f"redis read of scheduled runs failed: {exc}") from exc
        return [Run.from_json(raw) for raw in found if raw is not None]

    def get(self, run: str) -> Run | None:
        """One run by id; :class:`SinkError` when Redis cannot be read."""
        try:
            raw = self.client.hget(self.runs_key, run)
        except redis.RedisError as exc:
            raise SinkError(f"redis read of a scheduled run failed: {exc}") from exc
        return None if raw is None else Run.from_json(raw)

    def _record(self, pipe: redis.client.Pipeline, run: Run) -> None:
        index = self.index_key(run.job_key)
        pipe.hset(self.runs_key, run.id, run.to_json())
        pipe.zadd(index, {run.id: run.started_at or run.due}, nx=True)
        # Keep the newest KEEP_RUNS: the trim runs after the add, in the same transaction.
        pipe.eval(_TRIM, 2, index, self.runs_key, KEEP_RUNS)

    def _guarded(self, owner: str, writes: Callable[[redis.client.Pipeline], object]) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.lease.key)  # type: ignore[no-untyped-call]
                if not self.lease.holds(owner, pipe):
                    raise LeaseLostError("the scheduler's lease is held by another")
                pipe.multi()
                writes(pipe)
                pipe.execute()
            except redis.WatchError as exc:
                raise LeaseLostError("the scheduler's lease changed during a write") from exc


# KEYS = index, runs hash; ARGV = how many to keep. Drop the oldest runs beyond it.
_TRIM = """
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if extra <= 0 then return 0 end
local old = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
redis.call('HDEL', KEYS[2], unpack(old))
return extra
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
