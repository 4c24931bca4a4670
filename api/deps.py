"""Dependency aliases for routes: the app's services, the spec, the stores and the tenant.

Routes ask for ``Tenant``: the tenant of the request's API key (never a
header or payload field). ``ApiKey`` is the authenticated caller and
``RequireScope("read")`` a dependency admitting keys with that scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry

from riffle.api.auth import Principal, principal, require_scope
from riffle.api.cache import QueryCache
from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sinks.warehouse.base import Warehouse


@dataclass(frozen=True, slots=True)
class Services:
    """What one app instance was built with; lives on ``app.state.services``."""

    settings: Settings
    spec: PipelineSpec
    hot: RedisWindowStore
    warehouse: Warehouse
    registry: CollectorRegistry
    query_cache: QueryCache


def services(request: Request) -> Services:
    """The services of the app serving ``request``."""
    return cast(Services, request.app.state.services)


ServicesDep = Annotated[Services, Depends(services)]


def tenant(caller: Annotated[Principal, Depends(principal)]) -> str:
    """The tenant a request acts for: its API key's."""
    return caller.tenant


def spec(app: ServicesDep) -> PipelineSpec:
    """The pipeline spec the app serves."""
    return app.spec


Tenant = Annotated[str, Depends(tenant)]
ApiKey = Annotated[Principal, Depends(principal)]
RequireScope = require_scope
Spec = Annotated[PipelineSpec, Depends(spec)]
