"""What every section of the spec shares: the strict model base, names, field paths and
filter conditions, defined once.

Every spec module builds on this one and this one imports none of them, so the
sections (:mod:`.spec`, :mod:`.alerts`, :mod:`.predictions`, …) import each other
in one direction only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME = r"^[a-z][a-z0-9_]{0,62}$"
"""A name the spec gives (metric, event type, dimension, rule, prediction)."""
FIELD_PATH = r"^(props|context|meta)(\.[A-Za-z0-9_\-]+)+$|^type$"
"""Where a value sits in an event: ``props.plan``, ``context.ip``, ``meta.geo.country``,
``type``."""

Operator = Literal["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists"]


class Strict(BaseModel):
    """The base of every spec model: unknown fields are errors, loaded models are frozen,
    and a field with an alias (``for``, ``from``) may also be given by its own name."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Condition(Strict):
    """One clause of a metric filter; all clauses of a filter must hold."""

    path: str = Field(pattern=FIELD_PATH)
    op: Operator = "eq"
    value: Any = None

    @field_validator("value")
    @classmethod
    def _list_for_membership(cls, value: Any, info: Any) -> Any:
        if info.data.get("op") in ("in", "not_in") and not isinstance(value, list):
            raise ValueError("'in' and 'not_in' take a list of values")
        return value
