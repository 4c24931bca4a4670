"""Instants in query strings: RFC 3339, epoch milliseconds, or relative to now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from riffle.config.durations import parse_duration

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def parse_instant(text: str, now_ms: int) -> int:
    """Epoch ms of ``text``: ``now``, ``-15m`` (a duration before now), digits, or RFC 3339.

    RFC 3339 needs an offset (``Z`` or ``+02:00``): a bare local time is
    ambiguous and refused. Raises ``ValueError`` with a message for the caller.
    """
    raw = text.strip()
    if raw == "now":
        return now_ms
    if raw.isdigit():
        return int(raw)
    if raw.startswith("-"):
        try:
            before = parse_duration(raw[1:])
        except ValueError:
            raise ValueError(
                f"{text!r} is not a relative time; write -15m, -1h, -2d (units ms, s, m, h, d)"
            ) from None
        return now_ms - round(before.total_seconds() * 1000)
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time; use RFC 3339 (2024-05-01T12:00:00Z), "
            "epoch milliseconds, now, or a relative time like -15m"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; add Z or +hh:mm")
    return (moment - _EPOCH) // _MS


def format_instant(epoch_ms: int) -> str:
    """RFC 3339 in UTC with a ``Z``; milliseconds only when there are any."""
    moment = _EPOCH + epoch_ms * _MS
    spec = "seconds" if epoch_ms % 1000 == 0 else "milliseconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")
