"""Online forecasts with self-calibrating intervals, and their running skill.

:class:`HoltWintersForecaster` is additive Holt-Winters (level, damped trend,
one value per seasonal slot) updated one window at a time. Its intervals
start from the ETS(A,Ad,A) variance of an h-step error and are then
calibrated online by adaptive conformal inference: the width multiplier grows
after each miss of the one-step interval and shrinks after each hit, so the
empirical coverage converges to the nominal level whatever the residuals'
distribution. Accuracy is tracked as exponentially weighted sMAPE and MAE of
the one-step forecast beside the same figures for the seasonal-naive
forecast (the value one season ago), so ``skill > 0`` means better than naive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from riffle.operators.models.base import Forecast


@dataclass(frozen=True, slots=True)
class ForecastSkill:
    """Running accuracy of the one-step forecast beside seasonal-naive."""

    n: int
    mae: float
    smape: float
    naive_mae: float
    naive_smape: float
    coverage: float

    @property
    def skill(self) -> float:
        """``1 - MAE / naive MAE``: positive when the model beats seasonal-naive."""
        return 1.0 - self.mae / self.naive_mae if self.naive_mae > 0 else 0.0


def _smape(actual: float, predicted: float) -> float:
    denominator = abs(actual) + abs(predicted)
    return 0.0 if denominator == 0 else 200.0 * abs(actual - predicted) / denominator


class HoltWintersForecaster:
    """Additive damped Holt-Winters over windows of ``step_ms``; ``season`` windows per cycle.

    ``season=0`` turns seasonality off. ``level`` is the nominal interval
    coverage. The state is a handful of floats and two lists of ``season``
    floats (the seasonal indices and the last season's values).
    """

    name = "holt_winters"

    __slots__ = (
        "_err_var",
        "_hist",
        "_last_ts",
        "_level",
        "_mult",
        "_n",
        "_pending",
        "_seasonal",
        "_stats",
        "_trend",
        "alpha",
        "beta",
        "gamma",
        "level",
        "phi",
        "rate",
        "season",
        "step_ms",
        "track",
    )

    def __init__(
        self,
        *,
        step_ms: int,
        season: int = 0,
        alpha: float = 0.2,
        beta: float = 0.02,
        gamma: float = 0.15,
        phi: float = 0.95,
        level: float = 0.9,
        rate: float = 0.02,
        track: float = 0.02,
    ) -> None:
        self.step_ms = step_ms
        self.season = season
        self.alpha, self.beta, self.gamma, self.phi = alpha, beta, gamma, phi
        self.level = level
        self.rate = rate
        self.track = track
        self._n = 0
        self._level = 0.0
        self._trend = 0.0
        self._seasonal = [0.0] * season
        self._hist = [math.nan] * season
        self._last_ts = 0
        self._err_var = 0.0
        self._mult = 1.0
        self._pending: tuple[float, float, float] | None = None
        # n, mae, smape, naive mae, naive smape, coverage
        self._stats = [0.0, 0.0, 0.0, 0.0, 0.0, level]

    def __getstate__(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def _slot(self, ts: int) -> int:
        return (ts // self.step_ms) % self.season if self.season else 0

    def learn_one(self, ts: int, value: float) -> None:
        """Learn the final value of the window starting at ``ts``."""
        x = float(value)
        if not math.isfinite(x):
            return
        slot = self._slot(ts)
        if self._n == 0:
            self._level = x
            self._n = 1
            self._last_ts = ts
            if self.season:
                self._hist[slot] = x
            return
        self._score_pending(ts, x, slot)
        seas = self._seasonal[slot] if self.season else 0.0
        prev_level, damped = self._level, self.phi * self._trend
        error = x - (prev_level + damped + seas)
        warm = self._n < 3 * max(self.season, 10)
        a = max(self.alpha, 1.0 / (self._n + 1)) if warm else self.alpha
        self._level = prev_level + damped + a * error
        self._trend = damped + self.beta * (self._level - prev_level - damped)
        if self.season:
            g = max(self.gamma, 0.5) if self._n < 2 * self.season else self.gamma
            self._seasonal[slot] = seas + g * (1 - a) * error
            self._hist[slot] = x
        w = max(self.track, 1.0 / self._n)
        self._err_var += w * (error * error - self._err_var)
        self._n += 1
        self._last_ts = ts
        self._pending = self._one_step(ts + self.step_ms)

    def _one_step(self, ts: int) -> tuple[float, float, float]:
        mean, half = self._predict(1, ts)
        naive = self._hist[self._slot(ts)] if self.season else self._level
        return mean, half, naive

    def _score_pending(self, ts: int, x: float, slot: int) -> None:
        pending = self._pending
        if pending is None:
            return
        mean, half, naive = pending
        stats = self._stats
        stats[0] += 1
        w = max(self.track, 1.0 / stats[0])
        stats[1] += w * (abs(x - mean) - stats[1])
        stats[2] += w * (_smape(x, mean) - stats[2])
        if not math.isnan(naive):
            stats[3] += w * (abs(x - naive) - stats[3])
            stats[4] += w * (_smape(x, naive) - stats[4])
        miss = 0.0 if abs(x - mean) <= half else 1.0
        stats[5] += w * ((1.0 - miss) - stats[5])
        # Adaptive conformal step: widen after a miss, narrow after a hit.
        self._mult = max(0.05, self._mult * math.exp(self.rate * (miss - (1.0 - self.level))))

    def _predict(self, h: int, ts: int) -> tuple[float, float]:
        phi = self.phi
        damp_sum = sum(phi**j for j in range(1, h + 1))
        seas = self._seasonal[self._slot(ts)] if self.season else 0.0
        mean = self._level + damp_sum * self._trend + seas
        # ETS(A,Ad,A) h-step variance factor: 1 + sum of squared error weights.
        factor = 1.0
        acc = 0.0
        for j in range(1, h):
            acc += phi**j
            c = self.alpha * (1 + self.beta * acc)
            if self.season and j % self.season == 0:
                c += self.gamma * (1 - self.alpha)
            factor += c * c
        z = _normal_quantile(0.5 + self.level / 2)
        half = z * math.sqrt(self._err_var * factor) * self._mult
        return mean, half

    def forecast(self, horizon: int) -> Forecast:
        """The next ``horizon`` windows after the last one learned.

        Same numbers as :meth:`_predict` per step, with its sums carried from
        one step to the next (linear in ``horizon`` instead of quadratic).
        """
        phi, alpha, beta, gamma = self.phi, self.alpha, self.beta, self.gamma
        z = _normal_quantile(0.5 + self.level / 2)
        points = []
        damp_sum = 0.0
        factor, acc = 1.0, 0.0
        for h in range(1, horizon + 1):
            ts = self._last_ts + h * self.step_ms
            damp_sum += phi**h
            if h > 1:
                j = h - 1
                acc += phi**j
                c = alpha * (1 + beta * acc)
                if self.season and j % self.season == 0:
                    c += gamma * (1 - alpha)
                factor += c * c
            seas = self._seasonal[self._slot(ts)] if self.season else 0.0
            mean = self._level + damp_sum * self._trend + seas
            half = z * math.sqrt(self._err_var * factor) * self._mult
            points.append((ts, mean, mean - half, mean + half))
        return Forecast(self._last_ts, self.level, tuple(points))

    @property
    def skill(self) -> ForecastSkill:
        """Running accuracy of the one-step forecast (see :class:`ForecastSkill`)."""
        n, mae, smape, naive_mae, naive_smape, coverage = self._stats
        return ForecastSkill(int(n), mae, smape, naive_mae, naive_smape, coverage)


def _normal_quantile(p: float) -> float:
    """Inverse of the standard normal CDF (Acklam's rational approximation, ~1e-9)."""
    a = (
        -39.69683028665376,
        220.9460984245205,
        -275.9285104469687,
        138.3577518672690,
        -30.66479806614716,
        2.506628277459239,
    )
    b = (
        -54.47609879822406,
        161.5858368580409,
        -155.6989798598866,
        66.80131188771972,
        -13.28068155288572,
    )
    c = (
        -0.007784894002430293,
        -0.3223964580411365,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    )
    d = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1
        )
    if p > 1 - 0.02425:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        * q
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    )
