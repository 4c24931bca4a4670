"""Event-time watermark of one source partition.

The watermark trails the newest event time seen by ``lateness_ms``; an event
whose time is behind it is late. It only moves forward. Only event times move
it while there is anything left to read, so reading a backlog judges lateness
exactly as reading live would. Once the partition is caught up (its reader is
at the end of the log) and has delivered nothing for ``idle_ms`` of wall-clock
time, the watermark also advances with the wall clock, so windows close when
traffic stops.
"""

from __future__ import annotations

from dataclasses import dataclass

NEVER = -(2**62)
"""The watermark before any event: nothing is late yet."""

IDLE = 2**62
"""What a caught-up partition that never delivered an event reports: no constraint."""


@dataclass(slots=True)
class Watermark:
    """Watermark bookkeeping; all times are epoch milliseconds."""

    lateness_ms: int
    idle_ms: int
    max_ts: int = NEVER
    value: int = NEVER
    last_arrival: int = 0
    """Wall-clock time of the last delivery, the start of idleness."""
    caught_up: bool = False
    """The reader is at the end of the partition's log (nothing left to read)."""

    @property
    def reported(self) -> int:
        """What downstream windows should assume of this partition.

        A partition that is caught up and has never delivered an event holds
        nothing back (:data:`IDLE`); otherwise this is the watermark itself.
        """
        if self.max_ts == NEVER and self.caught_up:
            return IDLE
        return self.value

    def observe(self, ts: int) -> int:
        """Account for one in-time event; return the new watermark."""
        if ts > self.max_ts:
            self.max_ts = ts
            candidate = ts - self.lateness_ms
            if candidate > self.value:
                self.value = candidate
        return self.value

    def arrived(self, now: int) -> None:
        """A delivery happened at wall-clock ``now`` (with or without in-time events)."""
        self.last_arrival = now

    def idle_advance(self, now: int) -> bool:
        """Advance with the wall clock if caught up and idle for ``idle_ms``; say if it moved."""
        if self.max_ts == NEVER or not self.caught_up:
            return False
        idle_for = now - self.last_arrival
        if idle_for < self.idle_ms:
            return False
        candidate = self.max_ts - self.lateness_ms + idle_for
        if candidate <= self.value:
            return False
        self.value = candidate
        return True

    def next_idle_check(self) -> int:
        """Wall-clock time at which idleness begins, for scheduling the next check."""
        return self.last_arrival + self.idle_ms
