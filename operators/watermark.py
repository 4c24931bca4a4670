"""Event-time clock of one source partition, and the watermarks derived from it.

The clock is the newest event time the partition has delivered. A metric's
watermark trails it by the metric's lateness; an event behind that watermark
is late for the metric, and a window is final once the watermark passes its
end. Only event times move the clock while there is anything left to read,
so reading a backlog judges lateness exactly as reading live would. Once the
partition is caught up (its reader is at the end of the log) and has
delivered nothing for ``idle_ms`` of wall-clock time, the clock also advances
with the wall clock, so windows close when traffic stops. It never goes back.
"""

from __future__ import annotations

from dataclasses import dataclass

NEVER = -(2**62)
"""The clock before any event: nothing is late yet."""

IDLE = 2**62
"""What a caught-up partition that never delivered an event reports: no constraint."""


@dataclass(slots=True)
class PartitionClock:
    """Clock bookkeeping; all times are epoch milliseconds."""

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
        nothing back (:data:`IDLE`); otherwise this is the clock itself.
        """
        if self.max_ts == NEVER and self.caught_up:
            return IDLE
        return self.value

    def observe(self, ts: int) -> None:
        """Account for one valid event."""
        if ts > self.max_ts:
            self.max_ts = ts
            if ts > self.value:
                self.value = ts

    def arrived(self, now: int) -> None:
        """A delivery happened at wall-clock ``now``."""
        self.last_arrival = now

    def idle_advance(self, now: int) -> bool:
        """Advance with the wall clock if caught up and idle for ``idle_ms``; say if it moved."""
        if self.max_ts == NEVER or not self.caught_up:
            return False
        idle_for = now - self.last_arrival
        if idle_for < self.idle_ms:
            return False
        candidate = self.max_ts + idle_for
        if candidate <= self.value:
            return False
        self.value = candidate
        return True
