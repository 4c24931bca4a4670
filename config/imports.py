"""Scheduled imports in the spec: the ``imports:`` section of a pipeline spec.

::

    imports:
      - name: shop-orders                # unique; the scheduler's job import:shop-orders
        source: gs://acme-exports/orders/  # gs://bucket/prefix, a glob, a file or a directory
        mapping: orders.mapping.yaml     # a mapping file (next to the spec), or one inline
        type: purchase                   # optional: the rows' event type (or the mapping's)
        tenant: acme                     # default RIFFLE_DEFAULT_TENANT
        schedule: "15 * * * *"           # cron, on the tenant's wall clock (time_zone)
        lateness: 1h                     # every metric's lateness in the run, or "all"
        max_errors: 1000                 # stop once more rows than this are rejected
        source_id: ""                    # mixed into derived event ids (docs/import.md)
        max_attempts: 5                  # attempts per run (default RIFFLE_SCHEDULER_MAX_ATTEMPTS)
        backoff: 30s                     # first wait between attempts, doubling (default
                                         # RIFFLE_SCHEDULER_BACKOFF_SECONDS)

Each fire time runs ``riffle import SOURCE --if-changed`` with these options: a
source whose objects are all as they were at its last successful import is
not imported again. A mapping given as a path is read when the spec loads,
relative to the spec's folder, and checked then: its problems name the
mapping file's line too. A local source is taken relative to the spec's
folder. Cross-references are checked by :func:`import_problems`, which
:func:`config.spec.parse_spec` turns into ``file:line`` errors.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from riffle.config.base import Strict
from riffle.config.durations import Duration, parse_duration
from riffle.config.mapping import MappingError, SchemaMapping, load_mapping
from riffle.config.schedules import Cron

SPEC_DIR = "spec_dir"
"""The validation context's key for the folder relative paths are read from."""


def _spec_dir(info: ValidationInfo) -> Path:
    context = info.context or {}
    return Path(context.get(SPEC_DIR) or ".")


class ScheduledImportSpec(Strict):
    """One import run on a cron schedule by ``riffle scheduler``."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    source: str = Field(min_length=1, max_length=2000)
    """``gs://bucket/prefix`` (or a pattern), or a local file, directory or glob (absolute
    once loaded: a relative one is read from the spec's folder)."""
    mapping: SchemaMapping | None = None
    """The schema mapping (``docs/import.md``): inline, or the path of its YAML file."""
    type: str | None = None
    tenant: str | None = Field(None, min_length=1, max_length=64)
    """The tenant the rows belong to (default ``RIFFLE_DEFAULT_TENANT``); its time zone is
    the schedule's."""
    schedule: Cron
    lateness: str = "1h"
    """Every metric's lateness in the run (a duration), or ``all``: no window closes before
    the end."""
    max_errors: int | None = Field(None, ge=0)
    source_id: str = Field("", max_length=200)
    max_attempts: int | None = Field(None, ge=1, le=20)
    backoff: Duration | None = None

    @field_validator("source")
    @classmethod
    def _where(cls, source: str, info: ValidationInfo) -> str:
        if source.startswith("gs://"):
            bucket = source.removeprefix("gs://").partition("/")[0]
            if not bucket:
                raise ValueError("a Cloud Storage source is gs://bucket/prefix")
            return source
        if "://" in source:
            raise ValueError("a source is gs://bucket/prefix or a local path")
        path = Path(source).expanduser()
        return str(path if path.is_absolute() else (_spec_dir(info) / path).absolute())

    @field_validator("mapping", mode="before")
    @classmethod
    def _mapping_file(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, str):
            return value
        path = Path(value).expanduser()
        try:
            return load_mapping(path if path.is_absolute() else _spec_dir(info) / path)
        except MappingError as exc:
            problems = str(exc).removeprefix("invalid schema mapping\n").replace("\n", "; ")
            raise ValueError(problems) from None

    @field_validator("lateness")
    @classmethod
    def _lateness(cls, text: str) -> str:
        if text != "all":
            parse_duration(text)
        return text

    @field_validator("backoff")
    @classmethod
    def _backoff(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and not timedelta(seconds=1) <= value <= timedelta(hours=1):
            raise ValueError("backoff lies between 1s and 1h")
        return value

    @property
    def lateness_s(self) -> float | None:
        """The lateness in seconds; ``None`` for ``all``."""
        return None if self.lateness == "all" else parse_duration(self.lateness).total_seconds()

    @property
    def event_type(self) -> str | None:
        """The rows' event type: ``type``, else the mapping's."""
        return self.type or (self.mapping.type if self.mapping is not None else None)


def import_problems(
    imports: Sequence[ScheduledImportSpec], event_types: Sequence[str]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Names used twice, event types the spec lacks, and two imports of the same source done
    the same way (they would share one fingerprint and one resumable state)."""
    names: list[str] = []
    seen: dict[tuple[Any, ...], str] = {}
    for i, job in enumerate(imports):
        where: tuple[str | int, ...] = ("imports", i)
        if job.name in names:
            yield (*where, "name"), f"import {job.name!r} is defined twice"
        names.append(job.name)
        if job.event_type is not None and job.event_type not in event_types:
            known = ", ".join(sorted(event_types))
            at = (*where, "type") if job.type is not None else (*where, "mapping", "type")
            yield at, f"unknown event type {job.event_type!r} (known: {known})"
        same = (
            job.source.rstrip("/"),
            job.tenant,
            job.type,
            None if job.mapping is None else job.mapping.model_dump_json(),
            job.source_id,
            job.lateness_s,
        )
        if same in seen:
            yield (
                (*where, "source"),
                f"import {seen[same]!r} imports this source the same way already "
                "(give one a source_id of its own, or drop one)",
            )
        seen.setdefault(same, job.name)
