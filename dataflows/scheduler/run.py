"""``riffle scheduler``: the scheduler process, standing by while another one holds the lease."""

from __future__ import annotations

import threading
from collections.abc import Mapping

import redis as redis_client
import structlog
from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from riffle.config.settings import Settings
from riffle.dataflows.scheduler.kinds import JobKind
from riffle.dataflows.scheduler.service import Scheduler, SchedulerError
from riffle.sinks.redis.schedule import ScheduleStore

log = structlog.get_logger(__name__)


def run_scheduler(
    settings: Settings,
    kinds: Mapping[str, JobKind],
    stop: threading.Event | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> None:
    """Run ``kinds`` until ``stop`` is set: take the lease (or wait for it), run, and go back
    to standing by when the lease is lost."""
    stop = stop or threading.Event()
    store = ScheduleStore(redis_client.Redis.from_url(settings.redis_url), settings.redis_prefix)
    if settings.scheduler_metrics_port:
        port = settings.scheduler_metrics_port
        start_http_server(port, addr=settings.api_host, registry=registry)
    log.info("scheduler_starting", kinds=sorted(kinds), lease_s=settings.scheduler_lease_seconds)
    scheduler = Scheduler(
        kinds,
        store,
        lease_s=settings.scheduler_lease_seconds,
        workers=settings.scheduler_workers,
        max_attempts=settings.scheduler_max_attempts,
        backoff_s=settings.scheduler_backoff_seconds,
        registry=registry,
    )
    while not stop.is_set():
        if not scheduler.start(wait_s=None, stop=stop):
            return
        lost = False
        try:
            scheduler.run(stop)
        except SchedulerError as exc:
            lost = True
            log.warning("scheduler_standing_by", reason=str(exc))
        finally:
            scheduler.close(release=not lost)
