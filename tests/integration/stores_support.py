"""Helpers shared by the store and API tests: window factories and Redis cleanup."""

from __future__ import annotations

import uuid

import redis

from riffle.config.spec import Aggregation
from riffle.operators.aggregators import value_of
from riffle.operators.records import Dims, WindowResult

REDIS_URL = "redis://127.0.0.1:6379/0"
HOT_TTL_S = 3600
"""The hot TTL of the ``store`` fixture (``conftest.py``)."""
BASE_MS = 1_700_000_040_000
"""A minute-aligned epoch-ms instant tests count windows from."""


def window(
    start: int = BASE_MS,
    dims: Dims = (("country", "de"),),
    *,
    values: tuple[float, ...] = (1.0,),
    final: bool = True,
    revision: int = 1,
    metric: str = "page_views",
    aggregation: Aggregation = "count",
    tenant: str = "t1",
    size_ms: int = 60_000,
) -> WindowResult:
    """A window result whose aggregate is exactly that of ``values``."""
    count, total = len(values), float(sum(values))
    low, high = (min(values), max(values)) if values else (None, None)
    return WindowResult(
        tenant=tenant,
        metric=metric,
        dims=tuple(sorted(dims)),
        window_start=start,
        window_end=start + size_ms,
        count=count,
        sum=total,
        min=low,
        max=high,
        value=value_of(aggregation, count, total, low, high),
        is_final=final,
        revision=revision,
        emitted_at=start + size_ms,
    )


def valued(
    metric: str, dims: Dims, start: int, size_ms: int, value: float, tenant: str = "t1"
) -> WindowResult:
    """A final window whose value is ``value`` (count ``int(value)``, sum ``value``): the
    shape the model and alert tests feed series through."""
    return WindowResult(
        tenant, metric, dims, start, start + size_ms, int(value), value, None, None, value, True, 1
    )


def unique_prefix() -> str:
    """A Redis key prefix no other test run uses."""
    return f"riffle-test-{uuid.uuid4().hex[:10]}"


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    """Remove every key under ``prefix`` (tests only: SCAN is fine here)."""
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
