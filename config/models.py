"""The optional ``anomaly:`` and ``forecast:`` blocks of a metric in the spec."""

from __future__ import annotations

from pydantic import Field, field_validator

from riffle.config.base import Strict

DETECTOR_NAMES: tuple[str, ...] = ("riffle", "windowed_gaussian", "halfspacetrees")
"""The detectors a spec may name, checked at load; :mod:`operators.models.registry` holds
one class per name (``tests/unit/test_models.py`` keeps the two equal)."""


class AnomalySpec(Strict):
    """Score every final window of the metric's series with an online detector."""

    detector: str = Field("riffle", description="Detector name (``riffle`` in production).")
    warning: float = Field(0.33, ge=0, le=1, description="Score from which a value is a warning.")
    threshold: float = Field(0.36, ge=0, le=1, description="Score from which it is an anomaly.")

    @field_validator("detector")
    @classmethod
    def _known(cls, name: str) -> str:
        if name not in DETECTOR_NAMES:
            raise ValueError(f"unknown detector {name!r} (known: {', '.join(DETECTOR_NAMES)})")
        return name


class ForecastSpec(Strict):
    """Forecast the next ``horizon`` windows of every series of the metric."""

    horizon: int = Field(12, ge=1, le=1440)
    season: int | None = Field(
        None,
        ge=0,
        le=2016,
        description="Windows per seasonal cycle; default a day's worth when at most 1440, else 0.",
    )
    level: float = Field(0.9, gt=0, lt=1, description="Nominal coverage of the intervals.")
