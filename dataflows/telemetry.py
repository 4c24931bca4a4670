"""Prometheus metrics of the dataflow (``riffle_dataflow_*``).

Every event read is counted once in ``events_in`` and once in exactly one of
``ok``, ``dead`` or ``late`` (``riffle_dataflow_events_total{outcome=...}``),
so in = ok + dead + late holds at every scrape.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from operators.ingest import BatchResult
from operators.records import DeadLetter, WindowResult

_LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class FlowTelemetry:
    """The dataflow's metrics in one registry (the process default unless given)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.events_in = Counter(
            "riffle_dataflow_events_in", "Events read from the source.", registry=registry
        )
        self.events = Counter(
            "riffle_dataflow_events",
            "Events by outcome: ok, dead or late.",
            ["outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "riffle_dataflow_dead_letters",
            "Dead letters by failure type.",
            ["failure_type"],
            registry=registry,
        )
        self.windows = Counter(
            "riffle_dataflow_windows_emitted",
            "Window emissions by kind: partial or final.",
            ["kind"],
            registry=registry,
        )
        self.corrections = Counter(
            "riffle_dataflow_window_corrections",
            "Closed windows re-emitted because a partition woke up behind the others.",
            registry=registry,
        )
        self.dropped_after_close = Counter(
            "riffle_dataflow_dropped_after_close",
            "Partial aggregates that arrived after their window's correction horizon.",
            registry=registry,
        )
        self.emit_lag = Histogram(
            "riffle_dataflow_window_emit_lag_seconds",
            "Wall-clock time from a window's end to its final emission.",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.watermark_lag = Gauge(
            "riffle_dataflow_watermark_lag_seconds",
            "Wall clock minus the partition's watermark.",
            ["partition"],
            registry=registry,
        )
        for outcome in ("ok", "dead", "late"):
            self.events.labels(outcome)

    def batch(self, result: BatchResult) -> None:
        """Count one ingested batch."""
        self.events_in.inc(result.seen)
        self.events.labels("ok").inc(result.ok)
        self.events.labels("late").inc(result.late)
        self.events.labels("dead").inc(len(result.dead) - result.late)

    def dead(self, letters: list[DeadLetter]) -> None:
        """Count dead letters by type."""
        for letter in letters:
            self.dead_letters.labels(letter.failure_type).inc()

    def emitted(self, results: list[WindowResult]) -> None:
        """Count window emissions and the lag of finals."""
        for result in results:
            if result.is_final:
                self.windows.labels("final").inc()
                self.emit_lag.observe(max(0.0, (result.emitted_at - result.window_end) / 1000))
            else:
                self.windows.labels("partial").inc()
