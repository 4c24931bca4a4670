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
from riffle.api.ratelimit import STATE_KEY, Bucket, Decision, tighter
from riffle.sinks.errors import SinkError
from riffle.sinks.redis.api_keys import ApiKey, Verified

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


def identify(app: Collect, token: str | None) -> Verified:
    """The key ``token`` stands for, as this process last read it (from Redis the first
    time): :func:`charge` confirms it is current in the same round trip as the limits.

    Missing, unknown, revoked or expired keys are ``401``.
    """
    if not token:
        raise ApiError(
            401,
            "missing_api_key",
            "send an API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    verified = app.keys.cached(token) or app.keys.verify(token)
    return _usable(verified)


def _usable(verified: Verified | None) -> Verified:
    if verified is None:
        raise ApiError(
            401, "invalid_api_key", "the API key is not valid", {"WWW-Authenticate": "Bearer"}
        )
    record = verified.record
    state = record.state(int(time.time() * 1000))
    if state != "active":
        raise ApiError(401, f"{state}_api_key", f"the API key {record.prefix} is {state}")
    return verified


def request_buckets(app: Collect, record: ApiKey) -> list[Bucket]:
    """The buckets one request takes a token from: its key's and its tenant's."""
    settings = app.settings
    return [
        app.limiter.bucket("req", "key", record.prefix, settings.rate_key_requests, 1),
        app.limiter.bucket(
            "req", "tenant", record.tenant, tenant_rate(app, record.tenant, "requests"), 1
        ),
    ]


STALE_RETRIES = 3


def charge(
    app: Collect,
    token: str,
    verified: Verified,
    groups: Callable[[ApiKey], list[list[Bucket]]],
) -> tuple[Verified, list[Decision]]:
    """Take ``groups(record)`` from the limits (in order, each all or none, up to the first
    refused) in the round trip that checks the key's record is still what ``verified``
    read; when it changed (revoked, deleted, rewritten in another process), read it again
    (``401`` if it is no longer usable) and retry."""
    for _ in range(STALE_RETRIES):
        decisions = app.limiter.take_guarded(
            verified.record_key, verified.fingerprint, groups(verified.record)
        )
        if decisions is not None:
            return verified, decisions
        verified = _usable(app.keys.verify(token))
    raise SinkError(f"the API key {verified.record.prefix} changed {STALE_RETRIES} times")


def authenticate(app: Collect, token: str | None) -> tuple[Principal, Decision]:
    """The caller ``token`` stands for, and the decision of taking one request from its
    key's and tenant's limits (the caller refuses when it is not ``allowed``).

    Missing, unknown, revoked or expired keys are ``401``. One Redis round trip when
    this process has seen the key before (the check that its record is unchanged goes
    with the limits), two otherwise.
    """
    verified = identify(app, token)
    assert token is not None  # identify refuses a missing token
    verified, decisions = charge(
        app, token, verified, lambda record: [request_buckets(app, record)]
    )
    return Principal(verified.record), decisions[0]


async def principal(
    request: Request,
    app: CollectDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Principal:
    """The authenticated caller, after taking one request from its rate limits.

    ``async`` so that it runs on the event loop (one local Redis round trip) rather
    than through a worker thread, whose hop cost more than the call."""
    token = header or (bearer.credentials if bearer is not None else None)
    caller, decision = authenticate(app, token)
    record_decision(request, decision)
    if not decision.allowed:
        raise RateLimitedError(decision, "request")
    return caller


@dataclass(frozen=True, slots=True)
class Identified:
    """A caller whose key was checked (as this process last read it) but who has not yet
    been charged a request: for routes that charge requests and events in one round
    trip (:func:`admit`)."""

    token: str
    verified: Verified


async def ingest_caller(
    request: Request,
    app: CollectDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Identified:
    """The caller of an ingest route: ``401`` as :func:`principal`, ``403`` without scope
    ``ingest`` (``429`` instead when its request limit is spent, as elsewhere); the request
    is charged by :func:`admit`, with the body's events."""
    token = header or (bearer.credentials if bearer is not None else None)
    verified = identify(app, token)
    assert token is not None  # identify refuses a missing token
    caller = Identified(token, verified)
    if "ingest" not in verified.record.scopes:
        admit(request, app, caller, None)
    return caller


def admit(request: Request, app: Collect, caller: Identified, events: int | None) -> Principal:
    """Take one request and then ``events`` events (none when ``None``) from the caller's
    key's and tenant's limits, in one Redis round trip with the check that the key is
    unchanged; ``429`` (``request`` first, then ``event``) or ``403`` without scope
    ``ingest``."""
    settings = app.settings

    def groups(record: ApiKey) -> list[list[Bucket]]:
        wanted = [request_buckets(app, record)]
        if events is not None:
            limiter = app.limiter
            wanted.append(
                [
                    limiter.bucket("ev", "key", record.prefix, settings.rate_key_events, events),
                    limiter.bucket(
                        "ev",
                        "tenant",
                        record.tenant,
                        tenant_rate(app, record.tenant, "events"),
                        events,
                    ),
                ]
            )
        return wanted

    verified, decisions = charge(app, caller.token, caller.verified, groups)
    for decision, what in zip(decisions, ("request", "event"), strict=False):
        record_decision(request, decision)
        if not decision.allowed:
            raise RateLimitedError(decision, what)
    return check_scope(Principal(verified.record), "ingest")


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


async def operational_guard(
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
    await principal(request, app, bearer, header)
