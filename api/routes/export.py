"""Exports of a dashboard: each panel as PNG, SVG or CSV, the whole dashboard as PDF.

``GET /v1/dashboards/{id}/panels/{panel}/export.{png|svg|csv}`` and
``GET /v1/dashboards/{id}/export.pdf`` (scope ``read``), over ``start`` /
``end`` (default the dashboard's range); parameters named after dimensions
filter, as the page's variables do. CSV comes from the query engine
directly; PNG, SVG and PDF are drawn by the page itself in headless
Chromium (:mod:`api.render`), loaded through a share link that lives two
minutes and is revoked when the render ends.
"""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Query, Request, Response

from riffle.api.bodies import ErrorResponse
from riffle.api.deps import DashboardId, Dashboards, PanelId, ReadKey, ServicesDep, Shares, Spec
from riffle.api.errors import ApiError
from riffle.api.render import RenderUnavailableError
from riffle.api.routes import query as query_routes
from riffle.api.share import sign
from riffle.config.dashboards import Dashboard, Panel

RENDER_SHARE_SECONDS = 120
_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "No such dashboard or panel."},
    503: {"model": ErrorResponse, "description": "No browser to render with."},
}
_MEDIA = {"png": "image/png", "svg": "image/svg+xml", "csv": "text/csv; charset=utf-8"}


def _file(description: str, *media: str) -> dict[int | str, dict[str, object]]:
    """``_ERRORS`` with a ``200`` of ``media`` (a file, not JSON)."""
    content = {m.split(";")[0]: {"schema": {"type": "string", "format": "binary"}} for m in media}
    return {200: {"description": description, "content": content}, **_ERRORS}


router = APIRouter(prefix="/v1/dashboards", tags=["export"])


@router.get(
    "/{dashboard_id}/panels/{panel_id}/export.{fmt}",
    operation_id="exportPanel",
    summary="One panel as PNG, SVG or CSV",
    response_class=Response,
    responses=_file("The panel's file.", *_MEDIA.values()),
)
def export_panel(
    dashboard_id: DashboardId,
    panel_id: PanelId,
    fmt: str,
    request: Request,
    caller: ReadKey,
    app: ServicesDep,
    spec: Spec,
    store: Dashboards,
    shares: Shares,
    start: str | None = Query(None, description="Default: the dashboard's start."),
    end: str | None = Query(None, description="Default: the dashboard's end."),
    theme: str = Query("light", pattern="^(light|dark)$"),
) -> Response:
    """The panel drawn (PNG, SVG) or its numbers (CSV), over ``[start, end)``."""
    if fmt not in _MEDIA:
        raise ApiError(404, "unknown_format", f"export.{fmt}: use png, svg or csv")
    dashboard, panel = _panel(store, caller.tenant, dashboard_id, panel_id)
    begin, finish = start or dashboard.time.start, end or dashboard.time.end
    headers = {"Content-Disposition": f'attachment; filename="{dashboard_id}-{panel_id}.{fmt}"'}
    if fmt == "csv":
        body = _csv(request, app, spec, caller.tenant, panel, begin, finish)
        return Response(body, media_type=_MEDIA[fmt], headers=headers)
    share = shares.create(
        caller.tenant,
        dashboard_id,
        begin,
        finish,
        RENDER_SHARE_SECONDS,
        f"export:{caller.key.prefix}",
    )
    try:
        token = sign(app.settings.share_secret.get_secret_value(), share)
        url = f"{_base(request)}/ui/shared?panel={panel_id}"
        image = app.renderer.panel(url, token, fmt, panel.layout.h, theme=theme)
    except RenderUnavailableError as exc:
        raise ApiError(503, "render_unavailable", str(exc)) from exc
    finally:
        shares.revoke(caller.tenant, dashboard_id, share.id)
    return Response(image, media_type=_MEDIA[fmt], headers=headers)


