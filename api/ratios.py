"""Ratio metrics (``ratios:`` in the spec): one stored metric divided by another, exactly.

A ratio is never stored. Its numerator and denominator are ``count`` or
``sum`` metrics with the same window; a ratio window, bucket or group is the
*sum* of the numerator's windows over the *sum* of the denominator's (both
first merged over the series of the group), so a daily conversion rate is
total purchases over total sessions — never a mean of per-minute rates.
A denominator of zero, or none at all, gives no value (``None``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from riffle.api.rollup import Bucket, Grid
from riffle.api.series import Series, group_series
from riffle.config.spec import MetricSpec, PipelineSpec, RatioSpec
from riffle.operators.records import Dims, WindowResult


def as_metric(spec: PipelineSpec, ratio: RatioSpec) -> MetricSpec:
    """The ratio seen as a metric for request checks: its name and dimensions, the parts' window.

    Parameter validation (dimensions, steps, ranges) then works as for any metric.
    """
    numerator = spec.metric(ratio.numerator)
    assert numerator is not None  # checked when the spec loaded
    return numerator.model_copy(
        update={"name": ratio.name, "dimensions": list(ratio.dimensions), "max_values": None}
    )


def parts(spec: PipelineSpec, ratio: RatioSpec) -> tuple[MetricSpec, MetricSpec]:
    """The numerator and denominator metrics."""
    numerator, denominator = spec.metric(ratio.numerator), spec.metric(ratio.denominator)
    # Both were checked when the spec loaded.
    assert numerator is not None
    assert denominator is not None
    return numerator, denominator


def divide(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``; ``None`` without a (non-zero) denominator."""
    if not denominator:
        return None
    return (numerator or 0.0) / denominator


def ratio_series(
    ratio: RatioSpec, numerator: Iterable[Series], denominator: Iterable[Series], by: list[str]
) -> list[Series]:
    """Ratio windows per group of ``by`` values, window by window.

    Each side is first merged over the series of the group (sums add exactly).
    A window is final when every side present is final; ``sum`` and ``count``
    are the numerator's, ``detail`` holds both totals.
    """
    tops = dict(group_series(numerator, by, "sum"))
    bottoms = dict(group_series(denominator, by, "sum"))
    out: list[Series] = []
    for dims in sorted(tops.keys() | bottoms.keys()):
        above = {w.window_start: w for w in tops.get(dims, [])}
        below = {w.window_start: w for w in bottoms.get(dims, [])}
        windows = [
            _window(ratio, dims, above.get(start), below.get(start))
            for start in sorted(above.keys() | below.keys())
        ]
        out.append((dims, windows))
    return out


def _window(
    ratio: RatioSpec, dims: Dims, top: WindowResult | None, bottom: WindowResult | None
) -> WindowResult:
    present = [w for w in (top, bottom) if w is not None]
    first = present[0]
    above = 0.0 if top is None else top.sum
    below = 0.0 if bottom is None else bottom.sum
    return WindowResult(
        tenant=first.tenant,
        metric=ratio.name,
        dims=dims,
        window_start=first.window_start,
        window_end=first.window_end,
        count=0 if top is None else top.count,
        sum=above,
        min=None,
        max=None,
        value=divide(above, below),
        is_final=all(w.is_final for w in present),
        revision=sum(w.revision for w in present),
        emitted_at=max(w.emitted_at for w in present),
        detail={"numerator": above, "denominator": below},
    )


def ratio_grid_points(numerator: Grid, denominator: Grid) -> dict[Dims, dict[int, dict[str, Any]]]:
    """Per group and bucket: the ratio of the summed parts, with both totals."""
    out: dict[Dims, dict[int, dict[str, Any]]] = {}
    for dims in numerator.keys() | denominator.keys():
        above, below = numerator.get(dims, {}), denominator.get(dims, {})
        slots = out.setdefault(dims, {})
        for start in above.keys() | below.keys():
            slots[start] = point(above.get(start), below.get(start))
    return out


def point(top: Bucket | None, bottom: Bucket | None) -> dict[str, Any]:
    """One answer point of a ratio from the merged buckets of its parts."""
    above = 0.0 if top is None else top.sum
    below = 0.0 if bottom is None else bottom.sum
    present = [b for b in (top, bottom) if b is not None]
    return {
        "value": divide(above, below),
        "numerator": above,
        "denominator": below,
        "windows": max(b.windows for b in present),
        "partial": any(b.partial for b in present),
    }
