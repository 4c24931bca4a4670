"""Where the flow's outgoing topics live: Kafka, or Pub/Sub when the flow reads Pub/Sub
(``RIFFLE_SOURCE=pubsub``: a deployment on Google Cloud alone needs no Kafka)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from riffle.config.settings import Settings


@dataclass(frozen=True)
class TopicTarget:
    """A topic on ``broker``: ``address`` is the Kafka bootstrap list or the Pub/Sub project."""

    broker: Literal["kafka", "pubsub"]
    address: str
    topic: str


def dead_letters_target(settings: Settings) -> TopicTarget:
    """The topic the flow's dead letters go to."""
    if settings.source == "pubsub":
        return TopicTarget("pubsub", settings.pubsub_project, settings.pubsub_flow_deadletter_topic)
    return TopicTarget("kafka", settings.kafka_servers, settings.deadletter_topic)


def alerts_target(settings: Settings) -> TopicTarget:
    """The topic alert transitions go to (and the notifier reads)."""
    if settings.source == "pubsub":
        return TopicTarget("pubsub", settings.pubsub_project, settings.pubsub_alerts_topic)
    return TopicTarget("kafka", settings.kafka_servers, settings.alerts_topic)
