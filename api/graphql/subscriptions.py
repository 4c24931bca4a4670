"""GraphQL subscriptions: live windows and alert transitions, from the API's live stream.

Both iterate :meth:`api.live.LiveHub.subscribe`, the reader behind
``GET /v1/stream``, so a subscription sees what an SSE client sees: one
message per batch of changes, each change its latest value (a slow client's
backlog is coalesced per window and bounded; past the bound the next message
is a ``reset``: re-read the range with a query, then carry on). The first
message comes at once (the catch-up since ``lastId``, maybe empty, or a
``reset``); later ones only when something the subscription follows changed.
Every message carries ``lastId``: subscribing again with it as ``lastId``
resumes exactly, while the stream still reaches back that far.

Served over ``graphql-transport-ws`` only (:mod:`api.graphql.socket`); each
subscription checks the socket's key again and takes one request from its
limits.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from riffle.api.errors import ApiError
from riffle.api.graphql import types as t
from riffle.api.graphql.context import RiffleGraphQLError
from riffle.api.graphql.socket import SocketContext, admit
from riffle.api.live import Follow, LiveBatch, valid_id
from riffle.api.routes.stream import alert_subscription, subscription
from riffle.sinks.errors import SinkError

SocketInfo = Info[SocketContext, None]


@strawberry.type(description="A window's value as the flow wrote it (partial until final).")
class LiveWindow:
    metric: str
    dims: list[t.Dimension] = strawberry.field(
        description="The series' dimensions, or the group's with groupBy."
    )
    window_start_ms: t.Millis
    window_end_ms: t.Millis
    value: float | None
    count: int
    sum: float
    min: float | None
    max: float | None
    is_final: bool
    revision: int
    retracted: bool = strawberry.field(
        description="The window is gone (a session window merged into an earlier one)."
    )
    detail: JSON | None = strawberry.field(
        description="Sketched metrics: quantiles, top items or distinct bounds."
    )


@strawberry.type(description="Windows that changed since the previous message.")
class WindowBatch:
    last_id: str = strawberry.field(description="Subscribe with this as lastId to resume here.")
    reset: bool = strawberry.field(
        description="You fell too far behind (or lastId is past the stream's reach): re-read "
        "your range with a query, then carry on; windows is empty."
    )
    windows: list[LiveWindow]


@strawberry.type(description="Alert transitions made since the previous message, in order.")
class AlertBatch:
    last_id: str = strawberry.field(description="Subscribe with this as lastId to resume here.")
    reset: bool = strawberry.field(
        description="You fell too far behind (or lastId is past the stream's reach): re-read "
        "alertHistory, then carry on; transitions is empty."
    )
    transitions: list[t.AlertTransition]


async def _windows(
    info: SocketInfo,
    metric: str,
    group_by: list[str] | None = None,
    filters: list[t.DimensionFilter] | None = None,
    last_id: str | None = None,
) -> AsyncGenerator[WindowBatch, None]:
    ctx = info.context

    def follow() -> Follow:
        chosen: dict[str, set[str]] = {}
        for f in filters or []:
            chosen.setdefault(f.dimension, set()).update(f.values)
        groups = None if group_by is None else list(dict.fromkeys(group_by))
        return subscription(ctx.app.spec, ctx.tenant, metric, groups, chosen)

    async for batch in _batches(ctx, follow, last_id):
        yield WindowBatch(
            last_id=batch.last_id,
            reset=batch.reset,
            windows=[_window(w) for w in batch.windows],
        )


async def _alert_transitions(
    info: SocketInfo,
    metrics: list[str] | None = None,
    rules: list[str] | None = None,
    severities: list[str] | None = None,
    last_id: str | None = None,
) -> AsyncGenerator[AlertBatch, None]:
    ctx = info.context

    def follow() -> Follow:
        return alert_subscription(
            ctx.app.spec, ctx.tenant, metrics or [], rules or [], severities or []
        )

    async for batch in _batches(ctx, follow, last_id):
        yield AlertBatch(
            last_id=batch.last_id,
            reset=batch.reset,
            transitions=[t.alert_transition(a) for a in batch.alerts],
        )


@strawberry.type
class Subscription:
    windows = strawberry.subscription(
        resolver=_windows,
        description="A metric's windows as the flow writes them: per series, or with "
        "`groupBy` (empty: everything merged) per group, recomputed as `series` would; "
        "`filters` as in `series`. The same stream as GET /v1/stream.",
    )
    alert_transitions = strawberry.subscription(
        resolver=_alert_transitions,
        description="Alert transitions as the flow makes them, of the given `metrics`, "
        "`rules` and `severities` (each: any when absent). The same stream as "
        "GET /v1/stream with a sub of kind alerts.",
    )


async def _batches(
    ctx: SocketContext, follow: Callable[[], Follow], last_id: str | None
) -> AsyncIterator[LiveBatch]:
    """The hub's batches for ``follow()``: the first, then those with something in them."""
    try:
        ctx.caller = await admit(ctx, ctx.token)
        sub = follow()
    except ApiError as exc:
        raise RiffleGraphQLError(exc.message, exc.code, exc.status) from None
    except SinkError as exc:
        raise RiffleGraphQLError(str(exc), "store_unavailable", 503) from None
    if last_id is not None and not valid_id(last_id):
        raise RiffleGraphQLError(f"not a stream id: {last_id!r}", "invalid_last_id", 400)
    first = True
    async for batch in ctx.app.live.subscribe([sub], last_id):
        if first or batch.reset or batch.windows or batch.alerts:
            yield batch
        first = False


def _window(raw: dict[str, Any]) -> LiveWindow:
    return LiveWindow(
        metric=raw["metric"],
        dims=t.dimensions(raw["dims"]),
        window_start_ms=raw["window_start"],
        window_end_ms=raw["window_end"],
        value=raw["value"],
        count=raw["count"],
        sum=raw["sum"],
        min=raw["min"],
        max=raw["max"],
        is_final=raw["is_final"],
        revision=raw["revision"],
        retracted=raw["retracted"],
        detail=raw["detail"],
    )
