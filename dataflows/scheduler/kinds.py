"""What a job kind gives the scheduler: its jobs, and a way to run one.

A kind is any object with a ``kind`` name, ``jobs()`` and ``run(run)``; the
scheduler asks for ``jobs()`` every step, so a kind whose jobs come from a
spec or a store may change them while the scheduler runs (a job that
disappears has its queued runs cancelled). Registering a new kind is one
entry in :data:`riffle.jobs.KINDS` (see ``docs/operations.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from riffle.operators.schedule import Job
from riffle.sinks.redis.schedule import Run


class JobKind(Protocol):
    """A kind of scheduled job (reports, imports)."""

    kind: str

    def jobs(self) -> Sequence[Job]:
        """The jobs of this kind now (their ``kind`` is this kind's)."""

    def run(self, run: Run) -> dict[str, Any]:
        """One attempt at ``run`` (``run.details``: what earlier attempts recorded);
        returns the details to record; raises
        :class:`~operators.schedule.JobFailedError` (or any
        :class:`~config.errors.RiffleError`, retried the same way)."""
