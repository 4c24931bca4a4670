"""Creating the Pub/Sub topics and subscriptions Riffle uses, as :mod:`sources.topics`
does for Kafka.

:func:`ensure_pubsub` is idempotent: what exists is left as it is (a setting
that differs from the wanted one is logged, not changed, like a Kafka topic's
partition count), what is missing is created. A subscription gets an
ack deadline, a retention, exactly-once delivery (Pub/Sub then never
redelivers an acknowledged message within the deadline) and, given a dead-letter
topic, a dead-letter policy: a message nobody could process after ``max_delivery_attempts`` goes to
the dead-letter topic instead of cycling forever. On Google Cloud the Pub/Sub
service account needs publisher rights on that topic and subscriber rights on
the subscription for the policy to act. ``PUBSUB_EMULATOR_HOST`` is honoured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import structlog

from riffle.config.errors import RiffleError
from riffle.config.settings import Settings

log = structlog.get_logger(__name__)


class PubSubProvisionError(RiffleError):
    """Pub/Sub refused to create a topic or subscription (other than: it exists)."""


@dataclass(frozen=True)
class SubscriptionPlan:
    """What a subscription should be (``dead_letter_topic`` None: no dead-letter policy)."""

    topic: str
    subscription: str
    dead_letter_topic: str | None
    ack_deadline_s: int = 60
    retention: timedelta = timedelta(days=7)
    max_delivery_attempts: int = 5
    exactly_once: bool = True


def ensure_pubsub(
    project: str, plans: Sequence[SubscriptionPlan], topics: Sequence[str] = ()
) -> list[str]:
    """Create what is missing of ``plans`` (their topics, dead-letter topics and
    subscriptions) and of ``topics`` in ``project``; the full names created (empty when
    everything existed)."""
    from google.api_core.exceptions import AlreadyExists, GoogleAPICallError
    from google.cloud import pubsub_v1
    from google.pubsub_v1 import types

    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    created: list[str] = []
    names = [*topics, *(p.topic for p in plans), *(p.dead_letter_topic or "" for p in plans)]
    try:
        for name in dict.fromkeys(publisher.topic_path(project, n) for n in names if n):
            try:
                publisher.create_topic(name=name)
                created.append(name)
            except AlreadyExists:
                pass
        for plan in plans:
            dead = plan.dead_letter_topic
            wanted = types.Subscription(
                name=subscriber.subscription_path(project, plan.subscription),
                topic=publisher.topic_path(project, plan.topic),
                ack_deadline_seconds=plan.ack_deadline_s,
                message_retention_duration=plan.retention,
                enable_exactly_once_delivery=plan.exactly_once,
                dead_letter_policy=None
                if dead is None
                else types.DeadLetterPolicy(
                    dead_letter_topic=publisher.topic_path(project, dead),
                    max_delivery_attempts=plan.max_delivery_attempts,
                ),
            )
            try:
                subscriber.create_subscription(request=wanted)
                created.append(wanted.name)
            except AlreadyExists:
                _compare(subscriber.get_subscription(subscription=wanted.name), wanted)
    except GoogleAPICallError as exc:
        raise PubSubProvisionError(f"Pub/Sub refused: {exc.message}") from None
    finally:
        subscriber.close()
    return created


def riffle_pubsub(settings: Settings) -> tuple[list[SubscriptionPlan], list[str]]:
    """The subscriptions and extra topics ``settings`` use on Pub/Sub: the events
    subscription; with ``source=pubsub`` also the flow's dead-letter topic and the
    notifier's alerts subscription (no dead-letter policy: the notifier acknowledges a
    transition it cannot parse itself, counted as bad)."""
    plans = [
        SubscriptionPlan(
            topic=settings.pubsub_topic,
            subscription=settings.pubsub_subscription,
            dead_letter_topic=settings.pubsub_deadletter_topic,
        )
    ]
    if settings.source != "pubsub":
        return plans, []
    alerts = SubscriptionPlan(
        topic=settings.pubsub_alerts_topic,
        subscription=settings.pubsub_alerts_subscription,
        dead_letter_topic=None,
    )
    return [*plans, alerts], [settings.pubsub_flow_deadletter_topic]


def _compare(has: object, wanted: object) -> None:
    """Log each setting of an existing subscription that differs from the plan."""
    for field in (
        "topic",
        "ack_deadline_seconds",
        "message_retention_duration",
        "enable_exactly_once_delivery",
        "dead_letter_policy",
    ):
        if getattr(has, field) != getattr(wanted, field):
            log.warning(
                "subscription_setting_differs",
                subscription=getattr(wanted, "name", ""),
                setting=field,
                has=str(getattr(has, field)),
                wanted=str(getattr(wanted, field)),
            )
