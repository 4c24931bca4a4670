"""Human durations in the spec (``500ms``, ``10s``, ``1m``, ``2h``, ``30d``)."""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$", re.ASCII)
MAX_DURATION = timedelta(days=1_000_000)
"""The longest duration accepted (about 2,700 years): more is a typing slip, not a plan."""


class DurationTooLongError(ValueError):
    """A well-formed duration beyond ``MAX_DURATION``."""


def parse_duration(value: object) -> timedelta:
    """Read ``10s``-style strings, bare seconds, or a ``timedelta``.

    Total: anything that is not a finite duration of at most ``MAX_DURATION``
    (and not negative) raises ``ValueError`` with a message, never another error.
    """
    if isinstance(value, timedelta):
        return _bounded(value.total_seconds(), value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _bounded(float(value), value)
    if isinstance(value, str):
        match = _PATTERN.match(value)
        if match:
            return _bounded(float(match.group(1)) * _UNITS[match.group(2)], value)
    raise ValueError(f"{value!r} is not a duration; use a number with ms, s, m, h or d")


def _bounded(seconds: float, value: object) -> timedelta:
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{value!r} is not a duration; use a number with ms, s, m, h or d")
    if seconds > MAX_DURATION.total_seconds():
        raise DurationTooLongError(f"{value!r} is longer than {MAX_DURATION.days:,} days")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling, so a spec written back reads like the input."""
    millis = round(value.total_seconds() * 1000)
    for unit, factor in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis and millis % factor == 0:
            return f"{millis // factor}{unit}"
    return f"{millis}ms"


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\d{1,9}(\.\d{1,3})?(ms|s|m|h|d)$",
            "examples": ["1h", "1d"],
            "description": "A number with a unit: ms, s, m, h or d.",
        }
    ),
]
