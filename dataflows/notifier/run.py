"""Running the notifier for the settings' spec: its receivers' channels with their secrets
read from the environment, a metrics server, a standby until the lease is free."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping

import structlog
from prometheus_client import start_http_server

from riffle.config.notifications import NotificationsSpec
from riffle.config.settings import Settings
from riffle.config.spec import load_spec
from riffle.dataflows.notifier.feeds import KafkaFeed, PubSubFeed, TransitionFeed
from riffle.dataflows.notifier.legacy import LEGACY_SECRET_ENV, notifications_for
from riffle.dataflows.notifier.service import Notifier, NotifierError
from riffle.sinks.channels.base import Channel
from riffle.sinks.channels.registry import build_receiver

log = structlog.get_logger(__name__)


def build_channels(
    spec: NotificationsSpec, environ: Mapping[str, str] | None = None
) -> dict[str, list[Channel]]:
    """Each receiver's channels with their secrets read from ``environ`` (default: the
    process environment).

    Raises :class:`~config.notifications.NotificationConfigError` naming a missing variable.
    """
    env = os.environ if environ is None else environ
    return {r.name: build_receiver(r, env) for r in spec.receivers}


def transition_feed(settings: Settings) -> TransitionFeed:
    """The alerts subscription when the flow reads Pub/Sub (it then publishes transitions
    there), else the Kafka alerts topic."""
    if settings.source == "pubsub":
        return PubSubFeed(settings.pubsub_project, settings.pubsub_alerts_subscription)
    return KafkaFeed(settings.kafka_servers, settings.alerts_topic, settings.topic_partitions)


def run_notifier(settings: Settings, stop: threading.Event | None = None) -> None:
    """Run the notifier for the spec in ``settings`` until ``stop`` is set (or forever).

    Raises :class:`NotifierError` when neither the spec nor the settings name a receiver.
    """
    spec = load_spec(settings.spec)
    notifications = notifications_for(spec, settings)
    if notifications is None:
        raise NotifierError(
            f"{settings.spec} has no notifications: section (and RIFFLE_ALERT_WEBHOOK_URL is unset)"
        )
    environ = dict(os.environ)
    if settings.alert_webhook_url:
        environ[LEGACY_SECRET_ENV] = settings.alert_webhook_secret.get_secret_value()
    notifier = Notifier(
        notifications,
        build_channels(notifications, environ),
        feed=transition_feed(settings),
        redis_url=settings.redis_url,
        prefix=settings.redis_prefix,
        lease_s=settings.notify_lease_seconds,
        workers=settings.notify_workers,
        resend_s=settings.notify_resend_seconds,
    )
    if settings.notify_metrics_port:
        start_http_server(settings.notify_metrics_port, addr=settings.api_host)
    stop = stop or threading.Event()
    log.info("notifier_starting", lease_s=settings.notify_lease_seconds)
    if not notifier.start(wait_s=None, stop=stop):
        return
    try:
        notifier.run(stop)
    finally:
        notifier.close()
