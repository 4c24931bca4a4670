"""Instants in query strings: RFC 3339, epoch milliseconds, or relative to now.

Every instant the API accepts lies in ``[MIN_INSTANT_MS, MAX_INSTANT_MS]``
(1970-01-01 to 9999-01-01 UTC): late enough to be an event time, early
enough that aligning it up to a day or adding a period still prints as a
four-digit RFC 3339 year. Anything else is a ``ValueError`` with a message
for the caller, never an ``OverflowError`` from deeper down.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta

from riffle.config.durations import DurationTooLongError, parse_duration
from riffle.config.instants import MAX_INSTANT_MS, MIN_INSTANT_MS

__all__ = ["MAX_INSTANT_MS", "MIN_INSTANT_MS", "TIME_PATTERN", "format_instant", "parse_instant"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LONG_YEAR = re.compile(r"^\d{5,}-\d{2}-\d{2}", re.ASCII)
_MS = timedelta(milliseconds=1)
TIME_FORMS = "RFC 3339 with an offset, epoch milliseconds, `now`, or relative like `-15m`"
TIME_PATTERN = (
    r"^\s*(now|-\d{1,12}(\.\d{1,9})?(ms|s|m|h|d)|\d{1,15}|"
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2}))\s*$"
)
"""A regular expression of the forms, for API documents; the parser has the last word."""


def parse_instant(text: str, now_ms: int) -> int:
    """Epoch ms of ``text``: ``now``, ``-15m`` (a duration before now), digits, or RFC 3339.

    RFC 3339 needs an offset (``Z`` or ``+02:00``): a bare local time is
    ambiguous and refused. Raises ``ValueError`` with a message for the caller,
    also for instants outside ``[MIN_INSTANT_MS, MAX_INSTANT_MS]``.
    """
    raw = text.strip()
    if raw == "now":
        return _bounded(text, now_ms)
    if raw.isascii() and raw.isdigit():
        if len(raw) > 15:
            raise _out_of_range(text)
        return _bounded(text, int(raw))
    if raw.startswith("-"):
        try:
            before = parse_duration(raw[1:])
        except DurationTooLongError:
            raise _out_of_range(text) from None
        except ValueError:
            raise ValueError(
                f"{text!r} is not a relative time; write -15m, -1h, -2d (units ms, s, m, h, d)"
            ) from None
        return _bounded(text, now_ms - before // _MS)
    if _LONG_YEAR.match(raw):
        raise _out_of_range(text)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time; use RFC 3339 (2024-05-01T12:00:00Z), "
            "epoch milliseconds, now, or a relative time like -15m"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; add Z or +hh:mm")
    try:
        millis = (moment - _EPOCH) // _MS
    except OverflowError:
        raise _out_of_range(text) from None
    return _bounded(text, millis)


def format_instant(epoch_ms: int) -> str:
    """RFC 3339 in UTC with a ``Z``; milliseconds only when there are any.

    Defined for every epoch ms of years 1 to 9999; ``ValueError`` outside them.
    """
    if epoch_ms % 1000 == 0 and 0 <= epoch_ms <= MAX_INSTANT_MS:
        # Whole seconds since 1970 (every bucket and window bound): the day's text once.
        days, second = divmod(epoch_ms // 1000, 86_400)
        return _day(days) + _clock(second)
    try:
        moment = _EPOCH + epoch_ms * _MS
    except OverflowError:
        raise ValueError(f"{epoch_ms} ms lies outside the years 1 to 9999") from None
    spec = "seconds" if epoch_ms % 1000 == 0 else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


@functools.lru_cache(maxsize=86_400)
def _clock(second: int) -> str:
    """``THH:MM:SSZ`` of the ``second`` of a day (a bucket's time of day repeats daily)."""
    hour, second = divmod(second, 3600)
    return f"T{hour:02d}:{second // 60:02d}:{second % 60:02d}Z"


@functools.lru_cache(maxsize=4096)
def _day(days: int) -> str:
    """``YYYY-MM-DD`` of ``days`` after 1970-01-01."""
    return (_EPOCH + timedelta(days=days)).date().isoformat()


def _bounded(text: str, millis: int) -> int:
    if not MIN_INSTANT_MS <= millis <= MAX_INSTANT_MS:
        raise _out_of_range(text)
    return millis


def _out_of_range(text: str) -> ValueError:
    return ValueError(f"{text!r} lies outside 1970-01-01T00:00:00Z to 9999-01-01T00:00:00Z")
