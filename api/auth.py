"""Who is calling: the API key, its tenant and scopes, and the request rate limit.

A key comes as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.
Missing, unknown, revoked or expired keys are ``401``; a key without the
route's scope is ``403``. The tenant of every request is the key's — never a
header or a payload field. Each authenticated request takes one token from
the key's and the tenant's request buckets (``429`` when either is empty).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.requests import HTTPConnection
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from riffle.api.collect import Collect
from riffle.api.errors import ApiError
from riffle.api.ratelimit import STATE_KEY, Decision, tighter
from riffle.sinks.redis.api_keys import ApiKey

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer rfl_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="`X-API-Key: rfl_...`")


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: its key's record."""

    key: ApiKey

    @property
    def tenant(self) -> str:
        """The tenant every resource of this request belongs to."""
        return self.key.tenant


async def collect(connection: HTTPConnection) -> Collect:
    """The collection services of the app serving ``connection`` (a request or a websocket)."""
    return cast(Collect, connection.app.state.collect)


CollectDep = Annotated[Collect, Depends(collect)]


class RateLimitedError(ApiError):
    """``429`` with the headers that say when to come back."""

    def __init__(self, decision: Decision, what: str) -> None:
        super().__init__(
            429,
            "rate_limited",
            f"{what} rate limit exceeded; retry after {decision.headers()['Retry-After']} s",
            headers=decision.headers(),
        )
        self.decision = decision


def record_decision(request: Request, decision: Decision) -> None:
    """Keep the tightest decision of the request for its response headers."""
    current = getattr(request.state, STATE_KEY, None)
    setattr(request.state, STATE_KEY, tighter(current, decision))


def tenant_rate(app: Collect, tenant: str, kind: str) -> float:
    """The tenant's per-second limit of ``kind`` (``requests`` or ``events``)."""
    settings = app.settings
    default = settings.rate_tenant_requests if kind == "requests" else settings.rate_tenant_events
    return float(settings.rate_tenant_overrides.get(tenant, {}).get(kind, default))


def authenticate(app: Collect, token: str | None) -> tuple[Principal, Decision]:
    """The caller ``token`` stands for, and the decision of taking one request from its
    key's and tenant's limits (the caller refuses when it is not ``allowed``).

    Missing, unknown, revoked or expired keys are ``401``.
    """
    if not token:
        raise ApiError(
            401,
            "missing_api_key",
            "send an API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    record = app.keys.authenticate(token)
    if record is None:
        raise ApiError(
            401, "invalid_api_key", "the API key is not valid", {"WWW-Authenticate": "Bearer"}
        )
    state = record.state(int(time.time() * 1000))
    if state != "active":
        raise ApiError(401, f"{state}_api_key", f"the API key {record.prefix} is {state}")
    settings = app.settings
    decision = app.limiter.take(
        [
            app.limiter.bucket("req", "key", record.prefix, settings.rate_key_requests, 1),
            app.limiter.bucket(
                "req", "tenant", record.tenant, tenant_rate(app, record.tenant, "requests"), 1
            ),
        ]
    )
    return Principal(record), decision


def principal(
    request: Request,
    app: CollectDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Principal:
    """The authenticated caller, after taking one request from its rate limits."""
    token = header or (bearer.credentials if bearer is not None else None)
    caller, decision = authenticate(app, token)
    record_decision(request, decision)
    if not decision.allowed:
        raise RateLimitedError(decision, "request")
    return caller


def check_scope(caller: Principal, scope: str) -> Principal:
    """``caller`` if its key holds ``scope``; ``403`` otherwise."""
    if scope not in caller.key.scopes:
        raise ApiError(
            403,
            "insufficient_scope",
            f"this route needs scope {scope!r}; the key has {', '.join(caller.key.scopes)}",
        )
    return caller


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting keys that hold ``scope`` (``403`` otherwise)."""

    async def check(caller: Annotated[Principal, Depends(principal)]) -> Principal:
        return check_scope(caller, scope)

    check.__name__ = f"require_{scope}"
    return check


def operational_guard(
    request: Request,
    app: CollectDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> None:
    """Health and ``/metrics`` answer without a key unless the settings close them."""
    settings = app.settings
    is_metrics = request.url.path == "/metrics"
    if settings.auth_open_metrics if is_metrics else settings.auth_open_health:
        return
    principal(request, app, bearer, header)
