"""Scheduled imports as a job kind of the scheduler: the spec's ``imports:`` on their cron.

One attempt at a run (:meth:`ImportJobs.run`) is :func:`dataflows.import_runs.execute`
with ``if_changed`` — the runner of ``riffle import``, ``riffle imports run`` and
``POST /v1/imports`` — so a scheduled import is an import run like any other:

* its record (``GET /v1/imports``) has ``trigger: schedule``, the scheduler's run id
  in ``schedule_run``, and an id derived from that run's, so each attempt rewrites
  the same record; the scheduler's run records the import run's id and counts;
* ``unchanged`` (every object as it was at the last successful import: nothing is
  read), ``succeeded`` and ``rejected`` (finished; the rejected rows are dead
  letters, and importing the same files again would reject them again) end the run;
* ``failed`` (no files yet, a source that cannot be listed or read, a sink down) is
  retried with backoff, and the retry resumes from the import's last checkpoint;
  ``aborted`` (more rows rejected than ``max_errors``) fails the run at once, since the
  same files would stop again — the next fire time imports them if they changed.

The import runs in the scheduler's worker thread, not in a process of its own as
``POST /v1/imports`` starts: an import dies with its scheduler, so when a standby
takes over and retries the run nothing else is still importing the same source
(both would write one resumable state); the retry resumes from the checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import redis
from prometheus_client import REGISTRY, CollectorRegistry, Counter

from riffle.config.imports import ScheduledImportSpec
from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec, load_spec
from riffle.dataflows.import_runs import execute
from riffle.dataflows.imports import ImportRequest
from riffle.operators.schedule import Job, JobFailedError
from riffle.sinks.redis.imports import ImportRun, ImportRunStore
from riffle.sinks.redis.schedule import Run

KIND = "import"
DONE = frozenset({"succeeded", "rejected", "unchanged"})
"""Import statuses that end a scheduled run as succeeded."""


def import_run_id(schedule_run: str) -> str:
    """The import run's id of the scheduler's run ``schedule_run`` (16 hex digits, as every
    import run's)."""
    return hashlib.blake2b(schedule_run.encode(), digest_size=8).hexdigest()


class ImportMetrics:
    """``riffle_import_scheduled_*``: scheduled import runs by status, their rows."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "riffle_import_scheduled_runs",
            "Attempts at scheduled imports by the import's status (succeeded, rejected, "
            "unchanged, aborted, failed).",
            ["status"],
            registry=registry,
        )
        self.rows = Counter(
            "riffle_import_scheduled_rows",
            "Rows read by scheduled imports, by outcome (accepted, rejected).",
            ["outcome"],
            registry=registry,
        )


class ImportJobs:
    """The ``import`` job kind over the spec's ``imports:``."""

    kind = KIND

    def __init__(
        self,
        settings: Settings,
        spec: PipelineSpec,
        runs: ImportRunStore,
        *,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.settings = settings
        self.spec = spec
        self.runs = runs
        self.metrics = ImportMetrics(registry)

    def tenant_of(self, job: ScheduledImportSpec) -> str:
        return job.tenant or self.settings.default_tenant

    def jobs(self) -> Sequence[Job]:
        out = []
        for job in self.spec.imports:
            tenant = self.tenant_of(job)
            backoff = None if job.backoff is None else job.backoff.total_seconds()
            out.append(
                Job(
                    KIND,
                    job.name,
                    tenant,
                    job.schedule,
                    self.spec.zone_of(tenant),
                    max_attempts=job.max_attempts,
                    backoff_s=backoff,
                )
            )
        return out

    def job(self, name: str) -> ScheduledImportSpec:
        """The spec's import called ``name``; a failure not worth retrying otherwise."""
        found = next((i for i in self.spec.imports if i.name == name), None)
        if found is None:
            known = ", ".join(i.name for i in self.spec.imports) or "none"
            raise JobFailedError(
                f"no import {name!r} in the spec (known: {known})", retryable=False
            )
        return found

    def request(self, job: ScheduledImportSpec) -> ImportRequest:
        """What ``riffle import SOURCE`` with the job's options asks for."""
        return ImportRequest(
            source=job.source,
            event_type=job.type,
            mapping=job.mapping,
            tenant=self.tenant_of(job),
            source_id=job.source_id,
            max_errors=job.max_errors,
            lateness_s=job.lateness_s,
        )

    def run(self, run: Run) -> dict[str, Any]:
        """One attempt (module doc): the import run's id, status and counts as details;
        :class:`JobFailedError` with them when it failed or was aborted."""
        job = self.job(run.job)
        tenant = self.tenant_of(job)
        record_id = import_run_id(run.id)
        earlier = self.runs.get(tenant, record_id)
        record = ImportRun(
            id=record_id,
            tenant=tenant,
            source=job.source,
            event_type=job.type,
            requested_by=f"schedule:{job.name}",
            trigger="schedule",
            schedule_run=run.id,
            request={
                "mapping": None
                if job.mapping is None
                else job.mapping.model_dump(exclude_unset=True),
                "source_id": job.source_id,
                "max_errors": job.max_errors,
                "lateness_s": job.lateness_s,
                "if_changed": True,
            },
        )
        if earlier is not None:  # a retry: the same record, where the listing had it
            record = record.model_copy(update={"created_at": earlier.created_at})
        done, _ = execute(
            self.settings, self.spec, self.request(job), self.runs, record, if_changed=True
        )
        self.metrics.runs.labels(done.status).inc()
        self.metrics.rows.labels("accepted").inc(done.accepted)
        self.metrics.rows.labels("rejected").inc(done.rejected)
        details = {
            "import_run": done.id,
            "status": done.status,
            "files": done.files,
            "rows_read": done.rows_read,
            "accepted": done.accepted,
            "rejected": done.rejected,
            "windows": done.windows,
            "resumed": done.resumed,
        }
        if done.status in DONE:
            return details
        error = done.error or f"the import ended {done.status}"
        raise JobFailedError(
            f"import {done.id} {done.status}: {error}", details, retryable=done.status != "aborted"
        )


def import_jobs(settings: Settings, registry: CollectorRegistry = REGISTRY) -> ImportJobs:
    """The import kind for ``settings``' spec, its runs recorded in ``settings``' Redis."""
    spec = load_spec(settings.spec)
    runs = ImportRunStore(redis.Redis.from_url(settings.redis_url), settings.redis_prefix)
    return ImportJobs(settings, spec, runs, registry=registry)
