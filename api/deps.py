"""Dependency aliases for routes: the app's services, the spec, the stores and the tenant.

Routes ask for ``Tenant`` rather than reading settings, so the API-key lookup
of a later issue replaces :func:`tenant` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, Request
from prometheus_client import CollectorRegistry

from api.cache import QueryCache
from config.settings import Settings
from config.spec import PipelineSpec
from sinks.redis_store import RedisWindowStore
from sinks.warehouse_base import Warehouse


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


def tenant(app: ServicesDep) -> str:
    """The tenant a request acts for: the default tenant until API keys arrive."""
    return app.settings.default_tenant


def spec(app: ServicesDep) -> PipelineSpec:
    """The pipeline spec the app serves."""
    return app.spec


Tenant = Annotated[str, Depends(tenant)]
Spec = Annotated[PipelineSpec, Depends(spec)]
