"""``/v1/silences``: mute the notifications of matching alerts for a time range."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query, Response

from riffle.api.deps import AdminKey, ReadKey, Silences
from riffle.api.errors import ApiError
from riffle.sinks.redis.silences import SilenceSpec

router = APIRouter(tags=["silences"])


@router.post(
    "/v1/silences",
    operation_id="createSilence",
    summary="Mute notifications of matching alerts for a time range",
    status_code=201,
)
def create_silence(
    silences: Silences,
    caller: AdminKey,
    body: SilenceSpec,
) -> dict[str, Any]:
    """Matchers (``=``, ``!=``, ``=~``, ``!~`` on labels) and ``[starts_at, ends_at)`` in ms."""
    try:
        silence = silences.create(caller.tenant, body)
    except ValueError as exc:
        raise ApiError(422, "invalid_silence", str(exc)) from exc
    return silence.model_dump()


@router.get("/v1/silences", operation_id="listSilences", summary="Every silence")
def list_silences(
    silences: Silences,
    caller: ReadKey,
    active: bool = Query(False, description="Only silences in force now."),
) -> dict[str, Any]:
    now = int(time.time() * 1000)
    items = [
        s.model_dump() | {"active": s.active(now)}
        for s in silences.list(caller.tenant)
        if not active or s.active(now)
    ]
    return {"silences": items}


@router.delete(
    "/v1/silences/{silence_id}",
    operation_id="deleteSilence",
    summary="Remove a silence",
    status_code=204,
)
def delete_silence(
    silences: Silences,
    caller: AdminKey,
    silence_id: str,
) -> Response:
    if not silences.delete(caller.tenant, silence_id):
        raise ApiError(404, "not_found", f"no silence {silence_id!r}")
    return Response(status_code=204)
