"""Drift of a series' model errors: River's ADWIN over bounded error streams.

:class:`ErrorDrift` watches one stream of errors in ``[0, 1]`` (a detector's
normalised surprise, a forecaster's one-step sMAPE / 200) with ADWIN, which
keeps an adaptive window of recent errors and cuts it when its two halves'
means differ more than chance allows: the model's error level changed, so
its calibration or its forecasts are stale. It counts detections and keeps
the current mean error; its pickle is about a kilobyte.
"""

from __future__ import annotations

from river import drift


class _Adwin:
    """ADWIN over one stream, with the number of drifts seen (the pickled state of both kinds)."""

    __slots__ = ("adwin", "detections")

    def __init__(self, delta: float = 0.002) -> None:
        self.adwin = drift.ADWIN(delta=delta)  # type: ignore[no-untyped-call]
        self.detections = 0

    def __getstate__(self) -> dict[str, object]:
        return {"adwin": self.adwin, "detections": self.detections}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.adwin = state["adwin"]  # type: ignore[assignment]
        self.detections = int(state["detections"])  # type: ignore[call-overload]

    def _learn(self, x: float) -> bool:
        self.adwin.update(x)  # type: ignore[no-untyped-call]
        found = bool(self.adwin.drift_detected)
        if found:
            self.detections += 1
        return found

    @property
    def level(self) -> float:
        """The mean of ADWIN's current window."""
        return float(self.adwin.estimation)


class ErrorDrift(_Adwin):
    """ADWIN over one error stream, with the number of drifts seen."""

    __slots__ = ()

    def update(self, error: float) -> bool:
        """Learn one error (clipped to [0, 1]); ``True`` when ADWIN just detected a drift."""
        return self._learn(min(1.0, max(0.0, error)) if error == error else 1.0)


class InputDrift(_Adwin):
    """ADWIN over a series' raw window values: did the input's level change?

    River's ADWIN bounds the difference of two sub-window means by their
    variance, so it needs no scaling of the values. Counts detections and
    keeps the mean of the current window.
    """

    __slots__ = ()

    def update(self, value: float) -> bool:
        """Learn one finite value (others are ignored); ``True`` when a drift was just found."""
        if value != value or value in (float("inf"), float("-inf")):
            return False
        return self._learn(value)
