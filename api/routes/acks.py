"""``POST``/``DELETE /v1/alerts/{instance}/ack``: acknowledge a firing alert so it stops
repeating, or withdraw the acknowledgement."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Response

from riffle.api.bodies import ErrorResponse
from riffle.api.deps import Acks, AdminKey, AlertStates
from riffle.api.errors import ApiError
from riffle.sinks.redis.acks import AckSpec, AckStore, episode_start

router = APIRouter(tags=["alerts"])
ACKABLE = frozenset({"firing", "recovering", "nodata"})
"""States an instance can be acknowledged in."""


def with_acks(acks: AckStore, tenant: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` (active alert rows) with ``ack``: the ack holding for the row's episode, or
    None."""
    found = acks.all(tenant)
    now = int(time.time() * 1000)
    out = []
    for row in rows:
        ack = found.get(row["instance"])
        shown = ack.model_dump() if ack is not None and ack.holds(episode_start(row), now) else None
        out.append(row | {"ack": shown})
    return out


@router.post(
    "/v1/alerts/{instance}/ack",
    operation_id="ackAlert",
    responses={409: {"model": ErrorResponse, "description": "The alert is not firing."}},
    summary="Acknowledge a firing alert: no more repeat notifications for this episode",
    status_code=201,
)
def ack_alert(
    acks: Acks,
    states: AlertStates,
    caller: AdminKey,
    instance: str,
    body: AckSpec,
) -> dict[str, Any]:
    """``instance`` is the alert's id in ``GET /v1/alerts``. The ack covers the current
    episode (until the alert resolves) or ends at ``until`` (ms since the epoch)."""
    row = next((r for r in states.instances(caller.tenant) if r["instance"] == instance), None)
    if row is None:
        raise ApiError(404, "not_found", f"no alert instance {instance!r}")
    if row["to_state"] not in ACKABLE:
        raise ApiError(
            409,
            "not_firing",
            f"alert {instance!r} is {row['to_state']}; only firing ones are acked",
        )
    try:
        ack = acks.ack(caller.tenant, instance, episode_start(row), body)
    except ValueError as exc:
        raise ApiError(422, "invalid_ack", str(exc)) from exc
    return ack.model_dump()


@router.delete(
    "/v1/alerts/{instance}/ack",
    operation_id="unackAlert",
    summary="Withdraw an acknowledgement: repeats resume",
    status_code=204,
)
def unack_alert(
    acks: Acks,
    caller: AdminKey,
    instance: str,
) -> Response:
    if not acks.delete(caller.tenant, instance):
        raise ApiError(404, "not_found", f"alert {instance!r} has no acknowledgement")
    return Response(status_code=204)
