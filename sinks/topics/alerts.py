"""The alerts topic (``riffle.alerts``): every transition, for the notifier.

Value :meth:`AlertTransition.to_json`, key the instance id (one instance's
transitions stay in order in one partition). On Pub/Sub the value is the message
data and the instance the attribute ``riffle-instance``; Pub/Sub keeps no order,
which the notifier does not need (it ignores a transition older than one it applied).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, Message, Producer

from riffle.operators.alerts.transitions import AlertTransition
from riffle.sinks.errors import SinkError
from riffle.sinks.topics.pubsub import PubSubTopic
from riffle.sinks.topics.target import TopicTarget

INSTANCE_ATTRIBUTE = "riffle-instance"


class AlertSinkError(SinkError):
    """Alert transitions could not be written (the broker did not confirm them)."""


class AlertProducer:
    """Writes transitions to the alerts topic; :meth:`send` returns once the broker has them."""

    def __init__(self, servers: str, topic: str, *, timeout_s: float = 30.0) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        self._producer = Producer(
            {"bootstrap.servers": servers, "enable.idempotence": True, "acks": "all"}
        )

    def send(self, items: Sequence[AlertTransition]) -> None:
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err.str())

        for t in items:
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        value=t.to_json(),
                        key=t.instance.encode(),
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)
            self._producer.poll(0)
        remaining = self._producer.flush(self.timeout_s)
        if failures or remaining:
            detail = failures[0] if failures else f"{remaining} not confirmed in {self.timeout_s}s"
            raise AlertSinkError(f"alerts to {self.topic!r} failed: {detail}")


class PubSubAlertProducer:
    """Writes transitions to a Pub/Sub topic; :meth:`send` returns once Pub/Sub has them."""

    def __init__(self, project: str, topic: str, *, timeout_s: float = 30.0) -> None:
        self._topic = PubSubTopic(project, topic, timeout_s=timeout_s)

    def send(self, items: Sequence[AlertTransition]) -> None:
        error = self._topic.publish(
            [(t.to_json(), {INSTANCE_ATTRIBUTE: t.instance}) for t in items]
        )
        if error is not None:
            raise AlertSinkError(f"alerts to {self._topic.path!r} failed: {error}")


def alert_sender(target: TopicTarget) -> Callable[[Sequence[AlertTransition]], None]:
    """The ``send`` of a producer for ``target`` (Kafka or Pub/Sub)."""
    if target.broker == "pubsub":
        return PubSubAlertProducer(target.address, target.topic).send
    return AlertProducer(target.address, target.topic).send
