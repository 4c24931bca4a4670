"""Publishing to a Pub/Sub topic from a sink: :meth:`PubSubTopic.publish` returns only once
the service has stored every message (or raises naming the first failure).

The dead-letter and alerts layouts (:mod:`.deadletters`, :mod:`.alerts`) put on Pub/Sub
what they put on Kafka: the value as the message data, the headers as attributes.
``PUBSUB_EMULATOR_HOST`` is honoured by the client.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future, wait


class PubSubTopic:
    """One topic of ``project``, with a publisher client of its own."""

    def __init__(self, project: str, topic: str, *, timeout_s: float = 30.0) -> None:
        import google.cloud.pubsub_v1 as pubsub_v1

        self._client = pubsub_v1.PublisherClient()
        self.path = self._client.topic_path(project, topic)
        self.timeout_s = timeout_s

    def publish(self, messages: Sequence[tuple[bytes, Mapping[str, str]]]) -> str | None:
        """Publish ``(data, attributes)`` pairs and wait; None when all were stored, else
        what went wrong first (a failure or how many were not confirmed in time)."""
        futures: list[Future[str]] = [
            self._client.publish(self.path, data, **attributes) for data, attributes in messages
        ]
        done, pending = wait(futures, timeout=self.timeout_s)
        for future in done:
            error = future.exception()
            if error is not None:
                return f"{type(error).__name__}: {error}"
        return f"{len(pending)} not confirmed in {self.timeout_s}s" if pending else None
