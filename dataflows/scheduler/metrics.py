"""``riffle_scheduler_*``: runs by outcome, their durations, missed fire times, leadership."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram


class SchedulerMetrics:
    """The scheduler's Prometheus metrics, on ``registry``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.runs = Counter(
            "riffle_scheduler_runs",
            "Attempts at scheduled runs by kind and outcome (succeeded, retrying, failed, "
            "cancelled).",
            ["kind", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "riffle_scheduler_run_duration_seconds",
            "Time one attempt at a run took.",
            ["kind"],
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=registry,
        )
        self.missed = Counter(
            "riffle_scheduler_missed_runs",
            "Fire times that fell while no scheduler ran, folded into the next run.",
            ["kind"],
            registry=registry,
        )
        self.leader = Gauge(
            "riffle_scheduler_leader", "1 while this scheduler holds the lease.", registry=registry
        )
        self.queued = Gauge(
            "riffle_scheduler_queued_runs", "Runs waiting or in flight.", registry=registry
        )
