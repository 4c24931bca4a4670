"""``GET /v1/stream``: server-sent events of a metric's changed windows, for any client.

One ``window`` event per changed window (per series, or per group with
``group_by``), its data the window as JSON (``metric``, ``dims``,
``window_start``, ``window_end``, ``value``, ``count``, ``sum``, ``min``,
``max``, ``detail``, ``is_final``; ``retracted`` windows are gone; ``sub``
says which subscription it answers). ``metric``/``group_by``/dimension
filters make one subscription; each ``sub`` parameter (JSON
``{"metric": …, "group_by": [...] | null, "filters": {dim: [values]}}``)
adds one, so a page follows all its panels over one connection. A ``sub``
of ``{"kind": "alerts", "metrics": [...], "rules": [...], "severities": [...]}``
(each list optional; empty or absent keeps all) follows alert transitions:
one ``alert`` event per transition, its data the transition as JSON (as
``/v1/alerts/history`` rows, with ``sub``). A ``ready`` event opens the
stream; a ``reset`` event means "re-read your range" (the client fell too
far behind). The last event of each batch carries ``id:``, the stream entry
it reflects: a client reconnecting with ``Last-Event-ID`` (header, or the
``last_event_id`` parameter) gets every window changed since, exactly.
Comments (``: ping``) keep idle connections open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Annotated, get_args

import anyio
import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from riffle.api.bodies import ErrorResponse
from riffle.api.deps import ServicesDep, Spec, Tenant
from riffle.api.errors import ApiError
from riffle.api.live import AlertSubscription, Follow, LiveBatch, LiveHub, Subscription, valid_id
from riffle.api.params import DIMENSION_FILTERS
from riffle.config.alerts import Severity
from riffle.config.spec import PipelineSpec

HEARTBEAT_SECONDS = 15.0
_RESERVED = frozenset({"metric", "group_by", "last_event_id", "sub"})
MAX_SUBSCRIPTIONS = 50
_ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorResponse, "description": "A parameter is malformed or unknown."},
    404: {"model": ErrorResponse, "description": "No metric of that name."},
}

router = APIRouter(prefix="/v1", tags=["stream"])


def subscriptions(
    spec: PipelineSpec, tenant: str, request: Request, metric: str | None, group_by: str | None
) -> list[Follow]:
    """The subscriptions a stream request asks for; ``400``/``404`` for bad parameters.

    ``metric`` (with ``group_by`` and the parameters named after dimensions,
    filters as in ``/series``) is one; every ``sub`` parameter another.
    """
    subs: list[Follow] = []
    if metric is not None:
        filters: dict[str, set[str]] = {}
        for key, value in request.query_params.multi_items():
            if key not in _RESERVED:
                filters.setdefault(key, set()).add(value)
        groups = None if group_by is None else [g for g in group_by.split(",") if g]
        subs.append(subscription(spec, tenant, metric, groups, filters))
    for raw in request.query_params.getlist("sub"):
        try:
            data = orjson.loads(raw)
            if data.get("kind", "windows") == "alerts":
                subs.append(
                    alert_subscription(
                        spec,
                        tenant,
                        _strings(data.get("metrics")),
                        _strings(data.get("rules")),
                        _strings(data.get("severities")),
                    )
                )
                continue
            if data.get("kind", "windows") != "windows":
                raise ApiError(400, "invalid_sub", "a sub's kind is windows (default) or alerts")
            subs.append(
                subscription(
                    spec,
                    tenant,
                    str(data["metric"]),
                    None if data.get("group_by") is None else list(data["group_by"]),
                    {str(k): set(v) for k, v in (data.get("filters") or {}).items()},
                )
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ApiError(
                400,
                "invalid_sub",
                f'sub takes {{"metric": ..., "group_by": [...]}} or {{"kind": "alerts", ...}}: '
                f"{exc}",
            ) from exc
    if not 1 <= len(subs) <= MAX_SUBSCRIPTIONS:
        raise ApiError(
            400, "invalid_sub", f"1 to {MAX_SUBSCRIPTIONS} subscriptions (metric= or sub=)"
        )
    return subs


def _strings(raw: object) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise TypeError(f"expected a list of strings, got {raw!r}")
    return raw


def subscription(
    spec: PipelineSpec,
    tenant: str,
    metric: str,
    groups: list[str] | None,
    filters: dict[str, set[str]],
) -> Subscription:
    """A metric's windows to follow, checked against the spec (``404`` for an unknown
    metric, ``400`` for a ratio or an unknown dimension)."""
    found = spec.metric(metric)
    if found is None:
        if spec.ratio(metric) is not None:
            raise ApiError(400, "not_streamed", f"{metric!r} is a ratio: stream its parts")
        raise ApiError(404, "unknown_metric", f"no metric named {metric!r}")
    for name in [*(groups or ()), *filters]:
        if name not in found.dimensions:
            raise ApiError(400, "unknown_dimension", f"metric {metric!r} has no dimension {name!r}")
    return Subscription(
        tenant,
        metric,
        None if groups is None else tuple(groups),
        tuple(sorted((k, frozenset(v)) for k, v in filters.items())),
    )


def alert_subscription(
    spec: PipelineSpec,
    tenant: str,
    metrics: list[str],
    rules: list[str],
    severities: list[str],
) -> AlertSubscription:
    """Alert transitions to follow, checked against the spec (``404`` for an unknown
    metric, ``400`` for an unknown severity); empty lists keep all."""
    for name in metrics:
        if spec.metric(name) is None and spec.ratio(name) is None:
            raise ApiError(404, "unknown_metric", f"no metric named {name!r}")
    known = get_args(Severity)
    for severity in severities:
        if severity not in known:
            raise ApiError(
                400, "unknown_severity", f"severity is one of {', '.join(known)} (got {severity!r})"
            )
    return AlertSubscription(tenant, frozenset(metrics), frozenset(rules), frozenset(severities))


def resume_id(header: str | None, param: str | None) -> str | None:
    """The entry id to resume after (header first), ``400`` if malformed."""
    raw = header or param
    if raw is not None and not valid_id(raw):
        raise ApiError(400, "invalid_last_event_id", f"not a stream id: {raw!r}")
    return raw


class EventStreamResponse(StreamingResponse):
    """A streaming response that ends as soon as the client goes away.

    Starlette's own, under ASGI 2.4, notices a disconnect only at its next
    write: an idle stream would hold its subscription until the next
    heartbeat. This one listens for ``http.disconnect`` while it streams.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def until_done(step: Callable[[], Awaitable[None]]) -> None:
                await step()
                group.cancel_scope.cancel()

            group.start_soon(until_done, partial(self.stream_response, send))
            await until_done(partial(self.listen_for_disconnect, receive))


