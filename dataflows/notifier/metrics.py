"""The notifier's Prometheus metrics."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from riffle.sinks.channels.base import Channel


class NotifyMetrics:
    """``riffle_notify_*``: deliveries by outcome, delay from flush to delivery, groups."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.deliveries = Counter(
            "riffle_notify_deliveries",
            "Notification deliveries by receiver, channel and outcome (delivered, dead).",
            ["receiver", "channel", "outcome"],
            registry=registry,
        )
        self.delay = Histogram(
            "riffle_notify_delivery_delay_seconds",
            "Wall-clock time from a group's flush to the channel accepting the notification.",
            ["channel"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=registry,
        )
        self.groups = Gauge("riffle_notify_groups", "Aggregation groups held.", registry=registry)
        self.transitions = Counter(
            "riffle_notify_transitions",
            "Transitions read from the alerts topic, by outcome (applied, duplicate, bad).",
            ["outcome"],
            registry=registry,
        )

    def expect(self, channels: Mapping[str, list[Channel]]) -> None:
        """Expose every receiver's channels at 0 deliveries of each outcome from the start,
        so alert rules on their rate see a series before the first delivery."""
        for receiver, kinds in channels.items():
            for channel in kinds:
                for outcome in ("delivered", "dead"):
                    self.deliveries.labels(receiver, channel.kind, outcome)
