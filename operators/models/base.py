"""What every model of :mod:`operators.models` promises, and its errors.

A detector's :meth:`~AnomalyDetector.update` scores a value *before* learning
it (no look-ahead), so its score for a point never depends on that point's
own contribution to the model. Models are plain objects with ``__slots__``
and numeric state only: pickling one and unpickling it gives a model whose
next outputs are identical (the conformance suite checks it for every class).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from riffle.config.errors import RiffleError

Label = Literal["normal", "warning", "anomaly", "learning"]


class ModelError(RiffleError):
    """A model was asked for something it cannot do."""


class UnknownModelError(ModelError):
    """A detector or forecaster name that no registry holds."""


@dataclass(frozen=True, slots=True)
class AnomalyScore:
    """How unusual one value was, with the numbers that say why.

    ``score`` is in [0, 1]; ``expected_low``/``expected_high`` bound what the
    model expected for this point (``None`` while it is still learning) and
    ``deviation`` is how far outside that range the value fell, in units of
    the model's typical error (0 inside the range).
    """

    ts: int
    value: float
    score: float
    label: Label
    expected: float | None
    expected_low: float | None
    expected_high: float | None
    deviation: float
    explanation: str


class AnomalyDetector(Protocol):
    """An online detector of one series."""

    name: str

    def update(self, ts: int, value: float) -> AnomalyScore:
        """Score ``value`` at epoch-millisecond ``ts``, then learn it."""
        ...


@dataclass(frozen=True, slots=True)
class Forecast:
    """Predictions for the next windows of one series, with intervals.

    ``points`` holds ``(ts, mean, low, high)`` per step ahead; the interval
    is central with coverage ``level``.
    """

    issued_at: int
    level: float
    points: tuple[tuple[int, float, float, float], ...]


def label_for(score: float, warning: float, anomaly: float) -> Label:
    """The label of a score given the two thresholds."""
    if score >= anomaly:
        return "anomaly"
    if score >= warning:
        return "warning"
    return "normal"
