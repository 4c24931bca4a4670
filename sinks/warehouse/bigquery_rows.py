"""Rows as BigQuery's ``insertAll`` takes them, each with a deterministic insert id."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from riffle.sinks.warehouse.tables import TableDef


def row_id(table: TableDef, row: Mapping[str, Any]) -> str:
    """Deterministic insert id of a row as sent (:func:`json_row`): the same content, its
    write time (``table.stamp``) aside, gets the same id whenever it is written."""
    content = [row.get(c) for c in table.column_names if c != table.stamp]
    return hashlib.blake2b(orjson.dumps([table.name, *content]), digest_size=16).hexdigest()


def _ts(epoch_ms: int) -> str:
    """RFC 3339 text; insertAll reads it the same way in BigQuery and the emulator."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_row(row: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    """A row as insertAll takes it: TIMESTAMPs as RFC 3339 text, BYTES as base64."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        kind = types[name]
        if value is None:
            out[name] = None
        elif kind == "TIMESTAMP":
            out[name] = _ts(value)
        elif kind == "BYTES":
            out[name] = base64.b64encode(value).decode()
        else:
            out[name] = value
    return out
