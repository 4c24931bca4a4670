"""The records that leave the stream logic: window results and dead letters.

A series is (tenant, metric, dimension values). :func:`series_id` gives it a
short stable id that every store and API path uses; it is a hash of the
canonical encoding, so it is the same in every process and every run.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import orjson

Dims = tuple[tuple[str, str], ...]
"""Dimension values of a series as sorted ``(name, value)`` pairs."""

FailureType = Literal[
    "parse", "envelope", "unknown_type", "invalid", "schema", "size", "late", "enrichment", "import"
]
FAILURE_TYPES: tuple[FailureType, ...] = (
    "parse",
    "envelope",
    "unknown_type",
    "invalid",
    "schema",
    "size",
    "late",
    "enrichment",
    "import",
)

FieldIssue = tuple[str, str, str]
"""One broken rule of an event: ``(field path, rule, message)``."""


def series_id(metric: str, dims: Dims) -> str:
    """A 16-hex-digit id of a metric's series, stable across processes and runs.

    The tenant is not part of the hash: every key and table that holds a
    series also holds the tenant beside it.
    """
    canonical = orjson.dumps([metric, dims])
    return hashlib.blake2b(canonical, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class WindowResult:
    """One emission of one window of one series.

    ``count``, ``sum``, ``min`` and ``max`` are the mergeable aggregate state,
    so windows of several series can be combined exactly (``group_by``);
    ``value`` is the metric's own aggregation of them. ``revision`` grows with
    every emission of the window; the final one has ``is_final`` and replaces
    every partial one.
    """

    tenant: str
    metric: str
    dims: Dims
    window_start: int
    window_end: int
    count: int
    sum: float
    min: float | None
    max: float | None
    value: float | None
    is_final: bool
    revision: int
    emitted_at: int = field(compare=False, default=0)
    retracted: bool = False
    """This window no longer exists (a session merged into one starting earlier):
    stores delete it unless they hold its final value."""
    sketch: bytes | None = field(compare=False, default=None)
    """Serialised DataSketches state of distinct, quantiles and top-k metrics, kept
    with the window so rollups and ``group_by`` merge sketches."""
    detail: dict[str, Any] | None = None
    """Quantiles (``{"p50": ...}``), top items (``{"top": [[item, n], ...]}``) or
    distinct-count bounds (``{"lower": ..., "upper": ...}``)."""

    @property
    def series(self) -> str:
        """The series id (see :func:`series_id`)."""
        return series_id(self.metric, self.dims)

    def to_json(self) -> bytes:
        """The record as JSON bytes, dimensions as an object."""
        data = asdict(self)
        data["dims"] = dict(self.dims)
        if self.sketch is not None:
            data["sketch"] = base64.b64encode(self.sketch).decode("ascii")
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> WindowResult:
        """Inverse of :meth:`to_json`."""
        data = orjson.loads(raw)
        data["dims"] = tuple(sorted(data["dims"].items()))
        if data.get("sketch") is not None:
            data["sketch"] = base64.b64decode(data["sketch"])
        return cls(**data)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event the flow could not use, with why and its original bytes.

    ``source`` names where the bytes came from (``kafka:topic/partition@offset``).
    ``lateness_ms`` is set for late events: how far behind the watermark.
    ``errors`` lists every broken rule (``reason``/``path`` are the first);
    ``event_id`` is the id the event had or was given at ingest, so a replay
    re-injects it under the same id.
    """

    failure_type: FailureType
    reason: str
    path: str
    raw: bytes
    source: str
    tenant: str
    received_at: int
    event_type: str | None = None
    event_ts: int | None = None
    lateness_ms: int | None = None
    errors: tuple[FieldIssue, ...] = ()
    event_id: str | None = None

    @property
    def letter_id(self) -> str:
        """A deterministic id: the same bytes from the same place for the same tenant
        are one dead letter, however often they are rejected or redelivered."""
        digest = hashlib.blake2b(digest_size=16)
        for part in (self.tenant.encode(), self.source.encode(), self.raw):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return digest.hexdigest()

    @property
    def issues(self) -> tuple[FieldIssue, ...]:
        """Every broken rule; a letter made before ``errors`` existed has its one reason."""
        return self.errors or ((self.path, self.failure_type, self.reason),)

    def to_json(self) -> bytes:
        """JSON bytes; ``raw`` is base64 so any input bytes survive."""
        data: dict[str, Any] = asdict(self)
        data["raw"] = base64.b64encode(self.raw).decode("ascii")
        data["letter_id"] = self.letter_id
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> DeadLetter:
        """Inverse of :meth:`to_json`."""
        data = orjson.loads(raw)
        data.pop("letter_id", None)
        data["raw"] = base64.b64decode(data["raw"])
        data["errors"] = tuple(tuple(issue) for issue in data.get("errors", ()))
        return cls(**data)


def latest_per_window(results: list[WindowResult]) -> list[WindowResult]:
    """Keep one emission per window: a final over any partial, else the highest revision.

    Emissions of one run only; lets a sink skip writes a later one replaces.
    """
    best: dict[tuple[str, str, Dims, int], WindowResult] = {}
    for result in results:
        key = (result.tenant, result.metric, result.dims, result.window_start)
        seen = best.get(key)
        if seen is None or (result.is_final, result.revision) >= (seen.is_final, seen.revision):
            best[key] = result
    return list(best.values())
