"""What the alert stage evaluates."""

from __future__ import annotations

from dataclasses import dataclass

from riffle.operators.alerts.instances import Interval
from riffle.operators.records import Dims, WindowResult


@dataclass(frozen=True, slots=True)
class Observation:
    """What the alert stage evaluates: a window's value (final or partial), a window's
    anomaly score, or the forecast interval of a window still to come."""

    tenant: str
    metric: str
    dims: Dims
    window_end: int
    value: float | None
    count: int = 0
    sum: float = 0.0
    min: float | None = None
    max: float | None = None
    score: float | None = None
    final: bool = True
    interval: Interval | None = None
    """The forecast for the window ending at ``window_end`` (value is then None)."""
    history: int = 0
    """One-step forecasts the forecaster had scored when it issued ``interval``."""

    @classmethod
    def of_window(cls, w: WindowResult) -> Observation:
        return cls(
            w.tenant,
            w.metric,
            w.dims,
            w.window_end,
            w.value,
            w.count,
            w.sum,
            w.min,
            w.max,
            final=w.is_final,
        )