def sse_response(hub: LiveHub, subs: list[Follow], last_id: str | None) -> StreamingResponse:
    """The SSE response of ``subs`` from ``last_id``."""
    return EventStreamResponse(
        _events(hub, subs, last_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


SubParam = Annotated[
    list[str] | None,
    Query(
        description="More subscriptions on this connection, each a JSON object (a metric "
        "with group_by and filters, or kind alerts with metrics, rules, severities); read "
        "from the request with the dimension filters."
    ),
]
"""The ``sub`` parameter, declared so the document and the unknown-parameter check know it."""


@router.get(
    "/stream",
    operation_id="streamWindows",
    summary="Server-sent events of a metric's changed windows",
    responses=_ERRORS,
    response_class=StreamingResponse,
    openapi_extra=DIMENSION_FILTERS,
)
async def stream(
    request: Request,
    app: ServicesDep,
    spec: Spec,
    tenant: Tenant,
    metric: str | None = Query(None, description="The metric to follow."),
    group_by: str | None = Query(
        None, description="Comma-separated dimensions to merge series by; empty merges all."
    ),
    last_event_id: str | None = Query(None, description="Resume after this id (or the header)."),
    sub: SubParam = None,
    last_event_header: str | None = Header(None, alias="Last-Event-ID"),
) -> StreamingResponse:
    """Changed windows of ``metric`` (and alert transitions, with a ``sub`` of kind
    ``alerts``) for the caller's tenant, as they are written."""
    subs = subscriptions(spec, tenant, request, metric, group_by)
    return sse_response(app.live, subs, resume_id(last_event_header, last_event_id))


async def _events(hub: LiveHub, subs: list[Follow], last_id: str | None) -> AsyncIterator[bytes]:
    first = True
    async for batch in hub.subscribe(subs, last_id, heartbeat_s=HEARTBEAT_SECONDS):
        yield _encode(batch, first)
        first = False


def _encode(batch: LiveBatch, first: bool) -> bytes:
    """One batch as SSE: its events, the last one carrying the batch's id."""
    if batch.reset:
        return b"event: reset\nid: " + batch.last_id.encode() + b"\ndata: {}\n\n"
    parts = [b"event: ready\ndata: {}\n\n"] if first else []
    parts += [b"event: window\ndata: " + orjson.dumps(w) + b"\n\n" for w in batch.windows]
    parts += [b"event: alert\ndata: " + orjson.dumps(a) + b"\n\n" for a in batch.alerts]
    if not parts:
        return b": ping\n\n"
    parts[-1] = parts[-1][:-1] + b"id: " + batch.last_id.encode() + b"\n\n"
    return b"".join(parts)
