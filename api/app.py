"""The FastAPI application: built by :func:`create_app`, one per process (or per test).

Run it with ``uvicorn --factory api.app:create_app``. Nothing connects at
build time: Redis connects on first use and the warehouse file is opened per
request, so the app starts even while its dependencies are still coming up
(``/readyz`` says when they are there).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import redis
import structlog
from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from riffle.api.auth import operational_guard, require_scope
from riffle.api.cache import QueryCache
from riffle.api.collect import build_collect
from riffle.api.deps import Services, dashboard_store
from riffle.api.docs_ui import install_docs
from riffle.api.errors import install_error_handlers
from riffle.api.graphql.router import graphql_router
from riffle.api.live import LiveHub
from riffle.api.openapi import install_openapi
from riffle.api.params import known_query_params
from riffle.api.provision import provision, provision_tenants
from riffle.api.ratelimit import RateLimitHeaders
from riffle.api.render import Renderer
from riffle.api.routes import acks as ack_routes
from riffle.api.routes import alert_rules as alert_rule_routes
from riffle.api.routes import alerts as alert_routes
from riffle.api.routes import dashboards as dashboard_routes
from riffle.api.routes import deadletters, grafana, health, ingest, keys, metrics, query, schemas
from riffle.api.routes import export as export_routes
from riffle.api.routes import imports as import_routes
from riffle.api.routes import insights as insight_routes
from riffle.api.routes import models as model_routes
from riffle.api.routes import predictions as prediction_routes
from riffle.api.routes import reports as report_routes
from riffle.api.routes import shared as shared_routes
from riffle.api.routes import silences as silence_routes
from riffle.api.routes import stream as stream_routes
from riffle.api.routes.ui import STATIC_DIR, ui_router
from riffle.api.telemetry import RequestTelemetry
from riffle.config.errors import RiffleError
from riffle.config.settings import Settings, get_settings
from riffle.config.spec import load_spec
from riffle.sinks.errors import SinkError
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sinks.warehouse.engines import open_warehouse

log = structlog.get_logger(__name__)


def create_app(
    settings: Settings | None = None, registry: CollectorRegistry | None = None
) -> FastAPI:
    """An app serving ``settings`` (default: the environment's).

    Its request metrics go to ``registry`` (default: a fresh one per app, so
    tests can assert exact values); a registry serves one app only. Raises
    :class:`~config.errors.SpecError` when the spec does not load.
    """
    settings = settings or get_settings()
    spec = load_spec(settings.spec)
    client = redis.Redis.from_url(
        settings.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0
    )
    registry = registry if registry is not None else CollectorRegistry()
    hot = RedisWindowStore(client, settings.redis_prefix, int(spec.retention.hot.total_seconds()))
    services = Services(
        settings=settings,
        spec=spec,
        hot=hot,
        warehouse=open_warehouse(settings, spec.retention.warehouse),
        registry=registry,
        query_cache=QueryCache(
            client, settings.redis_prefix, settings.query_cache_ttl_seconds, registry
        ),
        live=LiveHub(
            settings.redis_url, hot, spec, registry, buffer_limit=settings.stream_buffer_limit
        ),
        renderer=Renderer(registry),
    )

    collect = build_collect(settings, client, services.warehouse)

    async def provision_dashboards() -> bool:
        """Provision the dashboards; False while a store is down (the API serves
        meanwhile and tries again), True once done or the folder is invalid (logged)."""
        try:
            await asyncio.to_thread(
                provision,
                dashboard_store(services),
                settings,
                spec,
                provision_tenants(settings, spec),
            )
        except SinkError as exc:
            log.warning("dashboards_not_provisioned", error=str(exc), retrying=True)
            return False
        except RiffleError as exc:
            log.warning("dashboards_not_provisioned", error=str(exc))
        return True

    async def provision_until_done() -> None:
        delay = 1.0
        while not await provision_dashboards():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        retrying = None
        if not await provision_dashboards():  # Redis or the warehouse down at start
            retrying = asyncio.create_task(provision_until_done())
        # Everything alive now (modules, the app, the spec, compiled schemas: ~230k
        # objects) lives as long as the process: out of the cyclic collector's scans,
        # whose first full pass over them stalled every request for 120 ms.
        gc.freeze()
        yield
        if retrying is not None:
            retrying.cancel()
        await services.live.close()
        await asyncio.to_thread(services.renderer.close)
        collect.close()
        client.close()

    app = FastAPI(
        title="Riffle",
        version=version("riffle"),
        description="Event collection and live windowed metrics.",
        lifespan=lifespan,
        dependencies=[Depends(known_query_params)],
        docs_url=None,  # served from the package by install_docs: no CDN
        redoc_url=None,
    )
    app.state.services = services
    app.state.collect = collect
    install_error_handlers(app)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(RequestTelemetry, registry=services.registry)
    read = [Depends(require_scope("read"))]
    app.include_router(metrics.router, dependencies=read)
    app.include_router(query.router, dependencies=read)
    app.include_router(stream_routes.router, dependencies=read)
    app.include_router(grafana.router, dependencies=read)
    app.include_router(graphql_router(settings, registry))
    app.include_router(model_routes.router, dependencies=read)
    app.include_router(prediction_routes.router, dependencies=read)
    app.include_router(insight_routes.router, dependencies=read)
    app.include_router(alert_rule_routes.router)
    app.include_router(alert_routes.router, dependencies=read)
    app.include_router(silence_routes.router)
    app.include_router(ack_routes.router)
    app.include_router(health.router, dependencies=[Depends(operational_guard)])
    app.include_router(ingest.router)
    app.include_router(deadletters.router)
    app.include_router(schemas.router)
    app.include_router(keys.router)
    app.include_router(dashboard_routes.router)
    app.include_router(export_routes.router)
    app.include_router(shared_routes.router)
    app.include_router(report_routes.router)
    app.include_router(ui_router(registry))
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.include_router(import_routes.router)
    install_openapi(app, spec, sorted(collect.schemas.validator.entries))
    install_docs(app)
    return app
