"""What every warehouse engine offers: the :class:`Warehouse` protocol and its records.

Two engines implement it, :class:`sinks.warehouse.duckdb.DuckDBWarehouse` (embedded,
the default) and :class:`sinks.warehouse.bigquery.BigQueryWarehouse`;
:func:`sinks.warehouse.engines.open_warehouse` picks one from the settings. Callers
(the dataflow's sink, the API) hold a ``Warehouse`` and never ask which.

Every read of windows takes the tenant and puts it in the query's ``WHERE``
clause: no engine method returns rows of another tenant. The generic
:meth:`Warehouse.upsert` and :meth:`Warehouse.select` serve the other tables
(:mod:`sinks.warehouse.tables`); their callers (the stores) put the tenant in
:attr:`~sinks.warehouse.query.Select.where` the same way.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from riffle.operators.records import Dims, WindowResult
from riffle.sinks.warehouse.query import Select
from riffle.sinks.warehouse.tables import TableDef

Filters = Mapping[str, Collection[str]]
"""Dimension -> allowed values: OR within a dimension, AND across dimensions."""

_DIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")

LIMIT_MS = 253_402_300_799_999
"""Bounds are clamped to the end of year 9999, inside both engines' TIMESTAMP range."""


def clamp_ms(epoch_ms: int) -> int:
    """``epoch_ms`` clamped into the range both engines' TIMESTAMPs hold."""
    return max(-LIMIT_MS, min(LIMIT_MS, epoch_ms))


def dim_path(name: str) -> str:
    """The JSON path of dimension ``name`` inside ``dims``; refuses names that need quoting.

    The path is spliced into SQL (BigQuery wants a literal JSON path), so the
    name is checked against a strict pattern first.
    """
    if not _DIM_NAME.fullmatch(name):
        raise ValueError(f"dimension name {name!r} is not usable in a query")
    return f'$."{name}"'


@dataclass(frozen=True, slots=True)
class RollupRow:
    """Windows of one group merged over one bucket of time.

    ``dims`` holds the grouping dimensions only (a missing dimension reads
    as ``""``); ``bucket`` is the bucket start in epoch ms; ``windows`` counts
    the windows merged. count, sum, min and max merge exactly; sketch states
    (distinct counts, quantiles) join here as further fields with their own
    merge (see :mod:`api.rollup`).
    """

    dims: Dims
    bucket: int
    count: int
    sum: float
    min: float | None
    max: float | None
    windows: int


class Warehouse(Protocol):
    """The complete history of final windows, and aggregates over it."""

    @property
    def url(self) -> str:
        """Where the data lives, credentials left out (for logs and ``riffle warehouse``)."""
        ...

    def init(self) -> None:
        """Create missing tables and views, add missing columns, set partition
        expiration to the retention; idempotent."""
        ...

    def upsert(self, table: TableDef, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write rows of ``table`` (TIMESTAMPs as epoch ms); readers see per key the row
        ``table.keep`` prefers, however often each was written.

        Creates the table if needed. Throttling, 5xx and I/O failures are a
        :class:`~sinks.errors.TransientSinkError` (retry the same rows);
        anything else a :class:`~sinks.errors.SinkError`.
        """
        ...

    def select(self, query: Select) -> list[dict[str, Any]]:
        """Rows of ``query`` as dicts (TIMESTAMPs as epoch ms); a table never written is empty."""
        ...

    def compact(self, min_age_ms: int) -> dict[str, int]:
        """Delete stored rows that readers can no longer see (a better row of the same key
        exists) and that were written at least ``min_age_ms`` ago; rows removed per table.

        Safe while writers run and idempotent: what readers see does not change.
        """
        ...

    def expire(self, now_ms: int) -> dict[str, int]:
        """Apply the retention to engines that do not expire partitions themselves.

        Deletes rows whose partition column is before
        :func:`~sinks.warehouse.query.expiry_cutoff_ms` (BigQuery's partition
        expiration rule); rows removed per table. Without a retention, nothing.
        """
        ...

    def upsert_windows(self, finals: Sequence[WindowResult]) -> None:
        """Write final windows so that readers see one row per key, the last write winning.

        Safe to repeat: writing the same batch twice (a retry, a replay) leaves
        what readers see unchanged. Partials are a ``ValueError``.
        """
        ...

    def read_series(
        self,
        tenant: str,
        metric: str,
        start_ms: int,
        end_ms: int,
        filters: Filters | None = None,
    ) -> list[tuple[Dims, list[WindowResult]]]:
        """Windows starting in ``[start_ms, end_ms)``, per series sorted by dims, then start."""
        ...

    def rollup(
        self,
        tenant: str,
        metric: str,
        start_ms: int,
        end_ms: int,
        *,
        step_ms: int | None,
        by: Sequence[str],
        filters: Filters | None = None,
        zone: str = "UTC",
    ) -> list[RollupRow]:
        """Windows starting in ``[start_ms, end_ms)`` merged per ``by`` values and bucket.

        Buckets are ``step_ms`` long and aligned to the epoch (UTC); with
        ``step_ms=None`` the whole range is one bucket starting at ``start_ms``.
        With another ``zone`` they are its local hours or days
        (:class:`operators.calendar.Calendar`), ``bucket`` their UTC start.
        The aggregation runs inside the engine.
        """
        ...

    def purge_before(self, tenant: str | None, before_ms: int) -> int:
        """Delete windows starting before ``before_ms`` (one tenant or all); rows removed."""
        ...

    def ping(self) -> None:
        """Return if the warehouse answers; raise :class:`~sinks.errors.SinkError` if not."""
        ...


def bucket_of(window_start: int, start_ms: int, step_ms: int | None) -> int:
    """The bucket a window starting at ``window_start`` belongs to (see ``rollup``)."""
    if step_ms is None:
        return start_ms
    return window_start - window_start % step_ms


def window_rows(finals: Sequence[WindowResult], now_ms: int) -> list[dict[str, Any]]:
    """Final windows as rows of ``metric_windows`` written at ``now_ms`` (the last per key).

    A partial is a ``ValueError``: the warehouse keeps finals only.
    """
    rows: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for r in finals:
        if not r.is_final:
            raise ValueError(
                f"the warehouse keeps finals only; got a partial of {r.metric} at {r.window_start}"
            )
        rows[r.tenant, r.metric, r.series, r.window_start] = {
            "tenant": r.tenant,
            "metric": r.metric,
            "series_id": r.series,
            "dims": orjson.dumps(dict(r.dims)).decode(),
            "window_start": r.window_start,
            "window_end": r.window_end,
            "value": r.value,
            "count": r.count,
            "sum": r.sum,
            "min": r.min,
            "max": r.max,
            "revision": r.revision,
            "is_final": True,
            "updated_at": now_ms,
            "sketch": r.sketch,
            "detail": None if r.detail is None else orjson.dumps(r.detail).decode(),
        }
    return list(rows.values())
