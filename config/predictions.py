"""The spec's optional ``predictions:`` section: online classifiers of entities.

A prediction names an entity type (``session``), where an event carries the
entity's key (``context.session_id``), which events feed its features, the
outcome event that makes an entity a positive (``purchase``, optionally
filtered) and the horizon after the entity's first event within which the
outcome must come, else it is a negative. ``config.spec`` checks the cross
references (event types exist, names are unique) with file and line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from riffle.config.base import FIELD_PATH, NAME, Condition, Strict
from riffle.config.durations import Duration


class FeatureSpec(Strict):
    """One feature read from every feature event of an entity.

    ``category`` features are one-hot: ``last`` keeps the entity's latest
    value, ``count`` counts how often each value was seen (``props.page``
    → how many cart and checkout pages). ``number`` features keep the
    ``last``, ``sum`` or ``max`` of the field. Absent fields leave the
    feature unchanged.
    """

    path: str = Field(pattern=FIELD_PATH)
    kind: Literal["category", "number"] = "category"
    agg: Literal["last", "count", "sum", "max"] = "last"

    @model_validator(mode="after")
    def _agg_fits(self) -> FeatureSpec:
        allowed = {"category": {"last", "count"}, "number": {"last", "sum", "max"}}[self.kind]
        if self.agg not in allowed:
            raise ValueError(f"a {self.kind} feature takes agg {' or '.join(sorted(allowed))}")
        return self


class OutcomeSpec(Strict):
    """The event that resolves an entity as a positive: its type and optional filter."""

    event: str
    filter: list[Condition] = Field(default_factory=list)


class PredictionSpec(Strict):
    """One online classifier over entities of one type (see the module docstring)."""

    name: str = Field(pattern=NAME)
    description: str = ""
    entity: str = Field(pattern=NAME, description="Entity type, the API path's first part.")
    key: str = Field(pattern=FIELD_PATH, description="Where an event carries the entity id.")
    events: list[str] = Field(
        default_factory=list, description="Feature events (default: every event type)."
    )
    filter: list[Condition] = Field(default_factory=list)
    """Conditions a feature event must meet (e.g. leave out the order confirmation page)."""
    outcome: OutcomeSpec
    horizon: Duration = timedelta(minutes=30)
    """An entity without its outcome this long after its first event is a negative."""
    features: list[FeatureSpec] = Field(default_factory=list, max_length=32)
    model: Literal["logistic", "forest"] = "logistic"
    """``logistic``: logistic regression (SGD); ``forest``: adaptive random forest (seeded)."""
    threshold: float = Field(0.5, gt=0, lt=1, description="Probability from which it says yes.")
    window: int = Field(1000, ge=10, le=100_000, description="Examples in the rolling metrics.")
    max_entities: int = Field(100_000, ge=10, le=10_000_000)
    """Open entities kept per tenant; beyond it the oldest are dropped unlearned."""
    seed: int = 0

    @field_validator("horizon")
    @classmethod
    def _horizon(cls, horizon: timedelta) -> timedelta:
        if not 1 <= horizon.total_seconds() <= 30 * 86_400:
            raise ValueError("a prediction horizon lies between 1s and 30d")
        return horizon

    @property
    def horizon_ms(self) -> int:
        """The horizon in epoch milliseconds."""
        return int(self.horizon.total_seconds() * 1000)


def problems(
    predictions: list[PredictionSpec], event_types: Mapping[str, object]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Cross references of the section: known event types, unique names."""
    known = ", ".join(sorted(event_types))
    seen: set[str] = set()
    for i, prediction in enumerate(predictions):
        where: tuple[str | int, ...] = ("predictions", i)
        if prediction.name in seen:
            yield (*where, "name"), f"prediction {prediction.name!r} is defined twice"
        seen.add(prediction.name)
        for j, event in enumerate(prediction.events):
            if event not in event_types:
                yield (*where, "events", j), f"unknown event type {event!r} (known: {known})"
        if prediction.outcome.event not in event_types:
            yield (
                (*where, "outcome", "event"),
                f"unknown event type {prediction.outcome.event!r} (known: {known})",
            )
        paths = [f.path for f in prediction.features]
        if len(set(paths)) != len(paths):
            yield (*where, "features"), "a feature path is listed twice"
