"""The alerts topic (``riffle.alerts``): every transition, for the notifier.

Value :meth:`AlertTransition.to_json`, key the instance id (one instance's
transitions stay in order in one partition).
"""

from __future__ import annotations

from collections.abc import Sequence

from confluent_kafka import KafkaError, Message, Producer

from riffle.operators.alerts.transitions import AlertTransition
from riffle.sinks.errors import SinkError


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