@router.get(
    "/{dashboard_id}/export.pdf",
    operation_id="exportDashboardPdf",
    summary="The whole dashboard as PDF",
    response_class=Response,
    responses=_file("The dashboard's pages.", "application/pdf"),
)
def export_pdf(
    dashboard_id: DashboardId,
    request: Request,
    caller: ReadKey,
    app: ServicesDep,
    store: Dashboards,
    shares: Shares,
    start: str | None = Query(None),
    end: str | None = Query(None),
) -> Response:
    """Every panel on landscape A4 pages, charts as vectors, over ``[start, end)``."""
    stored = store.get(caller.tenant, dashboard_id)
    if stored is None:
        raise ApiError(404, "unknown_dashboard", f"no dashboard {dashboard_id!r}")
    dashboard = stored.dashboard
    share = shares.create(
        caller.tenant,
        dashboard_id,
        start or dashboard.time.start,
        end or dashboard.time.end,
        RENDER_SHARE_SECONDS,
        f"export:{caller.key.prefix}",
    )
    try:
        token = sign(app.settings.share_secret.get_secret_value(), share)
        pdf = app.renderer.dashboard_pdf(f"{_base(request)}/ui/shared?print=1", token)
    except RenderUnavailableError as exc:
        raise ApiError(503, "render_unavailable", str(exc)) from exc
    finally:
        shares.revoke(caller.tenant, dashboard_id, share.id)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{dashboard_id}.pdf"'},
    )


def _panel(store: Any, tenant: str, dashboard_id: str, panel_id: str) -> tuple[Dashboard, Panel]:
    stored = store.get(tenant, dashboard_id)
    if stored is None:
        raise ApiError(404, "unknown_dashboard", f"no dashboard {dashboard_id!r}")
    panel = stored.dashboard.panel(panel_id)
    if panel is None:
        raise ApiError(
            404, "unknown_panel", f"dashboard {dashboard_id!r} has no panel {panel_id!r}"
        )
    return stored.dashboard, panel


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def panel_result(
    request: Request, app: Any, spec: Any, tenant: str, panel: Panel, start: str, end: str
) -> dict[str, Any]:
    """The panel's query answered by the query engine (as ``/query`` or ``/top`` would),
    with the panel's filters and the request's dimension parameters."""
    q = panel.query
    params: list[tuple[str, str]] = [
        (k, v) for k, v in request.query_params.multi_items() if k not in ("start", "end", "theme")
    ]
    params += [(dim, value) for dim, values in q.filters.items() for value in values]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [],
        "query_string": urlencode(params).encode(),
    }
    inner = Request(scope)
    if q.kind == "top":
        response = query_routes.get_top(
            q.metric, inner, app, spec, tenant, q.by[0], start, end, q.limit or 10, q.compare
        )
    else:
        by = ",".join(q.by) or None
        response = query_routes.get_query(
            q.metric, inner, app, spec, tenant, start, end, q.step, by, q.compare
        )
    return dict(orjson.loads(bytes(response.body)))


def _csv(
    request: Request, app: Any, spec: Any, tenant: str, panel: Panel, start: str, end: str
) -> str:
    result = panel_result(request, app, spec, tenant, panel, start, end)
    out = io.StringIO()
    writer = csv.writer(out)
    if panel.query.kind == "top":
        by = result["by"]
        writer.writerow([by, "value", "count", "previous", "delta"])
        for item in result["items"]:
            writer.writerow(
                [item[by], item["value"], item["count"], item.get("previous"), item.get("delta")]
            )
        return out.getvalue()
    dims = panel.query.by
    writer.writerow(["start", *dims, "value", "count", "sum", "min", "max", "partial"])
    for group in result["groups"]:
        for point in group["points"]:
            writer.writerow(
                [point["start"], *(group["dims"].get(d, "") for d in dims), point["value"],
                 point["count"], point["sum"], point["min"], point["max"], point["partial"]]
            )  # fmt: skip
    return out.getvalue()
