"""Calendar buckets (hours, days) on a tenant's local clock, correct across DST changes.

A :class:`Calendar` knows a time zone's UTC offset over a span of time as a
few constant *segments* (found with :mod:`zoneinfo`). A bucket of ``step``
(1 h, 1 d) holds the instants whose local time lies in one local hour or
day: its *label* is the local time floored to ``step``, and its start is the
first UTC instant carrying that label. So a spring-forward day is 23 hours
long, a fall-back day 25, and a half-hour zone's days start at ``:30`` UTC.
A local hour repeated by a fall-back is one bucket of two hours; a skipped
one has no bucket.

Labels are what SQL can compute (:meth:`Calendar.local_sql`: the instant
plus a ``CASE`` over the segments' offsets, floored), starts are what answers
carry (:meth:`Calendar.start_of`); both engines and the Redis path use the
same segments, so a bucket is the same everywhere.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

_HOUR = 3_600_000
_MARGIN = 2 * 86_400_000
"""Segments reach this far beyond the asked span, so bucket starts outside it resolve."""


def _offset(zone: ZoneInfo, at_ms: int) -> int:
    moment = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(zone)
    delta = moment.utcoffset() or timedelta(0)
    return int(delta.total_seconds() * 1000)


@lru_cache(maxsize=256)
def _segments(zone_name: str, first_hour: int, last_hour: int) -> tuple[tuple[int, int], ...]:
    """``(from_ms, offset_ms)`` pairs, sorted; each offset holds until the next ``from_ms``.

    Offsets are sampled hourly and every change is bisected to the second
    (zones change offset at whole seconds, never twice within an hour).
    """
    zone = ZoneInfo(zone_name)
    start, end = first_hour * _HOUR, last_hour * _HOUR
    out = [(start, _offset(zone, start))]
    at = start
    while at < end:
        nxt = at + _HOUR
        after = _offset(zone, nxt)
        if after != out[-1][1]:
            low, high = at, nxt  # offset(low) is the old one, offset(high) the new one
            while high - low > 1000:
                mid = (low + high) // 2000 * 1000
                if mid <= low:
                    mid = low + 1000
                if _offset(zone, mid) == after:
                    high = mid
                else:
                    low = mid
            out.append((high, after))
        at = nxt
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Calendar:
    """Local buckets of one time zone over (at least) ``[start_ms, end_ms)``."""

    zone: str
    segments: tuple[tuple[int, int], ...]

    @classmethod
    def of(cls, zone: str, start_ms: int, end_ms: int) -> Calendar:
        """The calendar of ``zone`` (an IANA name) around ``[start_ms, end_ms)``."""
        first = (start_ms - _MARGIN) // _HOUR
        last = -(-(end_ms + _MARGIN) // _HOUR)
        return cls(zone, _segments(zone, first, last))

    def offset(self, at_ms: int) -> int:
        """The zone's UTC offset at ``at_ms``, in ms."""
        index = bisect.bisect_right(self.segments, at_ms, key=lambda s: s[0]) - 1
        return self.segments[max(index, 0)][1]

    def label(self, at_ms: int, step_ms: int) -> int:
        """The local time of ``at_ms`` (as if it were UTC) floored to ``step_ms``."""
        local = at_ms + self.offset(at_ms)
        return local - local % step_ms

    def start_of(self, label: int, step_ms: int) -> int:
        """The first UTC instant whose local time lies in ``[label, label + step_ms)``."""
        best: int | None = None
        ends = [s[0] for s in self.segments[1:]] + [2**62]
        for (begin, offset), end in zip(self.segments, ends, strict=True):
            low = max(begin, label - offset)
            if low < min(end, label + step_ms - offset) and (best is None or low < best):
                best = low
        if best is None:
            raise ValueError(f"local time {label} does not exist in {self.zone}")
        return best

    def bucket(self, at_ms: int, step_ms: int) -> int:
        """The UTC start of the local bucket of ``step_ms`` holding ``at_ms``."""
        return self.start_of(self.label(at_ms, step_ms), step_ms)

    def following(self, start_ms: int, step_ms: int) -> int:
        """The start of the bucket after the one starting at ``start_ms`` (its end)."""
        label = self.label(start_ms, step_ms) + step_ms
        while True:
            try:
                return self.start_of(label, step_ms)
            except ValueError:  # a label a spring-forward removed (a missing local hour)
                label += step_ms

    def boundaries(self, start_ms: int, end_ms: int, step_ms: int) -> list[int]:
        """UTC starts of every bucket meeting ``[start_ms, end_ms)``, in order."""
        out = [self.bucket(start_ms, step_ms)]
        while (nxt := self.following(out[-1], step_ms)) < end_ms:
            out.append(nxt)
        return out

    def local_sql(self, instant_ms: str) -> str:
        """SQL of the local time (epoch ms as if UTC) of the SQL integer ``instant_ms``.

        Only integers are spliced in (the segments' bounds and offsets).
        """
        if len(self.segments) == 1:
            return f"({instant_ms} + {self.segments[0][1]})"
        cases = " ".join(
            f"WHEN {instant_ms} < {begin} THEN {offset}"
            for (_, offset), (begin, _) in zip(self.segments, self.segments[1:], strict=False)
        )
        return f"({instant_ms} + CASE {cases} ELSE {self.segments[-1][1]} END)"
