"""Liveness, readiness and the Prometheus exposition of the API process."""

from __future__ import annotations

import logging
from collections.abc import Callable

import structlog
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from riffle.api.bodies import CheckOut, HealthResponse, NotReadyResponse, ReadyResponse
from riffle.api.deps import ServicesDep
from riffle.api.errors import error_response
from riffle.config.settings import Settings
from riffle.sinks.errors import SinkError

BROKER_TIMEOUT_SECONDS = 2.0
log = structlog.get_logger(__name__)

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="getHealth", summary="The process is alive")
def healthz() -> HealthResponse:
    """Always 200 while the process serves requests; checks nothing else."""
    return HealthResponse()


@router.get(
    "/readyz",
    operation_id="getReadiness",
    summary="Redis, the broker (Kafka or Pub/Sub) and the warehouse answer",
    response_model=ReadyResponse,
    responses={503: {"model": NotReadyResponse, "description": "A dependency failed."}},
)
def readyz(app: ServicesDep) -> ReadyResponse | JSONResponse:
    """200 when every dependency answers, else 503 naming the ones that did not."""
    checks = {
        "redis": _check_store("redis", app.hot.ping),
        **_check_broker(app.settings),
        "warehouse": _check_store("warehouse", app.warehouse.ping),
    }
    failed = [name for name, check in checks.items() if check.status == "failed"]
    if not failed:
        return ReadyResponse(checks=checks)
    message = "; ".join(f"{name}: {checks[name].detail}" for name in failed)
    return error_response(
        503,
        "not_ready",
        f"not ready: {message}",
        checks={name: check.model_dump() for name, check in checks.items()},
    )


@router.get(
    "/metrics",
    operation_id="getPrometheusMetrics",
    summary="Prometheus exposition of the API's own metrics",
    response_class=Response,
)
def prometheus(app: ServicesDep) -> Response:
    """The request counter and latency histogram in the text exposition format."""
    return Response(generate_latest(app.registry), media_type=CONTENT_TYPE_LATEST)


def _check_store(name: str, ping: Callable[[], None]) -> CheckOut:
    """The store's state; why it failed goes to the log, not to the caller (paths, hosts)."""
    try:
        ping()
    except SinkError as exc:
        log.warning("readiness_check_failed", check=name, error=str(exc))
        return CheckOut(status="failed", detail="did not answer (the server log has why)")
    return CheckOut(status="ok")


def _check_broker(settings: Settings) -> dict[str, CheckOut]:
    """The broker ingest publishes to: Kafka, or the Pub/Sub events topic."""
    if settings.ingest_broker == "pubsub":
        return {"pubsub": _check_pubsub(settings.pubsub_project, settings.pubsub_topic)}
    return {"kafka": _check_kafka(settings.kafka_servers)}


def _check_pubsub(project: str, topic: str) -> CheckOut:
    from google.api_core.exceptions import GoogleAPICallError, RetryError
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    try:
        publisher.get_topic(
            topic=publisher.topic_path(project, topic), timeout=BROKER_TIMEOUT_SECONDS
        )
    except (GoogleAPICallError, RetryError) as exc:
        log.warning("readiness_check_failed", check="pubsub", error=str(exc))
        return CheckOut(status="failed", detail=f"topic {topic} of {project} did not answer")
    finally:
        publisher.stop()
    return CheckOut(status="ok")


def _check_kafka(servers: str) -> CheckOut:
    try:
        admin = AdminClient(
            {"bootstrap.servers": servers}, logger=logging.getLogger("riffle.api.kafka")
        )
        admin.list_topics(timeout=BROKER_TIMEOUT_SECONDS)
    except KafkaException as exc:
        log.warning("readiness_check_failed", check="kafka", error=str(exc))
        return CheckOut(status="failed", detail=f"broker {servers} unreachable")
    return CheckOut(status="ok")
