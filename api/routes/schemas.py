"""``/v1/schemas``: the schema registry, as validated against by ingest and the dataflow."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from riffle.api.auth import CollectDep
from riffle.api.bodies import ErrorResponse
from riffle.api.deps import ReadKey
from riffle.api.errors import ApiError

router = APIRouter(prefix="/v1/schemas", tags=["schemas"])
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, unknown, revoked or expired key."},
    403: {"model": ErrorResponse, "description": "The key lacks scope `read`."},
    404: {"model": ErrorResponse, "description": "No such schema."},
}


class SchemaOut(BaseModel):
    """One version of an event type's schema."""

    key: str = Field(examples=["purchase/1-0-0"])
    event_type: str
    version: str
    latest: bool
    json_schema: dict[str, Any] = Field(description="The JSON Schema of the event's props.")


class SchemaList(BaseModel):
    """Every schema version, by event type, oldest first."""

    schemas: list[SchemaOut]


@router.get("", operation_id="listSchemas", summary="Every schema version", responses=_ERRORS)
def list_schemas(app: CollectDep, _: ReadKey) -> SchemaList:
    """The registry in use (``latest`` marks the version an unnamed event is checked against)."""
    validator = app.schemas.validator
    out = []
    for event_type, entries in sorted(validator.entries.items()):
        latest = validator.latest(event_type)
        out += [
            SchemaOut(
                key=e.key,
                event_type=event_type,
                version=e.version,
                latest=e.key == latest,
                json_schema=dict(e.schema),
            )
            for e in entries
        ]
    return SchemaList(schemas=out)


@router.get(
    "/{event_type}/{version}",
    operation_id="getSchema",
    summary="One schema version",
    responses=_ERRORS,
)
def get_schema(
    event_type: str,
    version: str,
    app: CollectDep,
    _: ReadKey,
) -> SchemaOut:
    """One version (``version`` may be ``latest``)."""
    validator = app.schemas.validator
    entries = validator.entries.get(event_type, [])
    if version == "latest" and entries:
        version = entries[-1].version
    for entry in entries:
        if entry.version == version:
            return SchemaOut(
                key=entry.key,
                event_type=event_type,
                version=entry.version,
                latest=entry.key == validator.latest(event_type),
                json_schema=dict(entry.schema),
            )
    raise ApiError(404, "schema_not_found", f"no schema {event_type}/{version}")
