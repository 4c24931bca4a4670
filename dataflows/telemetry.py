"""Prometheus metrics of the dataflow (``riffle_dataflow_*``).

Every event read is counted once in ``events_in`` and once in exactly one of
``ok``, ``dead``, ``late`` or ``duplicate``
(``riffle_dataflow_events_total{outcome=...}``), so
in = ok + dead + late + duplicate holds at every scrape.

Recoverable state is watched per stage (``ingest``: one key per source
partition; ``windows``: one key per aggregation shard): how long each
``snapshot()`` takes, how long ago the stage last snapshotted, how many
bytes its state pickles to, and how many windows the windows stage holds.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from riffle.operators.ingest import BatchResult
from riffle.operators.records import DeadLetter, WindowResult

_LAG_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
_SNAPSHOT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5)
STAGES = ("ingest", "windows")
"""The stateful stages: ``ingest`` (per source partition) and ``windows`` (per shard)."""


class FlowTelemetry:
    """The dataflow's metrics in one registry (the process default unless given)."""

    def __init__(
        self, registry: CollectorRegistry = REGISTRY, *, size_every_s: float = 10.0
    ) -> None:
        self.size_every_s = size_every_s
        """How often one key's state is pickled to measure its size (0: every snapshot)."""
        self.events_in = Counter(
            "riffle_dataflow_events_in", "Events read from the source.", registry=registry
        )
        self.events = Counter(
            "riffle_dataflow_events",
            "Events by outcome: ok, dead, late or duplicate.",
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
        self.capped_series = Counter(
            "riffle_dataflow_capped_series",
            "Series a capped metric (max_values) folded into its 'other' series, counted "
            "per final emission of a window.",
            ["metric"],
            registry=registry,
        )
        self.emit_lag = Histogram(
            "riffle_dataflow_window_emit_lag_seconds",
            "Wall-clock time from a window's end to its final emission.",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )
        self.source_lag = Gauge(
            "riffle_dataflow_source_lag_messages",
            "Messages of the source partition not read yet (Kafka: the high watermark at the "
            "last fetch minus the next offset; Pub/Sub: 0, see the subscription's backlog).",
            ["partition"],
            registry=registry,
        )
        self.sink_errors = Counter(
            "riffle_dataflow_sink_errors",
            "Failed write attempts by sink; each is retried with backoff until the sink "
            "gives up and stops the flow.",
            ["sink"],
            registry=registry,
        )
        self.watermark_lag = Gauge(
            "riffle_dataflow_watermark_lag_seconds",
            "Wall clock minus the partition's watermark.",
            ["partition"],
            registry=registry,
        )
        self.snapshot_duration = Histogram(
            "riffle_dataflow_snapshot_duration_seconds",
            "Time one snapshot() call of a stage's key took (Bytewax calls it every epoch "
            "for every key that changed).",
            ["stage"],
            buckets=_SNAPSHOT_BUCKETS,
            registry=registry,
        )
        self.last_snapshot = Gauge(
            "riffle_dataflow_last_snapshot_timestamp_seconds",
            "Unix time of the stage's latest snapshot.",
            ["stage"],
            registry=registry,
        )
        self.snapshot_age = Gauge(
            "riffle_dataflow_snapshot_age_seconds",
            "Seconds since the stage's latest snapshot (-1 before the first).",
            ["stage"],
            registry=registry,
        )
        self.state_bytes = Gauge(
            "riffle_dataflow_state_bytes",
            "Pickled size of the stage's recoverable state, summed over its keys "
            "(each key measured at most every size_every_s).",
            ["stage"],
            registry=registry,
        )
        self.state_keys = Gauge(
            "riffle_dataflow_state_keys",
            "Keys of the stage that have snapshotted state in this process.",
            ["stage"],
            registry=registry,
        )
        self.state_windows = Gauge(
            "riffle_dataflow_state_windows",
            "Windows held by the windows stage: open, or closed and kept for corrections.",
            ["state"],
            registry=registry,
        )
        self._lock = threading.Lock()
        self._snapshot_at: dict[str, float] = {}
        self._bytes: dict[tuple[str, str], int] = {}
        self._sized_at: dict[tuple[str, str], float] = {}
        self._windows: dict[str, tuple[int, int]] = {}
        for outcome in ("ok", "dead", "late", "duplicate"):
            self.events.labels(outcome)
        for stage in STAGES:
            self.snapshot_duration.labels(stage)
            self.state_bytes.labels(stage)
            self.state_keys.labels(stage)
            self.snapshot_age.labels(stage).set_function(self._age_of(stage))
        for state in ("open", "closed_kept"):
            self.state_windows.labels(state)

    def batch(self, result: BatchResult) -> None:
        """Count one ingested batch."""
        self.events_in.inc(result.seen)
        self.events.labels("ok").inc(result.ok)
        self.events.labels("late").inc(result.late)
        self.events.labels("duplicate").inc(result.duplicate)
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

    def snapshotted(self, stage: str, key: str, state: object, seconds: float) -> None:
        """Account for one ``snapshot()`` of ``key`` in ``stage`` that took ``seconds``.

        The state is pickled (as recovery would) to measure it, at most every
        ``size_every_s`` per key: pickling a big shard on every epoch would
        double the cost being measured.
        """
        self.snapshot_duration.labels(stage).observe(seconds)
        now = time.monotonic()
        self.last_snapshot.labels(stage).set(time.time())
        slot = (stage, key)
        with self._lock:
            self._snapshot_at[stage] = now
            sized = self._sized_at.get(slot)
            measure = sized is None or now - sized >= self.size_every_s
            if measure:
                self._sized_at[slot] = now
        if not measure:
            return
        size = len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        with self._lock:
            self._bytes[slot] = size
            total = sum(v for (s, _k), v in self._bytes.items() if s == stage)
            keys = sum(1 for (s, _k) in self._bytes if s == stage)
        self.state_bytes.labels(stage).set(total)
        self.state_keys.labels(stage).set(keys)

    def windows_held(self, shard: str, open_windows: int, closed_kept: int) -> None:
        """The windows one shard holds now; the gauges show the sum over shards."""
        with self._lock:
            self._windows[shard] = (open_windows, closed_kept)
            opened = sum(o for o, _c in self._windows.values())
            kept = sum(c for _o, c in self._windows.values())
        self.state_windows.labels("open").set(opened)
        self.state_windows.labels("closed_kept").set(kept)

    def _age_of(self, stage: str) -> Callable[[], float]:
        def age() -> float:
            at = self._snapshot_at.get(stage)
            return -1.0 if at is None else time.monotonic() - at

        return age
