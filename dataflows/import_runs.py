"""Import runs with a record: what ``riffle import``, ``POST /v1/imports`` and a scheduler call.

:func:`execute` records the run (:class:`~sinks.redis.imports.ImportRun`) as
it starts, every few seconds while it reads and when it ends; with
``if_changed`` a source whose objects all have the fingerprints they had at
its last successful import is not imported again (status ``unchanged``).
"""

from __future__ import annotations

import threading
import time

import structlog

from riffle.config.errors import RiffleError
from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec
from riffle.dataflows.batch_sources import Progress
from riffle.dataflows.imports import ImportRequest, RunResult, fingerprint, run_import
from riffle.sinks.redis.imports import ImportRun, ImportRunStore
from riffle.sources.storage import list_objects

log = structlog.get_logger(__name__)
RECORD_EVERY_S = 5.0


def now_ms() -> int:
    """Wall clock in epoch milliseconds."""
    return int(time.time() * 1000)


def execute(
    settings: Settings,
    spec: PipelineSpec,
    request: ImportRequest,
    runs: ImportRunStore,
    run: ImportRun,
    *,
    if_changed: bool = False,
    progress: Progress | None = None,
    checkpoint_s: float = 5.0,
) -> tuple[ImportRun, RunResult | None]:
    """Run one import and keep its record; never raises for a failed import (the record
    says ``failed`` with the error) and records an interrupted one as ``interrupted``;
    starting the same import again resumes either."""
    progress = progress or Progress()
    tenant = request.tenant or settings.default_tenant
    key = request.key()
    run = run.model_copy(update={"status": "running", "started_at": now_ms(), "tenant": tenant})
    runs.save(run)
    stop = threading.Event()
    recorder = threading.Thread(target=_record, args=(runs, run, progress, stop), daemon=True)
    recorder.start()
    result = None
    try:
        if if_changed:
            stamp = fingerprint(list_objects(request.source))
            if runs.last_fingerprint(tenant, key) == stamp:
                run = run.model_copy(update={"status": "unchanged", "fingerprint": stamp})
                return _finish(runs, run, stop, recorder), None
        result = run_import(
            settings, spec, request, progress=progress, run_id=run.id, epoch_s=checkpoint_s
        )
    except Exception as exc:  # noqa: BLE001 - whatever stopped the run is its recorded error
        message = str(exc) if isinstance(exc, RiffleError) else f"{type(exc).__name__}: {exc}"
        run = run.model_copy(update={"status": "failed", "error": message})
        log.warning("import_failed", run_id=run.id, error=message)
        return _finish(runs, run, stop, recorder), None
    except KeyboardInterrupt:
        run = run.model_copy(update={"status": "interrupted", "rows_read": progress.rows})
        _finish(runs, run, stop, recorder)
        raise
    report = result.report
    run = run.model_copy(
        update={
            "status": result.status,
            "files": report.files,
            "rows_read": report.rows_read,
            "accepted": max(0, report.rows_read - report.rejected),
            "rejected": report.rejected,
            "rejected_by_reason": report.rejected_by_reason,
            "windows": report.windows,
            "problems": report.problems,
            "file_errors": report.file_errors,
            "error": result.error,
            "fingerprint": result.fingerprint,
            "resumed": result.resumed,
        }
    )
    if result.status in ("succeeded", "rejected") and result.fingerprint:
        runs.imported(tenant, key, result.fingerprint)
    return _finish(runs, run, stop, recorder), result


def _finish(
    runs: ImportRunStore, run: ImportRun, stop: threading.Event, recorder: threading.Thread
) -> ImportRun:
    stop.set()
    recorder.join()
    run = run.model_copy(update={"finished_at": now_ms()})
    runs.save(run)
    log.info("import_done", run_id=run.id, status=run.status, rows=run.rows_read)
    return run


def _record(
    runs: ImportRunStore, run: ImportRun, progress: Progress, stop: threading.Event
) -> None:
    while not stop.wait(RECORD_EVERY_S):
        runs.save(run.model_copy(update={"rows_read": progress.rows, "files": progress.files}))
