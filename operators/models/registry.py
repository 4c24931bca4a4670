"""Model classes by the name a spec or the NAB harness uses.

The names are :data:`config.models.DETECTOR_NAMES` (what a spec is checked against
when it loads); a detector added here is added there too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from riffle.operators.models.anomaly import SeasonalLikelihoodDetector
from riffle.operators.models.base import AnomalyDetector, UnknownModelError


def _baseline(name: str) -> Callable[..., AnomalyDetector]:
    # Imported lazily: the baselines pull in River's forest code.
    def build(**kwargs: Any) -> AnomalyDetector:
        from riffle.operators.models import baselines

        if name == "windowed_gaussian":
            return baselines.WindowedGaussianDetector(**kwargs)
        return baselines.HalfSpaceTreesDetector(**kwargs)

    return build


DETECTORS: dict[str, Callable[..., AnomalyDetector]] = {
    SeasonalLikelihoodDetector.name: SeasonalLikelihoodDetector,
    "windowed_gaussian": _baseline("windowed_gaussian"),
    "halfspacetrees": _baseline("halfspacetrees"),
}
"""Every detector by name; ``riffle`` is the production one."""


def make_detector(name: str, **kwargs: Any) -> AnomalyDetector:
    """A new detector called ``name``; raises :class:`UnknownModelError` otherwise."""
    try:
        factory = DETECTORS[name]
    except KeyError:
        known = ", ".join(sorted(DETECTORS))
        raise UnknownModelError(f"unknown detector {name!r} (known: {known})") from None
    return factory(**kwargs)
