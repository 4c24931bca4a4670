"""Rows of import files into event envelopes, as a schema mapping says.

:class:`RowMapper` is the import's decoder (:data:`operators.ingest.Decoder`):
it takes a row as :mod:`sources.files` writes it and returns the event, or
raises :class:`EnvelopeError` of type ``import`` naming the column and the
reason. What follows — envelope and schema checks, enrichment, aggregation —
is the live path's. Event ids not taken from a column are derived from the
source id, the file and the row number, so importing the same file again
gives the same ids.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from riffle.config.mapping import FieldMap, SchemaMapping
from riffle.operators.enrichers.derive import compile_expression
from riffle.operators.envelope import EnvelopeError

ENVELOPE_KEYS = frozenset({"event_id", "type", "ts", "props", "context"})
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_EPOCH_UNITS = {"epoch_s": 1000.0, "epoch_ms": 1.0, "epoch_us": 0.001}


def event_id_for(source_id: str, file: str, row: int) -> str:
    """The id of an imported event without an id column: the same for the same row."""
    key = f"{source_id}\x1f{file}\x1f{row}".encode()
    return "imp-" + hashlib.blake2b(key, digest_size=16).hexdigest()


def row_problem(raw: bytes) -> tuple[str, int, str] | None:
    """``(file, row, reason)`` of a row that could not be read, else ``None``."""
    data = orjson.loads(raw)
    if "error" in data:
        return data["file"], data["row"], data["error"]
    return None


class _Field:
    """One compiled field of a mapping."""

    __slots__ = ("column", "convert", "evaluate", "name", "spec")

    def __init__(self, name: str, spec: FieldMap) -> None:
        self.name = name
        self.spec = spec
        self.column = spec.column
        self.convert = CONVERTERS[spec.type]
        self.evaluate = None if spec.expr is None else compile_expression(spec.expr)


class RowMapper:
    """Rows to events; see the module docstring. ``event_type`` overrides the mapping's."""

    def __init__(
        self, mapping: SchemaMapping | None, *, event_type: str | None, source_id: str = ""
    ) -> None:
        self.mapping = mapping
        self.source_id = source_id
        self.event_type = event_type or (mapping.type if mapping is not None else None)
        self._props: list[_Field] = []
        self._context: list[_Field] = []
        self._read: frozenset[str] = frozenset()
        self._zone: tzinfo = UTC
        if mapping is not None:
            self._props = [_Field(n, f) for n, f in mapping.props.items()]
            self._context = [_Field(n, f) for n, f in mapping.context.items()]
            self._zone = ZoneInfo(mapping.ts.zone)
            read = {f.column for f in self._props + self._context if f.column is not None}
            read.add(mapping.ts.column)
            if mapping.event_id is not None:
                read.add(mapping.event_id)
            self._read = frozenset(read)

    def __call__(self, raw: bytes) -> dict[str, Any]:
        data = orjson.loads(raw)
        file, row = data["file"], data["row"]
        error = data.get("error")
        if error is not None:
            raise EnvelopeError("import", "$file" if row == 0 else "$row", error)
        values: dict[str, Any] = data["values"]
        if self.mapping is None:
            return self._envelope(values, file, row)
        return self._mapped(self.mapping, values, file, row)

    def _envelope(self, values: dict[str, Any], file: str, row: int) -> dict[str, Any]:
        event_type = values.get("type") or self.event_type
        if event_type is None:
            raise EnvelopeError("import", "type", "no type column and no --type given")
        if "props" in values or "context" in values:  # an envelope: checked as it is
            event = {k: v for k, v in values.items() if k in ENVELOPE_KEYS}
        else:
            props = {k: _guess(v) for k, v in values.items() if k not in ENVELOPE_KEYS}
            event = {"ts": _guess(values.get("ts")), "props": props}
        event["type"] = event_type
        event["event_id"] = values.get("event_id") or event_id_for(self.source_id, file, row)
        if event.get("ts") is None:
            raise EnvelopeError("import", "ts", "the ts column is empty or missing")
        return event

    def _mapped(
        self, mapping: SchemaMapping, values: dict[str, Any], file: str, row: int
    ) -> dict[str, Any]:
        if self.event_type is None:
            raise EnvelopeError("import", "type", "the mapping has no type and no --type given")
        if mapping.event_id is None:
            event_id = event_id_for(self.source_id, file, row)
        else:
            found = values.get(mapping.event_id)
            if found is None or found == "":
                raise EnvelopeError("import", mapping.event_id, "the event id column is empty")
            event_id = str(found)
        ts = self._time(mapping, values.get(mapping.ts.column))
        props: dict[str, Any] = {}
        context: dict[str, Any] = {}
        names = {"row": values, "props": props, "context": context}
        for fields, target in ((self._props, props), (self._context, context)):
            for field in fields:
                value = self._value(field, values, names)
                if value is not None:
                    target[field.name] = value
        if mapping.rest == "props":
            for column, value in values.items():
                if column not in self._read and column not in props and value is not None:
                    props[column] = value
        event: dict[str, Any] = {"event_id": event_id, "type": self.event_type, "ts": ts}
        event["props"] = props
        if context:
            event["context"] = context
        return event

    def _value(self, field: _Field, values: dict[str, Any], names: dict[str, Any]) -> Any:
        spec = field.spec
        where = field.column or field.name
        if field.evaluate is not None:
            try:
                value = field.evaluate(names)
            except Exception as exc:  # noqa: BLE001 - a user's expression failing is data
                raise EnvelopeError(
                    "import", where, f"the expression failed: {type(exc).__name__}: {exc}"
                ) from None
        elif field.column is not None:
            if field.column not in values:
                raise EnvelopeError("import", where, f"column {field.column!r} is not in the file")
            value = values[field.column]
        else:
            value = spec.const
        if value is None or value == "":
            if spec.default is not None:
                return spec.default
            if spec.required:
                raise EnvelopeError("import", where, f"empty value for {field.name}")
            return None
        try:
            return field.convert(value)
        except (ValueError, TypeError) as exc:
            raise EnvelopeError("import", where, f"{value!r} for {field.name}: {exc}") from None

    def _time(self, mapping: SchemaMapping, value: Any) -> int:
        column, fmt = mapping.ts.column, mapping.ts.format
        if value is None or value == "":
            raise EnvelopeError("import", column, "the time column is empty or missing")
        try:
            if fmt in _EPOCH_UNITS:
                return int(_number(value) * _EPOCH_UNITS[fmt])
            if type(value) is not str:
                raise ValueError(f"expected text, got {type(value).__name__}")
            moment = (
                datetime.fromisoformat(value) if fmt == "iso" else datetime.strptime(value, fmt)
            )
        except (ValueError, TypeError) as exc:
            raise EnvelopeError(
                "import", column, f"{value!r} is not a time of format {fmt}: {exc}"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self._zone)
        return int(moment.timestamp() * 1000)


def _number(value: Any) -> float:
    if type(value) is bool:
        raise ValueError("a boolean is not a number")
    number = float(value.strip() if type(value) is str else value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _integer(value: Any) -> int:
    if type(value) is int:
        return value
    number = _number(value)
    if not number.is_integer():
        raise ValueError("not a whole number")
    return int(number)


def _boolean(value: Any) -> bool:
    if type(value) is bool:
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not true or false")


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "any": lambda value: value,
    "str": str,
    "int": _integer,
    "float": _number,
    "bool": _boolean,
}


def _guess(value: Any) -> Any:
    """A CSV value read as a number or boolean when it looks like one (no mapping)."""
    if type(value) is not str:
        return value
    text = value.strip()
    if text in ("true", "false"):
        return text == "true"
    try:
        number = float(text)
    except ValueError:
        return value
    if not math.isfinite(number):
        return value
    return int(number) if number.is_integer() and "." not in text and "e" not in text else number
