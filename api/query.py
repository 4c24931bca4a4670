"""The query engine behind ``/top`` and ``/query``: hot and cold rollups, merged exactly.

Redis answers windows from ``max(start, now - hot horizon)`` on; the
warehouse answers everything before the first window Redis returned (or the
whole range when Redis has none). The two spans do not overlap and leave no
gap, so every window is counted once, and a bucket straddling the boundary
is the exact merge of its two halves. The warehouse aggregates its span in
SQL (:meth:`~sinks.warehouse.base.Warehouse.rollup`); Redis windows are
rolled up here (:mod:`api.rollup`). Both reads filter by tenant in the
query itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from riffle.api.rollup import Grid, add_rows, add_stored, add_windows
from riffle.operators.calendar import Calendar
from riffle.operators.sketches import SketchSpec
from riffle.sinks.redis.windows import START, RedisWindowStore
from riffle.sinks.warehouse.base import Filters, Warehouse

STEPS: dict[str, int] = {"1m": 60_000, "1h": 3_600_000, "1d": 86_400_000}
"""The resolutions ``step`` accepts."""


def rollup_grid(
    hot: RedisWindowStore,
    cold: Warehouse,
    *,
    tenant: str,
    metric: str,
    start_ms: int,
    end_ms: int,
    step_ms: int | None,
    by: Sequence[str],
    filters: Filters | None,
    hot_boundary_ms: int,
    sketch: SketchSpec | None = None,
    zone: str = "UTC",
) -> Grid:
    """Buckets of windows starting in ``[start_ms, end_ms)`` per ``by`` group (see module doc).

    Buckets of ``step_ms`` follow the local clock of ``zone`` (DST-correct
    hours and days, :mod:`operators.calendar`) in both stores.
    """
    calendar = None if zone == "UTC" else Calendar.of(zone, start_ms, end_ms)
    hot_from = max(start_ms, hot_boundary_ms)
    recent = hot.read_stored(tenant, metric, hot_from, end_ms, filters) if hot_from < end_ms else []
    first = min((windows[0][START] for _, windows in recent), default=None)
    split = end_ms if first is None else first
    grid: Grid = {}
    if split > start_ms and sketch is not None:  # SQL cannot merge sketches: merge here
        older = cold.read_series(tenant, metric, start_ms, split, filters)
        add_windows(grid, older, by, start_ms, step_ms, sketch, calendar)
    elif split > start_ms:
        rows = cold.rollup(
            tenant, metric, start_ms, split, step_ms=step_ms, by=list(by), filters=filters,
            zone=zone,
        )  # fmt: skip
        add_rows(grid, rows)
    add_stored(grid, recent, by, start_ms, step_ms, sketch, calendar)
    return grid
