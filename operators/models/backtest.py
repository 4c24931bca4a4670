"""Replaying a detector and a forecaster over stored windows: what they would have said.

:func:`backtest` feeds each series' final windows, in order, to the same
:class:`~operators.models.series.ShardModels` the dataflow's model stage
keeps — same detector classes, same labelling, same forecaster — so tuning a
threshold here predicts what the stream will flag. Windows that are not final
or have no value are skipped, exactly as the stream skips them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from riffle.config.models import AnomalySpec, ForecastSpec
from riffle.operators.models.forecast import ForecastSkill
from riffle.operators.models.series import AnomalyRecord, ShardModels
from riffle.operators.records import Dims, WindowResult


@dataclass(frozen=True, slots=True)
class Flag:
    """One scored window of the replay."""

    dims: Dims
    window_start: int
    value: float
    score: float
    label: str
    explanation: str


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    """What the replay of one series gave: counts of labels and the forecaster's skill."""

    dims: Dims
    windows: int
    scored: int
    warnings: int
    anomalies: int
    smape: float | None
    naive_smape: float | None
    coverage: float | None


@dataclass(frozen=True, slots=True)
class BacktestReport:
    """Every scored window (``flags``) and one summary per series."""

    detector: str
    threshold: float
    flags: tuple[Flag, ...]
    series: tuple[SeriesSummary, ...]

    @property
    def anomalies(self) -> int:
        """Windows labelled anomaly over all series."""
        return sum(s.anomalies for s in self.series)


def backtest(
    series: Sequence[tuple[Dims, Sequence[WindowResult]]],
    *,
    metric: str,
    window_ms: int,
    anomaly: AnomalySpec,
    forecast: ForecastSpec | None,
) -> BacktestReport:
    """Replay each series of ``metric`` through fresh models; see the module docstring."""
    shard = ShardModels({metric: (window_ms, anomaly, forecast)})
    horizons = {metric: forecast.horizon} if forecast is not None else {}
    flags: list[Flag] = []
    summaries: list[SeriesSummary] = []
    for dims, windows in series:
        counts = {"normal": 0, "warning": 0, "anomaly": 0, "learning": 0}
        finals = sorted(
            (w for w in windows if w.is_final and w.value is not None and w.metric == metric),
            key=lambda w: w.window_start,
        )
        skill: ForecastSkill | None = None
        for w in finals:
            for record in shard.apply(w, horizons):
                if isinstance(record, AnomalyRecord):
                    r = record.result
                    counts[r.label] += 1
                    flags.append(
                        Flag(dims, w.window_start, r.value, r.score, r.label, r.explanation)
                    )
                elif record.skill.n:
                    skill = record.skill
        summaries.append(
            SeriesSummary(
                dims,
                len(finals),
                len(finals) - counts["learning"],
                counts["warning"],
                counts["anomaly"],
                skill.smape if skill else None,
                skill.naive_smape if skill else None,
                skill.coverage if skill else None,
            )
        )
    return BacktestReport(anomaly.detector, anomaly.threshold, tuple(flags), tuple(summaries))
