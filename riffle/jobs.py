"""The job kinds ``riffle scheduler`` runs, by name: the one list to add a kind to.

A kind is an object with a ``kind`` name, ``jobs()`` (each a
:class:`~operators.schedule.Job`: name, tenant, cron, zone) and ``run(run)`` (one
attempt; returns details to record, raises
:class:`~operators.schedule.JobFailedError` to be retried with backoff) — the
:class:`~dataflows.scheduler.kinds.JobKind` protocol. Registering one:

1. write the kind where its work belongs (reports: :mod:`api.reports.jobs`, imports:
   :mod:`dataflows.import_jobs`);
2. add ``"name": builder`` to :data:`KINDS`, the builder taking the settings and
   the Prometheus registry;
3. document its jobs' configuration, and test it through
   :class:`~dataflows.scheduler.service.Scheduler` like ``tests/integration/test_scheduler.py``.

Leasing, cron, missed runs, retries and run records come from the scheduler.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry

from riffle.api.reports.jobs import report_jobs
from riffle.config.settings import Settings
from riffle.dataflows.import_jobs import import_jobs
from riffle.dataflows.scheduler.kinds import JobKind

KindBuilder = Callable[[Settings, CollectorRegistry], JobKind]

KINDS: dict[str, KindBuilder] = {
    "report": report_jobs,
    "import": import_jobs,
}


def build_kinds(settings: Settings, registry: CollectorRegistry) -> dict[str, JobKind]:
    """Every registered kind, built for ``settings``."""
    return {name: build(settings, registry) for name, build in KINDS.items()}
