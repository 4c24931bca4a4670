"""Plain-language insights about stored windows, with the numbers behind each statement.

Four kinds, each a pure function of window values, so the same stored
windows always give the same feed:

``trend``
    Mann-Kendall test (Kendall's tau between window index and value; SciPy's
    normal approximation with the tie correction) and the Theil-Sen slope,
    a median of pairwise slopes that a few outliers cannot tilt. Reported
    when ``p < alpha``; strength is ``|tau|``.
``change_point``
    River's ADWIN over the values: it keeps an adaptive window and cuts it
    when two sub-windows' means differ beyond its (variance-aware) bound.
    ADWIN says *that* the mean moved; the change is placed at the cut of the
    segment since the previous change that best separates two means (the
    largest between-segment sum of squares), and reported with both means.
``top_mover``
    Series whose total (count and sum metrics) or mean value (the others)
    moved most against the previous period of the same length.
``unusual``
    Windows the metric's anomaly detector labelled ``anomaly``: the detector
    already judges a value against the usual one for its time of day, so
    these are the unusual values *given seasonality*.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from river import drift
from scipy import stats

from riffle.config.durations import format_duration
from riffle.operators.records import Dims

Kind = Literal["trend", "change_point", "top_mover", "unusual"]
Point = tuple[int, float]
"""``(window start ms, value)``."""

ADDITIVE = frozenset({"count", "sum"})


@dataclass(frozen=True, slots=True)
class Insight:
    """One statement, what it is about, and the numbers it rests on."""

    kind: Kind
    metric: str
    statement: str
    strength: float
    """How strong the evidence is, comparable within a kind (|tau|, |relative change|, ...)."""
    numbers: dict[str, Any] = field(default_factory=dict)
    dims: dict[str, str] = field(default_factory=dict)
    ts: int | None = None


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _label(metric: str, dims: Mapping[str, str]) -> str:
    if not dims:
        return metric
    return metric + "{" + ", ".join(f"{k}={v}" for k, v in sorted(dims.items())) + "}"


def trend(
    metric: str,
    points: Sequence[Point],
    window_ms: int,
    *,
    alpha: float = 0.05,
    dims: Mapping[str, str] | None = None,
) -> Insight | None:
    """A significant monotonic trend of ``points`` (at least 8), else ``None``."""
    if len(points) < 8:
        return None
    values = [v for _, v in points]
    if max(values) == min(values):
        return None
    index = list(range(len(values)))
    tau, p = stats.kendalltau(index, values)
    if not math.isfinite(tau) or not p < alpha:
        return None
    slope, intercept, _, _ = stats.theilslopes(values, index)
    first, last = intercept, intercept + slope * (len(values) - 1)
    change = (last - first) / abs(first) if first else math.inf
    direction = "rising" if tau > 0 else "falling"
    per = format_duration_ms(window_ms)
    pct = f", {change * 100:+.0f}% over the period" if math.isfinite(change) else ""
    statement = (
        f"{_label(metric, dims or {})} is {direction}: {slope:+.3g} per {per} (Theil-Sen)"
        f"{pct}; Mann-Kendall tau {tau:.2f}, p {p:.2g}, {len(values)} windows"
    )
    return Insight(
        "trend",
        metric,
        statement,
        abs(float(tau)),
        {
            "tau": float(tau),
            "p_value": float(p),
            "slope_per_window": float(slope),
            "fitted_start": float(first),
            "fitted_end": float(last),
            "relative_change": float(change) if math.isfinite(change) else None,
            "windows": len(values),
        },
        dict(dims or {}),
        points[-1][0],
    )


def format_duration_ms(ms: int) -> str:
    """``60000`` → ``1m``: a window length as the spec writes it."""
    from datetime import timedelta

    return format_duration(timedelta(milliseconds=ms))


def change_points(
    metric: str,
    points: Sequence[Point],
    *,
    delta: float = 0.002,
    dims: Mapping[str, str] | None = None,
) -> list[Insight]:
    """Where ADWIN found the mean of ``points`` changed (see the module docstring)."""
    detector = drift.ADWIN(delta=delta)  # type: ignore[no-untyped-call]
    values = [v for _, v in points]
    out: list[Insight] = []
    segment = 0
    for i, value in enumerate(values):
        detector.update(value)  # type: ignore[no-untyped-call]
        if not detector.drift_detected:
            continue
        at = _split(values, segment, i + 1)
        before = values[segment:at]
        after = values[at : i + 1]
        if not before or not after:
            continue
        mean_before, mean_after = sum(before) / len(before), sum(after) / len(after)
        change = (mean_after - mean_before) / abs(mean_before) if mean_before else math.inf
        pct = f" ({change * 100:+.0f}%)" if math.isfinite(change) else ""
        out.append(
            Insight(
                "change_point",
                metric,
                f"{_label(metric, dims or {})} changed level around {_when(points[at][0])}:"
                f" mean {_fmt(mean_before)} before, {_fmt(mean_after)} after{pct}"
                f" (ADWIN, detected at {_when(points[i][0])})",
                abs(change) if math.isfinite(change) else abs(mean_after - mean_before),
                {
                    "mean_before": mean_before,
                    "mean_after": mean_after,
                    "relative_change": change if math.isfinite(change) else None,
                    "changed_at": points[at][0],
                    "detected_at": points[i][0],
                    "windows_before": len(before),
                    "windows_after": len(after),
                },
                dict(dims or {}),
                points[at][0],
            )
        )
        segment = at
    return out


def _split(values: Sequence[float], start: int, end: int) -> int:
    """The cut of ``values[start:end]`` that best separates two means (largest between-SS)."""
    best, best_at = -1.0, start + 1
    total = sum(values[start:end])
    left = 0.0
    for k in range(start + 1, end):
        left += values[k - 1]
        n1, n2 = k - start, end - k
        gap = left / n1 - (total - left) / n2
        score = n1 * n2 / (n1 + n2) * gap * gap
        if score > best:
            best, best_at = score, k
    return best_at


def top_movers(
    metric: str,
    aggregation: str,
    current: Mapping[Dims, Sequence[float]],
    previous: Mapping[Dims, Sequence[float]],
    *,
    period: str,
    k: int = 3,
    min_change: float = 0.1,
) -> list[Insight]:
    """The ``k`` series that moved most (absolute change) against the previous period.

    A series counts when it has windows in both periods and its relative
    change is at least ``min_change``. Count and sum metrics compare totals,
    the others the mean window value.
    """
    additive = aggregation in ADDITIVE
    moves = []
    for dims, values in current.items():
        before = previous.get(dims)
        if not values or not before:
            continue
        now_v = sum(values) if additive else sum(values) / len(values)
        then_v = sum(before) if additive else sum(before) / len(before)
        if then_v == 0:
            continue
        change = (now_v - then_v) / abs(then_v)
        if abs(change) < min_change:
            continue
        moves.append((-abs(now_v - then_v), dims, now_v, then_v, change))
    moves.sort(key=lambda m: (m[0], m[1]))
    what = "total" if additive else "mean"
    out = []
    for _, dims, now_v, then_v, change in moves[:k]:
        named = dict(dims)
        verb = "rose" if change > 0 else "fell"
        out.append(
            Insight(
                "top_mover",
                metric,
                f"{_label(metric, named)} {verb} {abs(change) * 100:.0f}% versus the previous"
                f" {period} ({what} {_fmt(then_v)} → {_fmt(now_v)})",
                abs(change),
                {"current": now_v, "previous": then_v, "relative_change": change, "measure": what},
                named,
            )
        )
    return out


def unusual(rows: Sequence[Mapping[str, Any]], *, k: int = 10) -> list[Insight]:
    """The ``k`` highest-scored anomaly rows (as :meth:`ModelStore.anomalies` gives them)."""
    chosen = sorted(
        (r for r in rows if r["label"] == "anomaly"),
        key=lambda r: (-r["score"], -r["window_start"], r["metric"], str(r["dims"])),
    )[:k]
    out = []
    for r in chosen:
        dims = r["dims"] if isinstance(r["dims"], dict) else {}
        low, high = r.get("expected_low"), r.get("expected_high")
        expected = (
            f", expected {_fmt(low)}–{_fmt(high)}" if low is not None and high is not None else ""
        )
        out.append(
            Insight(
                "unusual",
                r["metric"],
                f"{_label(r['metric'], dims)} was {_fmt(r['value'])} at"
                f" {_when(r['window_start'])}{expected} (anomaly score {r['score']:.2f},"
                f" {r['detector']})",
                float(r["score"]),
                {
                    "value": r["value"],
                    "expected": r.get("expected"),
                    "expected_low": low,
                    "expected_high": high,
                    "score": r["score"],
                    "deviation": r.get("deviation"),
                },
                dict(dims),
                r["window_start"],
            )
        )
    return out


ORDER: dict[str, int] = {"unusual": 0, "change_point": 1, "trend": 2, "top_mover": 3}


def ranked(found: Sequence[Insight], limit: int) -> list[Insight]:
    """The feed: by kind (unusual first), then strength, then metric and time; at most ``limit``."""
    return sorted(
        found,
        key=lambda i: (ORDER[i.kind], -i.strength, i.metric, sorted(i.dims.items()), i.ts or 0),
    )[:limit]
