"""Schema validation of events: compiled once, the same at the HTTP door and in the dataflow.

:class:`EventValidator` holds one compiled jsonschema-rs validator per
schema version of the registry (:mod:`config.registry`). An event is checked
against the version it names in its ``schema`` field (``"purchase/1-0-1"``)
or else the latest version of its type; a type with no schema in the
registry passes (the spec's event types still apply). Every broken rule is
reported as ``(field path, rule, message)`` with paths like
``props.items[0].sku``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema_rs

from riffle.config.registry import SchemaEntry
from riffle.operators.envelope import EnvelopeError
from riffle.operators.records import FieldIssue

SCHEMA_FIELD = "schema"
MAX_ISSUES = 20
"""Most issues reported per event (a pathological event could break thousands of rules)."""


class EventValidator:
    """Compiled validators of every schema version; safe to share between threads."""

    __slots__ = ("_compiled", "_latest", "entries")

    def __init__(self, entries: Mapping[str, Sequence[SchemaEntry]]) -> None:
        self.entries = {name: list(versions) for name, versions in entries.items() if versions}
        self._compiled: dict[str, jsonschema_rs.Validator] = {}
        self._latest: dict[str, str] = {}
        for name, versions in self.entries.items():
            for entry in versions:
                self._compiled[entry.key] = jsonschema_rs.validator_for(dict(entry.schema))
            self._latest[name] = versions[-1].key

    def latest(self, event_type: str) -> str | None:
        """The key (``type/version``) of the newest schema of ``event_type``, if any."""
        return self._latest.get(event_type)

    def validate(self, event: Mapping[str, Any]) -> tuple[str | None, list[FieldIssue]]:
        """``(schema key used, issues)`` for an envelope-checked event; no issues: valid."""
        event_type = event["type"]
        named = event.get(SCHEMA_FIELD)
        if named is None:
            key = self._latest.get(event_type)
            if key is None:
                return None, []
        elif type(named) is not str:
            return None, [(SCHEMA_FIELD, "type", "must be a string like 'purchase/1-0-0'")]
        else:
            key = named
            named_type, _, version = named.partition("/")
            if named_type != event_type:
                return None, [
                    (
                        SCHEMA_FIELD,
                        "schema_mismatch",
                        f"names schema of type {named_type!r} but the event is {event_type!r}",
                    )
                ]
            if key not in self._compiled:
                known = ", ".join(e.version for e in self.entries.get(event_type, [])) or "none"
                return None, [
                    (
                        SCHEMA_FIELD,
                        "unknown_schema",
                        f"no schema {named!r} (versions of {event_type!r}: {known})",
                    )
                ]
            del version
        validator = self._compiled[key]
        props = event["props"]
        if validator.is_valid(props):
            return key, []
        issues: list[FieldIssue] = []
        for error in validator.iter_errors(props):
            issues.append(_issue(error))
            if len(issues) >= MAX_ISSUES:
                break
        return key, issues

    def check(self, event: dict[str, Any]) -> None:
        """The dataflow's hook: raise :class:`EnvelopeError` (type ``schema``) when invalid."""
        _, issues = self.validate(event)
        if issues:
            path, _, message = issues[0]
            raise EnvelopeError("schema", path, message, tuple(issues))


def _issue(error: jsonschema_rs.ValidationError) -> FieldIssue:
    parts = list(error.instance_path)
    schema_path = [p for p in error.schema_path if isinstance(p, str)]
    rule = schema_path[-1] if schema_path else "schema"
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        parts.append(str(kind.property))
    return field_path("props", parts), rule, error.message


def field_path(root: str, parts: Sequence[str | int]) -> str:
    """``props`` + ``["items", 0, "sku"]`` as ``props.items[0].sku``."""
    out = root
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out
