"""``/v1/shared``: what a share link may read, with the token in ``X-Share-Token``.

The shared dashboard itself, and the ``/query``, ``/top`` and ``/stream``
reads of the metrics its panels use (``403`` for any other metric), always
over the share's time range (a ``start``/``end`` sent is ignored), for the
share's tenant only. An expired, revoked or forged token is ``401``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from riffle.api.bodies import ErrorResponse, MetricOut, RatioOut
from riffle.api.deps import ServicesDep, Spec
from riffle.api.errors import ApiError
from riffle.api.live import Subscription
from riffle.api.params import DIMENSION_FILTERS
from riffle.api.routes import query as query_routes
from riffle.api.routes.stream import SubParam, resume_id, sse_response, subscriptions
from riffle.api.share import SharedView

_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorResponse, "description": "Missing, forged, expired or revoked token."},
    403: {"model": ErrorResponse, "description": "The metric is not on the shared dashboard."},
}

router = APIRouter(prefix="/v1/shared", tags=["shared"])


@router.get("/dashboard", operation_id="getSharedDashboard", responses=_ERRORS)
def shared_dashboard(view: SharedView, spec: Spec) -> dict[str, Any]:
    """The shared dashboard, with the share's time range and expiry."""
    share = view.share
    document = view.dashboard.model_dump(mode="json")
    document["time"] = {"start": share.start, "end": share.end}
    metrics: dict[str, Any] = {}
    for name in sorted(view.dashboard.metrics()):
        metric = spec.metric(name)
        ratio = spec.ratio(name)
        if metric is not None:
            metrics[name] = MetricOut.of(metric).model_dump(mode="json")
        elif ratio is not None:
            metrics[name] = {**RatioOut.of(ratio).model_dump(mode="json"), "window_seconds": 60}
    return {
        "dashboard": document,
        "metrics": metrics,
        "expires_at": share.expires_at,
        "tenant": share.tenant,
    }


def _ignored() -> Any:
    """``start``/``end``: accepted (the page sends its range) and ignored."""
    return Query(None, description="Ignored: the share's own range applies.")


@router.get(
    "/metrics/{name}/query",
    operation_id="querySharedMetric",
    responses=_ERRORS,
    openapi_extra=DIMENSION_FILTERS,
)
def shared_query(
    name: str,
    request: Request,
    app: ServicesDep,
    spec: Spec,
    view: SharedView,
    start: str | None = _ignored(),
    end: str | None = _ignored(),
    step: str | None = Query(None),
    by: str | None = Query(None),
    compare: str | None = Query(None),
) -> Response:
    """``/v1/metrics/{name}/query`` over the share's range."""
    view.check_metric(name)
    share = view.share
    return query_routes.get_query(
        name, request, app, spec, view.tenant, share.start, share.end, step, by, compare
    )


@router.get(
    "/metrics/{name}/top",
    operation_id="topSharedMetric",
    responses=_ERRORS,
    openapi_extra=DIMENSION_FILTERS,
)
def shared_top(
    name: str,
    request: Request,
    app: ServicesDep,
    spec: Spec,
    view: SharedView,
    by: str = Query(),
    start: str | None = _ignored(),
    end: str | None = _ignored(),
    limit: int = Query(10),
    compare: str | None = Query(None),
) -> Response:
    """``/v1/metrics/{name}/top`` over the share's range."""
    view.check_metric(name)
    share = view.share
    return query_routes.get_top(
        name, request, app, spec, view.tenant, by, share.start, share.end, limit, compare
    )


@router.get(
    "/stream",
    operation_id="streamShared",
    responses=_ERRORS,
    response_class=StreamingResponse,
    openapi_extra=DIMENSION_FILTERS,
)
async def shared_stream(
    request: Request,
    app: ServicesDep,
    spec: Spec,
    view: SharedView,
    metric: str | None = Query(None),
    group_by: str | None = Query(None),
    last_event_id: str | None = Query(None),
    sub: SubParam = None,
    last_event_header: str | None = Header(None, alias="Last-Event-ID"),
) -> StreamingResponse:
    """``/v1/stream`` of a metric of the shared dashboard (windows only: no alerts)."""
    subs = subscriptions(spec, view.tenant, request, metric, group_by)
    for follow in subs:
        if not isinstance(follow, Subscription):
            raise ApiError(403, "not_shared", "alert transitions are not shared")
        view.check_metric(follow.metric)
    return sse_response(app.live, subs, resume_id(last_event_header, last_event_id))
