"""Schema mappings of imports: how the columns of a file become event envelopes (YAML).

```yaml
type: purchase                    # the event type (or: riffle import --type)
event_id: order_id                # a column; without it: derived from source, file and row
ts: {column: created_at, format: "%Y-%m-%d %H:%M:%S", zone: Europe/Berlin}
props:
  amount: {column: total, type: float}
  currency: cur                   # shorthand for {column: cur}
  channel: {const: legacy_shop}
  net: {expr: "row.total - row.tax", type: float}
context:
  country: {column: country, required: false}
```

A field takes exactly one of ``column`` (the row's value), ``const`` (a fixed
value) or ``expr`` (a safe expression over ``row``, the row as read, and
``props``/``context`` mapped so far, in file order). ``type`` converts the
value (``str``, ``int``, ``float``, ``bool``; ``any`` keeps it as read). An
empty or missing value takes ``default`` when given; otherwise it rejects the
row if ``required`` (the default) or leaves the field out. ``ts`` formats:
``iso`` (RFC 3339 / ISO 8601), ``epoch_ms``, ``epoch_s``, ``epoch_us`` or a
``strptime`` pattern; ``zone`` is the IANA zone of times without an offset.
``rest: props`` copies every column no field reads into ``props``.

Without a mapping file, a row with ``props`` or ``context`` is taken as an
event, its ``event_id``, ``type``, ``ts``, ``props`` and ``context`` as they
are (:data:`ENVELOPE`); a flat row puts every column but ``event_id``,
``type`` and ``ts`` into ``props``. Either way a missing event id is derived
(as ingest assigns one) and ``--type`` fills a missing type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from riffle.config.base import node_lines
from riffle.config.enrichment import check_expression
from riffle.config.errors import RiffleError

ROW_NAMES = frozenset({"row", "props", "context"})
"""What a mapping expression may read."""

FieldType = Literal["any", "str", "int", "float", "bool"]
TimeFormat = str
"""``iso``, ``epoch_ms``, ``epoch_s``, ``epoch_us`` or a ``strptime`` pattern."""


class MappingError(RiffleError):
    """A mapping that cannot be loaded; the message names file, line and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldMap(_Strict):
    """Where one prop or context field comes from."""

    column: str | None = None
    const: Any = None
    expr: str | None = None
    type: FieldType = "any"
    required: bool = True
    default: Any = None

    @field_validator("expr")
    @classmethod
    def _safe(cls, expr: str | None) -> str | None:
        return None if expr is None else check_expression(expr, ROW_NAMES)

    @model_validator(mode="after")
    def _one_source(self) -> FieldMap:
        given = [self.column is not None, "const" in self.model_fields_set, self.expr is not None]
        if sum(given) != 1:
            raise ValueError("a field takes exactly one of column, const or expr")
        return self


def _field_shorthand(value: Any) -> Any:
    return {"column": value} if isinstance(value, str) else value


class TimeMap(_Strict):
    """Where the event time comes from and how to read it."""

    column: str = "ts"
    format: TimeFormat = "iso"
    zone: str = "UTC"

    @field_validator("zone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r} (an IANA name)") from None
        return zone

    @field_validator("format")
    @classmethod
    def _known_format(cls, fmt: str) -> str:
        if fmt not in ("iso", "epoch_ms", "epoch_s", "epoch_us") and "%" not in fmt:
            raise ValueError("iso, epoch_ms, epoch_s, epoch_us or a strptime pattern with %")
        return fmt


class SchemaMapping(_Strict):
    """A whole mapping; see the module docstring."""

    type: str | None = None
    event_id: str | None = None
    """The column holding the event id; ``None``: derived from source, file and row."""
    ts: TimeMap = Field(default_factory=TimeMap)
    props: dict[str, FieldMap] = Field(default_factory=dict)
    context: dict[str, FieldMap] = Field(default_factory=dict)
    rest: Literal["drop", "props"] = "drop"

    @field_validator("ts", mode="before")
    @classmethod
    def _ts_shorthand(cls, value: Any) -> Any:
        return {"column": value} if isinstance(value, str) else value

    @field_validator("props", "context", mode="before")
    @classmethod
    def _fields_shorthand(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: _field_shorthand(item) for name, item in value.items()}
        return value


ENVELOPE: SchemaMapping | None = None
"""No mapping: rows are events (or flat rows of props with ``ts``, ``type``, ``event_id``)."""


def load_mapping(path: str | Path) -> SchemaMapping:
    """Load and check a mapping file; :class:`MappingError` names file, line and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{path}: cannot read the mapping: {exc.strerror}") from exc
    return parse_mapping(text, source=str(path))


def parse_mapping(text: str, source: str = "<mapping>") -> SchemaMapping:
    """Parse mapping YAML (or JSON) text; ``source`` names it in error messages."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 0
        raise MappingError(f"{source}:{line}: not valid YAML: {exc.problem}") from exc
    if not isinstance(data, dict) or node is None:
        raise MappingError(f"{source}:1: a mapping is a YAML mapping (type, ts, props, ...)")
    return mapping_from(data, source, dict(node_lines(node, ())))


def mapping_from(
    data: dict[str, Any],
    source: str = "<mapping>",
    lines: dict[tuple[str | int, ...], int] | None = None,
) -> SchemaMapping:
    """Check a mapping given as data (an API body); errors name ``source``, line and field."""
    try:
        return SchemaMapping.model_validate(data)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            field = ".".join(str(part) for part in loc) or "(top)"
            known = lines or {}
            line = next((known[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in known), 1)
            out.append(f"{source}:{line}: {field}: {err['msg']}")
        raise MappingError("invalid schema mapping\n" + "\n".join(out)) from None
