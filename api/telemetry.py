"""Request metrics and access logs for every HTTP request.

``riffle_api_requests_total`` and ``riffle_api_request_duration_seconds`` are
labelled by method, route template (``/v1/metrics/{name}/series``, never the
raw path, so label values stay few) and status. Requests that match no route
are labelled ``route="<unmatched>"``.
"""

from __future__ import annotations

import time

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)

UNMATCHED = "<unmatched>"


class RequestTelemetry:
    """ASGI middleware counting, timing and logging requests into ``registry``.

    The metrics are registered on ``registry`` when the middleware is built,
    so one registry serves one app.
    """

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self._app = app
        labels = ("method", "route", "status")
        self._requests = Counter(
            "riffle_api_requests", "HTTP requests served.", labels, registry=registry
        )
        self._duration = Histogram(
            "riffle_api_request_duration_seconds",
            "Time to serve an HTTP request.",
            labels,
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, record_status)
        finally:
            elapsed = time.perf_counter() - began
            route = _route_template(scope)
            labels = (scope["method"], route, str(status))
            self._requests.labels(*labels).inc()
            self._duration.labels(*labels).observe(elapsed)
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )


def _route_template(scope: Scope) -> str:
    """The path template of the route that served ``scope``.

    FastAPI records its API routes in ``scope["route"]``; plain Starlette
    routes (``/docs``, ``/openapi.json``) are found by matching the app's routes.
    """
    route = scope.get("route")
    if route is None:
        routes = getattr(scope.get("app"), "routes", ())
        route = next((r for r in routes if r.matches(scope)[0] is Match.FULL), None)
    return str(getattr(route, "path", UNMATCHED))
