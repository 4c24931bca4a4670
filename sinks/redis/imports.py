"""Import runs: one record per run, and each source's fingerprint when it was last imported.

Keys (``P`` the prefix, ``T`` the tenant):

``P:T:imports``
    ZSET of run ids scored by creation time (ms); the newest :data:`KEEP` are kept.
``P:T:import:<run id>``
    STRING, the run's :class:`ImportRun` as JSON (rewritten as the run goes).
``P:T:import-source:<source key>``
    STRING, the fingerprint of the source's objects at its last successful import:
    a run whose source still has it is not imported again (status ``unchanged``).
"""

from __future__ import annotations

import time
from typing import Any, Literal

import redis
from pydantic import BaseModel, Field

RunStatus = Literal[
    "queued", "running", "succeeded", "rejected", "aborted", "failed", "unchanged", "interrupted"
]
"""``interrupted``: stopped by Ctrl-C; the same import started again resumes it."""
FINISHED: frozenset[str] = frozenset({"succeeded", "rejected", "aborted", "failed", "unchanged"})
KEEP = 1000


class ImportRun(BaseModel):
    """One import run as the API shows it (times in ms since the epoch)."""

    id: str
    tenant: str
    source: str
    event_type: str | None = None
    status: RunStatus = "queued"
    requested_by: str = "cli"
    """``cli``, ``api:<key prefix>`` or ``schedule:<import name>``."""
    trigger: Literal["manual", "schedule"] = "manual"
    """``schedule``: a fire time of the spec's ``imports:`` started it (``schedule_run``)."""
    schedule_run: str | None = None
    """The scheduler's run (``import:<name>@<due ms>``) this import carried out."""
    created_at: int = Field(default_factory=lambda: int(time.time() * 1000))
    started_at: int | None = None
    finished_at: int | None = None
    files: int = 0
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = Field(default_factory=dict)
    windows: int = 0
    problems: list[dict[str, str]] = Field(default_factory=list)
    """The first rejected rows: ``source`` (file@row), ``path`` (column) and ``reason``."""
    file_errors: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
    fingerprint: str | None = None
    resumed: bool = False
    request: dict[str, Any] = Field(default_factory=dict)
    """What was asked (mapping, max_errors, ...), so a runner process can carry it out."""


class ImportRunStore:
    """Run records and source fingerprints of every tenant."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def save(self, run: ImportRun) -> None:
        """Create or rewrite a run's record."""
        key = f"{self._prefix}:{run.tenant}:import:{run.id}"
        index = f"{self._prefix}:{run.tenant}:imports"
        pipe = self._client.pipeline()
        pipe.set(key, run.model_dump_json())
        pipe.zadd(index, {run.id: run.created_at})
        pipe.execute()
        stale = self._client.zrange(index, 0, -KEEP - 1)
        if stale:
            names = [s.decode() for s in stale]  # type: ignore[union-attr]
            self._client.delete(*[f"{self._prefix}:{run.tenant}:import:{n}" for n in names])
            self._client.zrem(index, *names)

    def get(self, tenant: str, run_id: str) -> ImportRun | None:
        """One run, if the tenant has it."""
        raw = self._client.get(f"{self._prefix}:{tenant}:import:{run_id}")
        return None if raw is None else ImportRun.model_validate_json(raw)

    def recent(self, tenant: str, limit: int = 50) -> list[ImportRun]:
        """The tenant's newest runs first."""
        ids = self._client.zrevrange(f"{self._prefix}:{tenant}:imports", 0, limit - 1)
        if not ids:
            return []
        keys = [f"{self._prefix}:{tenant}:import:{i.decode()}" for i in ids]  # type: ignore[union-attr]
        stored = self._client.mget(keys)
        return [ImportRun.model_validate_json(r) for r in stored if r is not None]

    def last_fingerprint(self, tenant: str, source_key: str) -> str | None:
        """The fingerprint of the source at its last successful import."""
        raw = self._client.get(f"{self._prefix}:{tenant}:import-source:{source_key}")
        return None if raw is None else raw.decode()  # type: ignore[union-attr]

    def imported(self, tenant: str, source_key: str, fingerprint: str) -> None:
        """Remember that the source, as ``fingerprint`` says it was, is imported."""
        self._client.set(f"{self._prefix}:{tenant}:import-source:{source_key}", fingerprint)
