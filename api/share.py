"""Share tokens: signed, expiring, revocable read access to one dashboard of one tenant.

A token is ``rfs_<payload>.<signature>``: the payload (base64url JSON) names
the share id, tenant, dashboard and expiry; the signature is an HMAC-SHA256
of it with ``RIFFLE_SHARE_SECRET``. No API key is in it or behind it. A
request with a token (header ``X-Share-Token``) is admitted when the
signature holds, the expiry is ahead and the share record still exists
(:class:`sinks.redis.shares.ShareStore`; revoking deletes it), else ``401``.
What it may read is the dashboard's own panels' metrics, over the share's
time range (:class:`SharedView`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Annotated

import orjson
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from riffle.api.auth import CollectDep, RateLimitedError, record_decision, tenant_rate
from riffle.api.deps import Dashboards, ServicesDep, Shares
from riffle.api.errors import ApiError
from riffle.config.dashboards import Dashboard
from riffle.sinks.redis.shares import Share

PREFIX = "rfs_"


def sign(secret: str, share: Share) -> str:
    """The token of ``share``."""
    payload = orjson.dumps(
        {"s": share.id, "t": share.tenant, "d": share.dashboard, "e": share.expires_at}
    )
    body = base64.urlsafe_b64encode(payload).rstrip(b"=")
    mac = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return PREFIX + body.decode() + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def verify(secret: str, token: str, now_ms: int) -> dict[str, str | int]:
    """The payload of a well-signed, unexpired token; :class:`ApiError` 401 otherwise."""
    if not token.startswith(PREFIX) or "." not in token:
        raise ApiError(401, "invalid_share_token", "not a share token")
    body, _, mac = token[len(PREFIX) :].partition(".")
    want = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    try:
        given = base64.urlsafe_b64decode(mac + "=" * (-len(mac) % 4))
        payload = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise ApiError(401, "invalid_share_token", "the share token is malformed") from None
    if not hmac.compare_digest(want, given):
        raise ApiError(401, "invalid_share_token", "the share token's signature does not hold")
    if int(payload["e"]) <= now_ms:
        raise ApiError(401, "expired_share_token", "the share link has expired")
    return dict(payload)


@dataclass(frozen=True, slots=True)
class Shared:
    """What a share token admits: its share and the dashboard it shows."""

    share: Share
    dashboard: Dashboard

    @property
    def tenant(self) -> str:
        """The tenant every read of the request is for."""
        return self.share.tenant

    def check_metric(self, metric: str) -> None:
        """``403`` unless a panel of the shared dashboard reads ``metric``."""
        if metric not in self.dashboard.metrics():
            raise ApiError(403, "not_shared", f"metric {metric!r} is not on the shared dashboard")


_SHARE_TOKEN = APIKeyHeader(
    name="X-Share-Token",
    scheme_name="ShareToken",
    description="The token of a share link (``POST /v1/dashboards/{id}/shares``).",
    auto_error=False,
)


def shared_view(
    request: Request,
    app: ServicesDep,
    collect: CollectDep,
    dashboards: Dashboards,
    shares: Shares,
    token: Annotated[str | None, Security(_SHARE_TOKEN)] = None,
) -> Shared:
    """The share of the request's ``X-Share-Token``, after one request of its tenant's limit."""
    if not token:
        raise ApiError(401, "missing_share_token", "send the share token as X-Share-Token")
    payload = verify(app.settings.share_secret.get_secret_value(), token, int(time.time() * 1000))
    tenant = str(payload["t"])
    share = shares.get(tenant, str(payload["s"]))
    if share is None or share.dashboard != payload["d"]:
        raise ApiError(401, "revoked_share_token", "the share link was revoked")
    decision = collect.limiter.take(
        [
            collect.limiter.bucket(
                "req", "tenant", tenant, tenant_rate(collect, tenant, "requests"), 1
            )
        ]
    )
    record_decision(request, decision)
    if not decision.allowed:
        raise RateLimitedError(decision, "request")
    stored = dashboards.get(tenant, share.dashboard)
    if stored is None:
        raise ApiError(401, "revoked_share_token", "the shared dashboard no longer exists")
    return Shared(share, stored.dashboard)


SharedView = Annotated[Shared, Depends(shared_view)]
