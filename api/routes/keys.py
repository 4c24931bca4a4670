"""``/v1/keys``: a tenant's API keys, managed with a key of scope ``admin``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from riffle.api.auth import CollectDep
from riffle.api.bodies import ErrorResponse
from riffle.api.deps import AdminKey
from riffle.api.errors import ApiError
from riffle.api.times import format_instant
from riffle.config.instants import MAX_INSTANT_MS
from riffle.sinks.redis.api_keys import ApiKey, Scope

router = APIRouter(prefix="/v1/keys", tags=["keys"])
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
"""No control characters: a key's name is shown in terminals and logs."""
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing, unknown, revoked or expired key."},
    403: {"model": ErrorResponse, "description": "The key lacks scope `admin`."},
    404: {"model": ErrorResponse, "description": "No such key for this tenant."},
    409: {"model": ErrorResponse, "description": "A key cannot revoke itself."},
}


class KeyOut(BaseModel):
    """A key's record; never its secret."""

    prefix: str
    tenant: str
    scopes: list[str]
    name: str
    created_at: str
    expires_at: str | None
    revoked_at: str | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        """The API view of a record."""
        return cls(
            prefix=key.prefix,
            tenant=key.tenant,
            scopes=list(key.scopes),
            name=key.name,
            created_at=format_instant(key.created_at),
            expires_at=None if key.expires_at is None else format_instant(key.expires_at),
            revoked_at=None if key.revoked_at is None else format_instant(key.revoked_at),
        )


class KeyCreate(BaseModel):
    """A new key of the caller's tenant."""

    model_config = ConfigDict(extra="forbid")
    scopes: list[Scope] = Field(min_length=1, max_length=3)
    name: str = Field("", max_length=200, pattern=PRINTABLE)
    expires_at: AwareDatetime | None = Field(
        None,
        description="RFC 3339 with an offset, in the future and before 9999-01-01.",
        examples=["2030-01-01T00:00:00Z"],
    )


class KeyCreated(KeyOut):
    """The new key: ``key`` is shown this once."""

    key: str


class KeyList(BaseModel):
    """The tenant's keys, oldest first."""

    keys: list[KeyOut]


@router.get("", operation_id="listKeys", summary="The tenant's API keys", responses=_ERRORS)
def list_keys(app: CollectDep, caller: AdminKey) -> KeyList:
    """Every key of the caller's tenant (active, revoked and expired)."""
    return KeyList(keys=[KeyOut.of(k) for k in app.keys.list(caller.tenant)])


@router.post(
    "",
    operation_id="createKey",
    summary="Create a key for the tenant",
    status_code=201,
    responses=_ERRORS,
)
def create_key(
    body: KeyCreate,
    app: CollectDep,
    caller: AdminKey,
) -> JSONResponse:
    """A new key of the caller's tenant; the full key is in this response only."""
    expires = None if body.expires_at is None else int(body.expires_at.timestamp() * 1000)
    if expires is not None and not int(time.time() * 1000) < expires <= MAX_INSTANT_MS:
        raise ApiError(422, "invalid_expiry", "expires_at lies in the future and before 9999-01-01")
    key, record = app.keys.create(caller.tenant, body.scopes, name=body.name, expires_at=expires)
    created = KeyCreated(key=key, **KeyOut.of(record).model_dump())
    return JSONResponse(created.model_dump(mode="json"), status_code=201)


@router.delete("/{prefix}", operation_id="revokeKey", summary="Revoke a key", responses=_ERRORS)
def revoke_key(prefix: str, app: CollectDep, caller: AdminKey) -> KeyOut:
    """Revoke a key of the caller's tenant; another tenant's key is ``404``, the calling
    key itself ``409`` (revoke it with another admin key, so no one locks themselves out)."""
    if prefix == caller.key.prefix:
        raise ApiError(409, "own_key", "a key cannot revoke itself; use another admin key")
    record = app.keys.revoke(prefix, caller.tenant)
    if record is None:
        raise ApiError(404, "key_not_found", f"no key {prefix!r}")
    return KeyOut.of(record)
