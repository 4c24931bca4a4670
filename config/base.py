"""What every section of the spec shares: the strict model base, names, field paths,
filter conditions and the YAML line map of error messages, defined once.

Every spec module builds on this one and this one imports none of them, so the
sections (:mod:`.spec`, :mod:`.alerts`, :mod:`.predictions`, …) import each other
in one direction only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import yaml
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


def node_lines(
    node: yaml.Node, path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], int]]:
    """Map every path in the YAML document to the line it starts on (1-based)."""
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = (*path, str(key.value))
            yield child, key.start_mark.line + 1
            for sub, line in node_lines(value, child):
                if sub != child:
                    yield sub, line
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from node_lines(item, (*path, index))
