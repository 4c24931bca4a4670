"""The state machine of one alert instance, driven by event time.

```
Normal ──breach──▶ Pending ──breach, `for` elapsed──▶ Firing ──clear──▶ Recovering
  ▲                  │ clear                            ▲  │                │ clear and
  └──────────────────┘                                  │  └─breach─────────┘ keep_firing_for
  ◀─────────────────────────────────────────────────────┴───────────────────── elapsed
NoData: no window of the instance for `no_data_after`; the next window leaves it.
```

Time is the end of the window evaluated (ms since the epoch), never the wall
clock, so replaying the same windows gives the same transitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["normal", "pending", "firing", "recovering", "nodata"]
STATES: tuple[State, ...] = ("normal", "pending", "firing", "recovering", "nodata")
ACTIVE: frozenset[str] = frozenset({"pending", "firing", "recovering", "nodata"})
"""States shown as active alerts."""


@dataclass(slots=True)
class Machine:
    """The state of one alert instance; a few ints, cheap to snapshot."""

    state: State = "normal"
    since: int = 0
    """Event time the current state was entered."""
    active_at: int | None = None
    """End of the first window of the current breach (Pending/Firing/Recovering)."""
    clear_at: int | None = None
    """End of the first clear window while Recovering."""
    last_seen: int | None = None
    """End of the newest window with data."""
    last_eval: int = -1
    """End of the newest window evaluated; older or equal ones are ignored."""

    def step(
        self, at: int, breached: bool, for_ms: int, keep_ms: int
    ) -> tuple[State, State] | None:
        """Evaluate the condition at event time ``at``; the ``(from, to)`` transition or None.

        Contract: Firing is entered only when every evaluation from ``active_at`` to
        ``at`` breached and ``at - active_at >= for_ms``; Recovering turns Normal only
        when the condition has been clear for ``keep_ms``.
        """
        before = self.state
        if breached:
            self.clear_at = None
            if before in ("normal", "nodata"):
                self.active_at = at
                self._enter("firing" if for_ms == 0 else "pending", at)
            elif before == "pending":
                assert self.active_at is not None
                if at - self.active_at >= for_ms:
                    self._enter("firing", at)
            elif before == "recovering":
                self._enter("firing", at)
        else:
            if before in ("pending", "nodata"):
                self.active_at = None
                self._enter("normal", at)
            elif before == "firing":
                if keep_ms == 0:
                    self.active_at = None
                    self._enter("normal", at)
                else:
                    self.clear_at = at
                    self._enter("recovering", at)
            elif before == "recovering":
                assert self.clear_at is not None
                if at - self.clear_at >= keep_ms:
                    self.active_at = self.clear_at = None
                    self._enter("normal", at)
        return None if self.state == before else (before, self.state)

    def no_data(self, at: int) -> tuple[State, State] | None:
        """The instance has had no window until ``at``: turn NoData (unless already)."""
        if self.state == "nodata":
            return None
        before = self.state
        self.active_at = self.clear_at = None
        self._enter("nodata", at)
        return before, "nodata"

    def _enter(self, state: State, at: int) -> None:
        self.state = state
        self.since = at
