"""``/v1/imports``: import runs of the caller's tenant, and starting one (admin scope).

``POST`` checks the request (mapping, event type, where the source is), records
the run as ``queued`` and starts ``riffle imports run`` in a process of its
own; ``GET`` shows the records as the run goes (status, counts, the first
rejected rows with file, row, column and reason). Local paths are readable
only under ``RIFFLE_IMPORT_ALLOWED_DIR`` (a relative path is taken from there);
``gs://`` sources always.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from riffle.api.deps import AdminKey, ImportRuns, ServicesDep, Spec
from riffle.api.errors import ApiError
from riffle.config.durations import parse_duration
from riffle.config.mapping import MappingError, mapping_from
from riffle.config.settings import Settings
from riffle.sinks.redis.imports import ImportRun

router = APIRouter(tags=["imports"])


class ImportSpec(BaseModel):
    """What to import."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=2000, description="gs://bucket/prefix or a path.")
    type: str | None = Field(None, description="Event type of the rows (or the mapping's).")
    mapping: dict[str, Any] | None = Field(None, description="A schema mapping (docs/import.md).")
    source_id: str = Field("", max_length=200)
    max_errors: int | None = Field(None, ge=0, description="Stop after this many rejected rows.")
    lateness: str = Field("1h", max_length=20, description="A duration, or 'all'.")
    if_changed: bool = Field(True, description="Skip a source unchanged since its last import.")


@router.post(
    "/v1/imports",
    operation_id="startImport",
    summary="Start an import run",
    status_code=202,
)
def start_import(
    body: ImportSpec, runs: ImportRuns, caller: AdminKey, spec: Spec, app: ServicesDep
) -> dict[str, Any]:
    """The run's record (``queued``); follow it at ``GET /v1/imports/{id}``."""
    if body.mapping is not None:
        try:
            mapping = mapping_from(body.mapping, "mapping")
        except MappingError as exc:
            raise ApiError(422, "invalid_mapping", str(exc)) from exc
    event_type = body.type or (mapping.type if body.mapping is not None else None)
    if event_type is not None and event_type not in spec.event_types:
        known = ", ".join(sorted(spec.event_types))
        raise ApiError(422, "unknown_type", f"unknown event type {event_type!r} (known: {known})")
    lateness = _lateness(body.lateness)
    source = _allowed_source(body.source, app.settings)
    run = ImportRun(
        id=uuid.uuid4().hex[:16],
        tenant=caller.tenant,
        source=source,
        event_type=body.type,
        requested_by=f"api:{caller.key.prefix}",
        request={
            "mapping": body.mapping,
            "source_id": body.source_id,
            "max_errors": body.max_errors,
            "lateness_s": lateness,
            "if_changed": body.if_changed,
        },
    )
    runs.save(run)
    _spawn(run, app.settings)
    return run.model_dump(exclude={"request"})


@router.get("/v1/imports", operation_id="listImports", summary="Import runs, newest first")
def list_imports(
    runs: ImportRuns,
    caller: AdminKey,
    limit: int = Query(50, ge=1, le=1000, description="Most runs returned."),
) -> dict[str, Any]:
    return {
        "imports": [r.model_dump(exclude={"request"}) for r in runs.recent(caller.tenant, limit)]
    }


@router.get("/v1/imports/{run_id}", operation_id="getImport", summary="One import run")
def get_import(run_id: str, runs: ImportRuns, caller: AdminKey) -> dict[str, Any]:
    run = runs.get(caller.tenant, run_id[:64])
    if run is None:
        raise ApiError(404, "not_found", f"no import run {run_id!r}")
    return run.model_dump(exclude={"request"})


def _lateness(text: str) -> float | None:
    if text == "all":
        return None
    try:
        return parse_duration(text).total_seconds()
    except ValueError as exc:
        raise ApiError(422, "invalid_lateness", f"lateness: {exc} (or 'all')") from exc


def _allowed_source(source: str, settings: Settings) -> str:
    """The source as the run reads it (a local path absolute), if the API may read it."""
    if source.startswith("gs://"):
        if len(source) <= len("gs://") or source[5] == "/":
            raise ApiError(422, "invalid_source", "a Cloud Storage source is gs://bucket/prefix")
        return source
    allowed = settings.import_allowed_dir
    if allowed is None:
        raise ApiError(
            403, "source_not_allowed", "local sources need RIFFLE_IMPORT_ALLOWED_DIR; use gs://"
        )
    root = allowed.expanduser().resolve()
    path = Path(source).expanduser()
    target = (path if path.is_absolute() else root / path).resolve()
    if target != root and root not in target.parents:
        raise ApiError(403, "source_not_allowed", f"{source!r} is not under {root}")
    return str(target)


def _spawn(run: ImportRun, settings: Settings) -> None:
    """``riffle imports run`` in a process of its own (it outlives the request)."""
    logs = settings.import_state_dir
    logs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    env.update(settings.as_environment())
    command = [sys.executable, "-m", "riffle.cli", "imports", "run", run.id, "--tenant", run.tenant]
    with (logs / f"{run.id}.log").open("ab") as log:
        subprocess.Popen(  # noqa: S603 - our own command, arguments we made
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
