"""The websocket side of ``/graphql`` (``graphql-transport-ws``): its context and its auth.

Browsers cannot set headers on a websocket, so the key comes in the
``connection_init`` payload, under the names of the HTTP headers:
``{"Authorization": "Bearer <key>"}`` or ``{"X-API-Key": "<key>"}`` (either
case); without one there, the handshake's own headers count. The key must be
active and hold ``read``, and connecting takes one request from the key's and
the tenant's rate limits; otherwise the server closes the socket with the
protocol's ``4403 Forbidden`` (and logs why). A socket acts for its key's
tenant only. Each subscription started on it checks the key again (a key
revoked since the connection cannot start one) and takes one request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends
from strawberry.fastapi import BaseContext

from riffle.api.auth import CollectDep, Principal, RateLimitedError, authenticate, check_scope
from riffle.api.collect import Collect
from riffle.api.deps import Services, ServicesDep

SCOPE = "read"


class SocketContext(BaseContext):
    """One websocket connection: the app's services, and its caller once admitted."""

    def __init__(self, app: Services, collect: Collect) -> None:
        super().__init__()
        self.app = app
        self.collect = collect
        self.caller: Principal | None = None
        self.token: str | None = None

    @property
    def tenant(self) -> str:
        """The tenant of the connection's key (set by :func:`admit`)."""
        if self.caller is None:
            raise RuntimeError("the socket's connection_init has not been accepted")
        return self.caller.tenant

    def token_of(self, params: object) -> str | None:
        """The key sent in ``connection_init`` ``params``, else in the handshake's headers."""
        found = _token(params) if isinstance(params, Mapping) else None
        if found is None and self.request is not None:
            found = _token(self.request.headers)
        return found


async def socket_context(app: ServicesDep, collect: CollectDep) -> SocketContext:
    """The context of one websocket (a FastAPI dependency; nothing is checked yet)."""
    return SocketContext(app, collect)


SocketCtx = Annotated[SocketContext, Depends(socket_context)]


async def admit(context: SocketContext, token: str | None) -> Principal:
    """The caller of ``token`` once its key is active, holds ``read`` and is within its
    limits (one request taken); raises the API's error otherwise."""
    caller, decision = await asyncio.to_thread(authenticate, context.collect, token)
    if not decision.allowed:
        raise RateLimitedError(decision, "request")
    return check_scope(caller, SCOPE)


def _token(source: Mapping[str, object]) -> str | None:
    lowered = {str(k).lower(): v for k, v in source.items()}
    key = lowered.get("x-api-key")
    if isinstance(key, str) and key:
        return key
    auth = lowered.get("authorization")
    if isinstance(auth, str):
        scheme, _, credentials = auth.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return None
