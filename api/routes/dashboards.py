"""``/v1/dashboards``: dashboards as versioned documents, and their share links.

Reading needs scope ``read``; creating, saving, deleting and sharing need
``admin``. Every save adds a version; ``PUT`` and ``DELETE`` name the
version they edit with ``If-Match: "<version>"`` (``412`` when another save
came first) or ``?version=`` (``409``); the current version is the
response's ``ETag``. A document must fit the pipeline spec (``422`` names
each unknown metric or dimension). ``GET …/export`` is the document as a
JSON file, which ``POST /v1/dashboards`` imports.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from riffle.api.bodies import ErrorResponse
from riffle.api.deps import (
    AdminKey,
    DashboardId,
    Dashboards,
    ReadKey,
    ServicesDep,
    Shares,
    Spec,
)
from riffle.api.errors import ApiError
from riffle.api.share import sign
from riffle.config.dashboards import ID_PATTERN, Dashboard, TimeRange, check_dashboard
from riffle.config.durations import parse_duration
from riffle.config.spec import PipelineSpec
from riffle.sinks.warehouse.dashboards import StoredDashboard, VersionConflictError

MAX_SHARE_SECONDS = 366 * 86_400
_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "No dashboard of that id."},
    409: {"model": ErrorResponse, "description": "`version` is not the current version."},
    412: {"model": ErrorResponse, "description": "`If-Match` is not the current version."},
    422: {"model": ErrorResponse, "description": "The document does not fit the spec."},
    428: {"model": ErrorResponse, "description": "Neither If-Match nor version was sent."},
}

MAX_VERSION = 2**53
"""The largest version a request may name (the warehouse column is INT64)."""

router = APIRouter(prefix="/v1/dashboards", tags=["dashboards"])


class ShareRequest(BaseModel):
    """A share link to create: the time range it shows and how long it lives."""

    model_config = ConfigDict(extra="forbid")
    time: TimeRange | None = Field(None, description="Default: the dashboard's own range.")
    expires_in: str = Field("7d", description="Lifetime (`1h`, `7d`); at most 366 days.")


def body_of(stored: StoredDashboard) -> dict[str, Any]:
    """A stored version as a response body."""
    return {**stored.summary(), "dashboard": stored.dashboard.model_dump(mode="json")}


def checked(spec: PipelineSpec, dashboard: Dashboard) -> Dashboard:
    """``dashboard`` if it fits ``spec``; ``422`` listing what does not."""
    problems = check_dashboard(dashboard, spec)
    if problems:
        raise ApiError(422, "invalid_dashboard", "; ".join(problems))
    return dashboard


def _tagged(stored: StoredDashboard, status: int = 200) -> JSONResponse:
    return JSONResponse(body_of(stored), status, headers={"ETag": f'"{stored.version}"'})


def _expected(if_match: str | None, version: int | None) -> tuple[int, int]:
    """The version a write edits and the status of a mismatch (412 If-Match, 409 version)."""
    if if_match is not None:
        raw = if_match.strip().removeprefix("W/").strip('"')
        if not (raw.isascii() and raw.isdigit() and 0 < int(raw) <= MAX_VERSION):
            raise ApiError(
                400, "invalid_if_match", f'If-Match takes "<version>" (got {if_match!r})'
            )
        return int(raw), 412
    if version is not None:
        return version, 409
    raise ApiError(428, "version_required", 'send If-Match: "<version>" or ?version=<version>')


def _conflict(exc: VersionConflictError, status: int) -> ApiError:
    return ApiError(status, "version_conflict", str(exc))


@router.get("", operation_id="listDashboards", summary="The tenant's dashboards")
def list_dashboards(caller: ReadKey, store: Dashboards) -> dict[str, Any]:
    """Every dashboard's id, title, current version, author and update time."""
    return {"dashboards": [d.summary() for d in store.current(caller.tenant)]}


@router.post(
    "",
    operation_id="createDashboard",
    summary="Create (or import) a dashboard",
    status_code=201,
    responses=_ERRORS,
)
def create_dashboard(
    dashboard: Dashboard, caller: AdminKey, store: Dashboards, spec: Spec
) -> JSONResponse:
    """Store a new dashboard as version 1 (``409`` if its id exists)."""
    try:
        stored = store.save(caller.tenant, checked(spec, dashboard), None, caller.key.prefix)
    except VersionConflictError as exc:
        raise ApiError(409, "dashboard_exists", f"dashboard {dashboard.id!r} exists") from exc
    return _tagged(stored, 201)


@router.get(
    "/{dashboard_id}", operation_id="getDashboard", summary="One dashboard", responses=_ERRORS
)
def get_dashboard(
    dashboard_id: DashboardId,
    caller: ReadKey,
    store: Dashboards,
    version: int | None = Query(
        None, ge=1, le=MAX_VERSION, description="An older version (default: the current)."
    ),
) -> JSONResponse:
    """The current (or a given) version of the dashboard, its version in ``ETag``."""
    stored = store.get(caller.tenant, dashboard_id, version)
    if stored is None:
        raise ApiError(404, "unknown_dashboard", f"no dashboard {dashboard_id!r}")
    return _tagged(stored)


