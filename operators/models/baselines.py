"""Reference detectors for the NAB harness: NAB's windowed Gaussian and River's HalfSpaceTrees.

They are here to measure Riffle's detector against, not for production:
the windowed Gaussian keeps thousands of raw values and HalfSpaceTrees a
forest, both far heavier to snapshot than :mod:`operators.models.anomaly`.
"""

from __future__ import annotations

import math
from collections import deque

from river import anomaly, preprocessing

from riffle.operators.models.base import AnomalyScore, label_for

_SQRT2 = math.sqrt(2.0)


def _score(ts: int, x: float, score: float, expected: float | None, why: str) -> AnomalyScore:
    return AnomalyScore(ts, x, score, label_for(score, 0.9, 0.99), expected, None, None, 0.0, why)


class WindowedGaussianDetector:
    """NAB's ``windowedGaussian``: ``1 - Q(|z|)`` under the window's mean and deviation.

    As NAB's implementation: while the window fills (its first ``window``
    values) the mean and deviation are re-estimated after every value, then
    after every ``step`` values from the last ``window`` ones; a deviation of
    0 counts as 1e-6. A score of exactly 1.0 (the tail below double
    precision, ``|z|`` above ~8.3) is where NAB's published threshold sits.
    """

    name = "windowed_gaussian"
    # Welford's running sum of squares while the window fills; a class
    # default so that snapshots taken before it existed still restore.
    m2 = 0.0

    def __init__(self, *, window: int = 6400, step: int = 100) -> None:
        self.window: deque[float] = deque(maxlen=window)
        self.step = step
        self.mean = 0.0
        self.std = 1.0
        self.since = 0

    def update(self, ts: int, value: float) -> AnomalyScore:
        x = float(value)
        score = 0.0
        window = self.window
        if window:
            z = abs(x - self.mean) / self.std
            score = 1.0 - 0.5 * math.erfc(z / _SQRT2)
        if window.maxlen is None or len(window) < window.maxlen:
            window.append(x)
            if len(window) == 1:
                self.mean, self.m2 = x, 0.0
            else:
                delta = x - self.mean
                self.mean += delta / len(window)
                self.m2 += delta * (x - self.mean)
            self._set_std(self.m2 / len(window))
        else:
            window.append(x)
            self.since += 1
            if self.since >= self.step:
                self.since = 0
                count = len(window)
                self.mean = math.fsum(window) / count
                self._set_std(math.fsum((v - self.mean) ** 2 for v in window) / count)
        return _score(ts, x, score, self.mean, "tail probability under the window's Gaussian")

    def _set_std(self, variance: float) -> None:
        self.std = math.sqrt(max(variance, 0.0)) or 1e-6


class HalfSpaceTreesDetector:
    """River's ``HalfSpaceTrees`` on the min-max scaled value, scored before it learns."""

    name = "halfspacetrees"

    def __init__(self, *, seed: int = 42, window_size: int = 250) -> None:
        self.scaler = preprocessing.MinMaxScaler()
        self.model = anomaly.HalfSpaceTrees(
            n_trees=10, height=8, window_size=window_size, seed=seed
        )

    def update(self, ts: int, value: float) -> AnomalyScore:
        x = float(value)
        # River's methods are untyped.
        self.scaler.learn_one({"x": x})  # type: ignore[no-untyped-call]
        features = self.scaler.transform_one({"x": x})  # type: ignore[no-untyped-call]
        score = float(self.model.score_one(features))  # type: ignore[no-untyped-call]
        self.model.learn_one(features)  # type: ignore[no-untyped-call]
        return _score(ts, x, min(1.0, max(0.0, score)), None, "isolation by half-space trees")
