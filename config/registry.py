"""The schema registry on disk (``<dir>/<event type>/<SchemaVer>.json``) and its compatibility.

Each file is a JSON Schema of an event type's ``props``, versioned
SchemaVer-style ``MODEL-REVISION-ADDITION`` (``1-0-0``). Within one MODEL
(major) every version must accept what the previous one accepted, so a
producer pinned to an older version keeps working; a change that breaks this
(removing a required field or a property, narrowing a type or an enum,
adding a required field, closing ``additionalProperties``) needs a new MODEL.
:func:`check_registry` enforces that; ``riffle schemas check`` prints it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs
import orjson

from riffle.config.errors import RiffleError

SCHEMAVER = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_NUMBERS = ("number", "integer")
_JSON_TYPES = ("null", "boolean", "object", "array", "number", "string", "integer")


class SchemaRegistryError(RiffleError):
    """A schema file that cannot be used: bad name, bad JSON, not a JSON Schema."""


@dataclass(frozen=True, slots=True)
class SchemaEntry:
    """One version of one event type's schema."""

    event_type: str
    version: str
    parts: tuple[int, int, int]
    schema: Mapping[str, Any]
    path: Path

    @property
    def key(self) -> str:
        """``type/version``, the name an event gives in its ``schema`` field."""
        return f"{self.event_type}/{self.version}"


def parse_version(text: str) -> tuple[int, int, int]:
    """``"1-0-2"`` as ``(1, 0, 2)``; ``ValueError`` if it is not SchemaVer."""
    match = SCHEMAVER.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a SchemaVer version (MODEL-REVISION-ADDITION, 1-0-0)")
    model, revision, addition = (int(g) for g in match.groups())
    return model, revision, addition


def load_schemas(directory: Path) -> dict[str, list[SchemaEntry]]:
    """Every schema under ``directory`` by event type, oldest version first.

    A missing directory is an empty registry. Raises :class:`SchemaRegistryError`
    naming the file for a bad version name, bad JSON or an invalid JSON Schema.
    """
    found: dict[str, list[SchemaEntry]] = {}
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*/*.json")):
        event_type = path.parent.name
        try:
            parts = parse_version(path.stem)
        except ValueError as exc:
            raise SchemaRegistryError(f"{path}: {exc}") from None
        try:
            schema = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise SchemaRegistryError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(schema, dict):
            raise SchemaRegistryError(f"{path}: a schema is a JSON object")
        try:
            jsonschema_rs.meta.validate(schema)
        except jsonschema_rs.ValidationError as exc:
            first = str(exc).splitlines()[0]
            raise SchemaRegistryError(f"{path}: not a valid JSON Schema: {first}") from None
        found.setdefault(event_type, []).append(
            SchemaEntry(event_type, path.stem, parts, schema, path)
        )
    for entries in found.values():
        entries.sort(key=lambda entry: entry.parts)
    return found


def check_compatibility(
    old: Mapping[str, Any], new: Mapping[str, Any], where: str = ""
) -> list[str]:
    """Why data valid under ``old`` may be invalid under ``new`` (empty: compatible).

    Checks object schemas recursively through ``properties`` and ``items``:
    required fields removed or added, properties removed, types or enums
    narrowed, bounds tightened, ``additionalProperties`` closed.
    """
    problems: list[str] = []
    at = where or "props"
    old_types, new_types = _types(old), _types(new)
    if old_types is not None:
        if new_types is None:
            pass
        else:
            widened = set(new_types) | ({"integer"} if "number" in new_types else set())
            lost = [t for t in old_types if t not in widened]
            if lost:
                problems.append(f"{at}: type narrowed (no longer accepts {', '.join(lost)})")
    elif new_types is not None:
        problems.append(f"{at}: type narrowed (now only {', '.join(new_types)})")
    if "enum" in new:
        old_enum = old.get("enum")
        if old_enum is None:
            problems.append(f"{at}: enum added")
        else:
            gone = [v for v in old_enum if v not in new["enum"]]
            if gone:
                problems.append(f"{at}: enum narrowed (removed {gone})")

    def applied(kinds: tuple[str, ...]) -> bool:
        # A keyword for strings cannot narrow a schema whose old version took no strings.
        return old_types is None or any(k in old_types for k in kinds)

    for bound, lower, kinds in (
        ("minimum", True, _NUMBERS),
        ("maximum", False, _NUMBERS),
        ("minLength", True, ("string",)),
        ("maxLength", False, ("string",)),
        ("minItems", True, ("array",)),
        ("maxItems", False, ("array",)),
    ):
        if bound not in new or not applied(kinds):
            continue
        if bound not in old or (new[bound] > old[bound] if lower else new[bound] < old[bound]):
            problems.append(f"{at}: {bound} tightened to {new[bound]}")
    if "pattern" in new and new.get("pattern") != old.get("pattern") and applied(("string",)):
        problems.append(f"{at}: pattern changed")
    old_required, new_required = set(old.get("required", ())), set(new.get("required", ()))
    problems += [f"{at}.{n}: required field removed" for n in sorted(old_required - new_required)]
    problems += [f"{at}.{n}: required field added" for n in sorted(new_required - old_required)]
    if old.get("additionalProperties", True) is not False and (
        new.get("additionalProperties", True) is False
    ):
        problems.append(f"{at}: additionalProperties closed")
    old_props: Mapping[str, Any] = old.get("properties", {})
    new_props: Mapping[str, Any] = new.get("properties", {})
    for name, old_sub in old_props.items():
        if name not in new_props:
            problems.append(f"{at}.{name}: property removed")
        elif isinstance(old_sub, Mapping) and isinstance(new_props[name], Mapping):
            problems += check_compatibility(old_sub, new_props[name], f"{at}.{name}")
    old_items, new_items = old.get("items"), new.get("items")
    if isinstance(old_items, Mapping) and isinstance(new_items, Mapping):
        problems += check_compatibility(old_items, new_items, f"{at}[]")
    return problems


def check_registry(directory: Path, baseline: Path | None = None) -> list[str]:
    """Every compatibility problem of a registry, as ``type version: problem`` lines.

    Consecutive versions of one MODEL must be compatible. With ``baseline``
    (the registry as published, e.g. a checkout of main), a version present
    in both may only change compatibly, and no published version may vanish.
    Raises :class:`SchemaRegistryError` for files that do not load.
    """
    current = load_schemas(directory)
    problems: list[str] = []
    for event_type, entries in current.items():
        for before, after in itertools.pairwise(entries):
            if before.parts[0] != after.parts[0]:
                continue
            problems += [
                f"{event_type} {after.version} (after {before.version}): {p}"
                for p in check_compatibility(before.schema, after.schema)
            ]
    if baseline is not None:
        for event_type, entries in load_schemas(baseline).items():
            now = {entry.version: entry for entry in current.get(event_type, [])}
            for published in entries:
                edited = now.get(published.version)
                if edited is None:
                    problems.append(f"{event_type} {published.version}: published version removed")
                    continue
                problems += [
                    f"{event_type} {published.version} (edited in place): {p}"
                    for p in check_compatibility(published.schema, edited.schema)
                ]
    return problems


def _types(schema: Mapping[str, Any]) -> list[str] | None:
    value = schema.get("type")
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return [t for t in value if t in _JSON_TYPES]