@router.put(
    "/{dashboard_id}", operation_id="saveDashboard", summary="Save a dashboard", responses=_ERRORS
)
def save_dashboard(
    dashboard_id: DashboardId,
    dashboard: Dashboard,
    caller: AdminKey,
    store: Dashboards,
    spec: Spec,
    if_match: str | None = Header(None, alias="If-Match"),
    version: int | None = Query(
        None, ge=1, le=MAX_VERSION, description="The version this save edits."
    ),
) -> JSONResponse:
    """Store ``dashboard`` as the version after the one named (``If-Match`` or ``version``)."""
    if dashboard.id != dashboard_id:
        raise ApiError(400, "id_mismatch", f"the document's id is {dashboard.id!r}")
    expected, status = _expected(if_match, version)
    try:
        stored = store.save(caller.tenant, checked(spec, dashboard), expected, caller.key.prefix)
    except VersionConflictError as exc:
        if exc.current is None:
            raise ApiError(404, "unknown_dashboard", f"no dashboard {dashboard_id!r}") from exc
        raise _conflict(exc, status) from exc
    return _tagged(stored)


@router.delete(
    "/{dashboard_id}",
    operation_id="deleteDashboard",
    summary="Delete a dashboard",
    status_code=204,
    responses=_ERRORS,
)
def delete_dashboard(
    dashboard_id: Annotated[str, Path(pattern=ID_PATTERN, examples=["retired"])],
    caller: AdminKey,
    store: Dashboards,
    if_match: str | None = Header(None, alias="If-Match"),
) -> Response:
    """Mark the dashboard deleted (its versions stay); ``If-Match`` optional."""
    expected = None if if_match is None else _expected(if_match, None)[0]
    try:
        store.delete(caller.tenant, dashboard_id, expected, caller.key.prefix)
    except VersionConflictError as exc:
        if exc.current is None:
            raise ApiError(404, "unknown_dashboard", f"no dashboard {dashboard_id!r}") from exc
        raise _conflict(exc, 412) from exc
    return Response(status_code=204)


@router.get(
    "/{dashboard_id}/versions",
    operation_id="listDashboardVersions",
    summary="A dashboard's history",
    responses=_ERRORS,
)
def list_versions(dashboard_id: DashboardId, caller: ReadKey, store: Dashboards) -> dict[str, Any]:
    """Every version, newest first: number, author, time, title, whether it deleted."""
    versions = store.versions(caller.tenant, dashboard_id)
    if not versions:
        raise ApiError(404, "unknown_dashboard", f"no dashboard {dashboard_id!r}")
    return {"id": dashboard_id, "versions": versions}


@router.get(
    "/{dashboard_id}/export",
    operation_id="exportDashboard",
    summary="The dashboard document as a JSON file",
    responses=_ERRORS,
)
def export_dashboard(dashboard_id: DashboardId, caller: ReadKey, store: Dashboards) -> JSONResponse:
    """The document alone (importable with ``POST /v1/dashboards``)."""
    stored = store.get(caller.tenant, dashboard_id)
    if stored is None:
        raise ApiError(404, "unknown_dashboard", f"no dashboard {dashboard_id!r}")
    return JSONResponse(
        stored.dashboard.model_dump(mode="json"),
        headers={"Content-Disposition": f'attachment; filename="{dashboard_id}.json"'},
    )


@router.post(
    "/{dashboard_id}/shares",
    operation_id="createShare",
    summary="A read-only share link",
    status_code=201,
    responses=_ERRORS,
)
def create_share(
    dashboard_id: DashboardId,
    body: ShareRequest,
    request: Request,
    caller: AdminKey,
    store: Dashboards,
    shares: Shares,
    app: ServicesDep,
) -> dict[str, Any]:
    """A signed link that shows this dashboard, over ``time``, until it expires or is revoked."""
    stored = store.get(caller.tenant, dashboard_id)
    if stored is None:
        raise ApiError(404, "unknown_dashboard", f"no dashboard {dashboard_id!r}")
    try:
        ttl = int(parse_duration(body.expires_in).total_seconds())
    except ValueError as exc:
        raise ApiError(400, "invalid_expires_in", str(exc)) from exc
    if not 0 < ttl <= MAX_SHARE_SECONDS:
        raise ApiError(400, "invalid_expires_in", "expires_in must be 1 s to 366 days")
    time_range = body.time or stored.dashboard.time
    share = shares.create(
        caller.tenant, dashboard_id, time_range.start, time_range.end, ttl, caller.key.prefix
    )
    token = sign(app.settings.share_secret.get_secret_value(), share)
    base = str(request.base_url).rstrip("/")
    return {
        "share": share.as_dict(),
        "token": token,
        "url": f"{base}/ui/shared#{token}",
        "embed": f'<iframe src="{base}/ui/shared#{token}" width="100%" height="600"></iframe>',
    }


@router.get(
    "/{dashboard_id}/shares",
    operation_id="listShares",
    summary="A dashboard's live share links",
    responses=_ERRORS,
)
def list_shares(dashboard_id: DashboardId, caller: AdminKey, shares: Shares) -> dict[str, Any]:
    """Share records (never their tokens), newest first."""
    return {"shares": [s.as_dict() for s in shares.list(caller.tenant, dashboard_id)]}


@router.delete(
    "/{dashboard_id}/shares/{share_id}",
    operation_id="revokeShare",
    summary="Revoke a share link",
    status_code=204,
    responses=_ERRORS,
)
def revoke_share(
    dashboard_id: DashboardId, share_id: str, caller: AdminKey, shares: Shares
) -> Response:
    """The link stops working at once (``401`` for its holders)."""
    if not shares.revoke(caller.tenant, dashboard_id, share_id):
        raise ApiError(404, "unknown_share", f"no share {share_id!r} of {dashboard_id!r}")
    return Response(status_code=204)
