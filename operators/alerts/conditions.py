"""A rule's condition on values: comparisons and forecast intervals."""

from __future__ import annotations

from riffle.config.alerts import Comparison
from riffle.operators.alerts.instances import Interval


def compare(op: Comparison, left: float, right: float) -> bool:
    """``left op right``."""
    if op == "gt":
        return left > right
    if op == "gte":
        return left >= right
    if op == "lt":
        return left < right
    if op == "lte":
        return left <= right
    if op == "eq":
        return left == right
    return left != right


def outside(side: str, value: float, interval: Interval) -> bool:
    """Whether ``value`` breaches a forecast interval on ``side`` (outside, above, below)."""
    _mean, low, high = interval
    if side == "above":
        return value > high
    if side == "below":
        return value < low
    return value > high or value < low
