"""An alert instance: its identity (rule and group of series) and what it keeps between
windows besides its machine."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache

import orjson

from riffle.config.alerts import AlertRule
from riffle.operators.alerts.machine import Machine
from riffle.operators.records import Dims


@lru_cache(maxsize=1 << 16)
def instance_id(tenant: str, rule: str, group: Dims) -> str:
    """A 16-hex-digit id of an alert instance, the same in every process (memoised: the
    fan-out and the evaluator both need it for every window)."""
    return hashlib.blake2b(orjson.dumps([tenant, rule, group]), digest_size=8).hexdigest()


@dataclass(slots=True)
class Pending:
    """A merged window of several series of one group, waiting for a later window."""

    window_end: int
    count: int
    sum: float
    min: float | None
    max: float | None
    series: list[Dims] = field(default_factory=list)
    """Series merged so far: a re-emitted final of one of them is not added twice."""


Aggregate = tuple[int, float, float | None, float | None]
"""``(count, sum, min, max)`` of one series' window so far."""


@dataclass(slots=True)
class OpenWindow:
    """The newest partial aggregates of each series of a group, for one open window."""

    window_end: int
    series: dict[Dims, Aggregate] = field(default_factory=dict)

    def merged(self) -> Pending:
        values = list(self.series.values())
        lows = [v[2] for v in values if v[2] is not None]
        highs = [v[3] for v in values if v[3] is not None]
        return Pending(
            self.window_end,
            sum(v[0] for v in values),
            sum(v[1] for v in values),
            min(lows) if lows else None,
            max(highs) if highs else None,
        )


Interval = tuple[float, float, float]
"""``(mean, low, high)`` of a forecast for one window."""


@dataclass(slots=True)
class Instance:
    """One instance's machine and what its rule needs besides: the previous value
    (change rules), values by window end (change against a period), a window being
    merged (grouped rules), a provisional machine (partials) and the two halves of a
    forecast join."""

    tenant: str
    group: Dims
    machine: Machine = field(default_factory=Machine)
    previous: float | None = None
    merging: Pending | None = None
    history: dict[int, float] | None = None
    shown: Machine | None = None
    """The machine as announced by a partial raise, until the window's final."""
    expect: dict[int, Interval] | None = None
    waiting: dict[int, float] | None = None
    open: OpenWindow | None = None
    """Partials of the open window of a group (grouped rules that evaluate partials)."""


def instance_group(rule: AlertRule, dims: Dims) -> Dims:
    """The instance's labels from a series' dimensions."""
    if rule.group_by is None:
        return dims
    keep = set(rule.group_by)
    return tuple(pair for pair in dims if pair[0] in keep)


def merged_value(aggregation: str, p: Pending) -> float | None:
    """The metric's value of a merged window (count, sum, avg, min, max only)."""
    if aggregation == "count":
        return float(p.count)
    if aggregation == "sum":
        return p.sum
    if aggregation == "avg":
        return p.sum / p.count if p.count else None
    if aggregation == "min":
        return p.min
    if aggregation == "max":
        return p.max
    return None
