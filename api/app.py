"""The FastAPI application: built by :func:`create_app`, one per process (or per test).

Run it with ``uvicorn --factory api.app:create_app``. Nothing connects at
build time: Redis connects on first use and the warehouse file is opened per
request, so the app starts even while its dependencies are still coming up
(``/readyz`` says when they are there).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version

import redis
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

from riffle.api.auth import operational_guard, require_scope
from riffle.api.cache import QueryCache
from riffle.api.collect import build_collect
from riffle.api.deps import Services
from riffle.api.docs_ui import install_docs
from riffle.api.errors import install_error_handlers
from riffle.api.openapi import install_openapi
from riffle.api.params import known_query_params
from riffle.api.ratelimit import RateLimitHeaders
from riffle.api.routes import acks as ack_routes
from riffle.api.routes import alert_rules as alert_rule_routes
from riffle.api.routes import alerts as alert_routes
from riffle.api.routes import deadletters, health, ingest, keys, metrics, query, schemas
from riffle.api.routes import insights as insight_routes
from riffle.api.routes import models as model_routes
from riffle.api.routes import predictions as prediction_routes
from riffle.api.routes import silences as silence_routes
from riffle.api.telemetry import RequestTelemetry
from riffle.config.settings import Settings, get_settings
from riffle.config.spec import load_spec
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sinks.warehouse.engines import open_warehouse


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
    services = Services(
        settings=settings,
        spec=spec,
        hot=RedisWindowStore(
            client, settings.redis_prefix, int(spec.retention.hot.total_seconds())
        ),
        warehouse=open_warehouse(settings, spec.retention.warehouse),
        registry=registry,
        query_cache=QueryCache(
            client, settings.redis_prefix, settings.query_cache_ttl_seconds, registry
        ),
    )

    collect = build_collect(settings, client, services.warehouse)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
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
    install_openapi(app, spec, sorted(collect.schemas.validator.entries))
    install_docs(app)
    return app
