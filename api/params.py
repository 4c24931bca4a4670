"""Query parameters shared by routes; unknown ones are refused, so a misspelt filter never
silently does nothing.

:func:`known_query_params` runs before every route (an app-wide dependency):
a query parameter the route does not declare is a ``400 unknown_parameter``
naming it and the ones the route accepts. Routes that take one parameter per
dimension of a metric (``series``, ``query``, ``top``) declare
``DIMENSION_FILTERS`` and check those names against the metric themselves.
``Source`` is the store choice of the model-results routes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

from riffle.api.errors import ApiError

DIMENSION_FILTERS: dict[str, Any] = {"x-riffle-dimension-filters": True}
"""``openapi_extra`` of a route whose other query parameters name dimensions."""


_ACCEPTED: dict[int, tuple[APIRoute, tuple[str, ...]]] = {}
"""``id(route) -> (route, its names)``: routes are not hashable; keeping the route
makes its id unique for as long as the entry lives."""


def accepted_params(route: APIRoute) -> tuple[str, ...]:
    """The query parameter names ``route`` declares (its dependencies' included); found
    once per route."""
    kept = _ACCEPTED.get(id(route))
    if kept is None or kept[0] is not route:
        kept = _ACCEPTED[id(route)] = (route, _declared(route))
    return kept[1]


def _declared(route: APIRoute) -> tuple[str, ...]:
    names: set[str] = set()
    pending: list[Dependant] = [route.dependant]
    while pending:
        current = pending.pop()
        names.update(p.alias for p in current.query_params)
        pending.extend(current.dependencies)
    return tuple(sorted(names))


async def known_query_params(request: HTTPConnection) -> None:
    """Refuse (400) a query parameter the matched HTTP route of the API document does not
    declare. Websocket routes carry their parameters in their own protocol; the pages
    (``/ui/``, ``/docs``: routes outside the document) leave theirs to the page's script.

    ``async`` (it does no I/O) so that every request does not pay a worker-thread hop."""
    route = request.scope.get("route")
    if (
        not isinstance(route, APIRoute)
        or not route.include_in_schema
        or (route.openapi_extra or {}).get("x-riffle-dimension-filters")
    ):
        return
    accepted = accepted_params(route)
    unknown = sorted({name for name in request.query_params if name not in accepted})
    if unknown:
        known = ", ".join(accepted) or "none"
        raise ApiError(
            400,
            "unknown_parameter",
            f"unknown query parameter(s) {', '.join(map(repr, unknown))}; "
            f"this route accepts: {known}",
        )


Source = Annotated[
    Literal["auto", "hot", "warehouse"],
    Query(
        description="hot: Redis (recent results only); warehouse: the warehouse (DuckDB or "
        "BigQuery); auto: Redis when it can answer, else the warehouse."
    ),
]
"""Which store a model-results route reads."""
