"""Dependency aliases for routes: the app's services, the spec, the stores and the caller.

Routes ask for ``Tenant``: the tenant of the request's API key (never a
header or payload field). ``ApiKey`` is the authenticated caller;
``ReadKey``, ``IngestKey`` and ``AdminKey`` admit only keys with that scope.
Each store a route reads or writes is an alias here (``Silences``,
``AlertRules``, ``ModelResults``, …), built over the app's Redis client or
warehouse, so a route module never constructs one itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, cast

import redis
from fastapi import Depends, Path
from fastapi.requests import HTTPConnection
from prometheus_client import CollectorRegistry

from riffle.api.auth import Identified, Principal, ingest_caller, principal, require_scope
from riffle.api.cache import QueryCache
from riffle.api.live import LiveHub
from riffle.api.render import Renderer
from riffle.config.dashboards import ID_PATTERN
from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec
from riffle.sinks.errors import SinkError
from riffle.sinks.redis.acks import AckStore
from riffle.sinks.redis.alerts import RedisAlerts
from riffle.sinks.redis.imports import ImportRunStore
from riffle.sinks.redis.model_results import RedisModelStore
from riffle.sinks.redis.predictions import RedisPredictionStore
from riffle.sinks.redis.rules import AlertRuleStore
from riffle.sinks.redis.schedule import ScheduleStore
from riffle.sinks.redis.shares import ShareStore
from riffle.sinks.redis.silences import SilenceStore
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sinks.warehouse.alert_history import WarehouseAlerts
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.dashboards import DashboardStore
from riffle.sinks.warehouse.model_health import ModelHealthStore
from riffle.sinks.warehouse.model_results import ModelStore
from riffle.sinks.warehouse.predictions import PredictionStore

# The dependencies here only look things up or build a store over a shared client:
# they are ``async`` so FastAPI calls them on the event loop, not through a
# worker thread each (a thread hop per dependency cost more than the lookup).


@dataclass(frozen=True, slots=True)
class Services:
    """What one app instance was built with; lives on ``app.state.services``."""

    settings: Settings
    spec: PipelineSpec
    hot: RedisWindowStore
    warehouse: Warehouse
    registry: CollectorRegistry
    query_cache: QueryCache
    live: LiveHub
    renderer: Renderer


async def services(connection: HTTPConnection) -> Services:
    """The services of the app serving ``connection`` (a request or a websocket)."""
    return cast(Services, connection.app.state.services)


ServicesDep = Annotated[Services, Depends(services)]


async def tenant(caller: Annotated[Principal, Depends(principal)]) -> str:
    """The tenant a request acts for: its API key's."""
    return caller.tenant


async def spec(app: ServicesDep) -> PipelineSpec:
    """The pipeline spec the app serves."""
    return app.spec


def _hot_ttl(app: Services) -> int:
    """Seconds the spec keeps results in Redis (its ``retention.hot``)."""
    return max(1, int(app.spec.retention.hot.total_seconds()))


async def _acks(app: ServicesDep) -> AckStore:
    return AckStore(app.hot.client, app.hot.prefix)


async def _alert_states(app: ServicesDep) -> RedisAlerts:
    return RedisAlerts(app.hot.client, app.hot.prefix)


async def _alert_history(app: ServicesDep) -> WarehouseAlerts:
    return WarehouseAlerts(app.warehouse)


async def _alert_rules(app: ServicesDep) -> AlertRuleStore:
    return AlertRuleStore(app.hot.client, app.hot.prefix)


async def _silences(app: ServicesDep) -> SilenceStore:
    return SilenceStore(app.hot.client, app.hot.prefix)


async def _import_runs(app: ServicesDep) -> ImportRunStore:
    return ImportRunStore(app.hot.client, app.hot.prefix)


async def _model_results(app: ServicesDep) -> ModelStore:
    return ModelStore(app.warehouse)


async def _hot_model_results(app: ServicesDep) -> RedisModelStore:
    return RedisModelStore(app.hot.client, app.hot.prefix, _hot_ttl(app))


async def _model_health(app: ServicesDep) -> ModelHealthStore:
    return ModelHealthStore(app.warehouse)


async def _predictions(app: ServicesDep) -> PredictionStore:
    return PredictionStore(app.warehouse)


async def _hot_predictions(app: ServicesDep) -> RedisPredictionStore:
    return RedisPredictionStore(app.hot.client, app.hot.prefix, _hot_ttl(app))


def dashboard_store(app: ServicesDep) -> DashboardStore:
    """The dashboards table, saves locked per dashboard in Redis."""
    return locked_dashboards(app.hot.client, app.hot.prefix, app.warehouse)


def locked_dashboards(client: redis.Redis, prefix: str, warehouse: Warehouse) -> DashboardStore:
    """The dashboards table of ``warehouse``, saves locked per dashboard in Redis."""

    @contextmanager
    def lock(name: str) -> Iterator[None]:
        try:
            with client.lock(f"{prefix}:lock:{name}", timeout=30, blocking_timeout=10):
                yield
        except redis.RedisError as exc:  # a lock not had, or Redis down
            raise SinkError(f"could not lock {name}: {exc}") from exc

    return DashboardStore(warehouse, lock)


async def _shares(app: ServicesDep) -> ShareStore:
    return ShareStore(app.hot.client, app.hot.prefix)


async def _schedules(app: ServicesDep) -> ScheduleStore:
    return ScheduleStore(app.hot.client, app.hot.prefix)


Tenant = Annotated[str, Depends(tenant)]
ApiKey = Annotated[Principal, Depends(principal)]
ReadKey = Annotated[Principal, Depends(require_scope("read"))]
IngestKey = Annotated[Principal, Depends(require_scope("ingest"))]
IngestCaller = Annotated[Identified, Depends(ingest_caller)]
"""The caller of ``POST /v1/events``: checked, charged later with the body's events."""
AdminKey = Annotated[Principal, Depends(require_scope("admin"))]
Spec = Annotated[PipelineSpec, Depends(spec)]

Acks = Annotated[AckStore, Depends(_acks)]
AlertStates = Annotated[RedisAlerts, Depends(_alert_states)]
AlertHistory = Annotated[WarehouseAlerts, Depends(_alert_history)]
AlertRules = Annotated[AlertRuleStore, Depends(_alert_rules)]
Silences = Annotated[SilenceStore, Depends(_silences)]
ModelResults = Annotated[ModelStore, Depends(_model_results)]
HotModelResults = Annotated[RedisModelStore, Depends(_hot_model_results)]
ModelHealth = Annotated[ModelHealthStore, Depends(_model_health)]
Predictions = Annotated[PredictionStore, Depends(_predictions)]
HotPredictions = Annotated[RedisPredictionStore, Depends(_hot_predictions)]
ImportRuns = Annotated[ImportRunStore, Depends(_import_runs)]
Dashboards = Annotated[DashboardStore, Depends(dashboard_store)]
Shares = Annotated[ShareStore, Depends(_shares)]
DashboardId = Annotated[str, Path(pattern=ID_PATTERN, examples=["overview"])]
"""A dashboard's id in a path: refused (``422``) unless it is one a dashboard may have."""
PanelId = Annotated[str, Path(pattern=ID_PATTERN, examples=["events"])]
"""A panel's id in a path, of the same form."""
Schedules = Annotated[ScheduleStore, Depends(_schedules)]
