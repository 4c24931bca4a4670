"""Event envelope: decoding with orjson and the checks every event must pass.

An envelope is a JSON object with ``event_id`` (non-empty string), ``type``
(string), ``ts`` (epoch milliseconds, or RFC 3339 with an offset), ``props``
(object) and optional ``context`` (object). :func:`check` returns the event
time in epoch milliseconds or raises :class:`EnvelopeError` naming the field
and the rule broken.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from riffle.config.errors import RiffleError
from riffle.operators.records import FailureType, FieldIssue

MAX_EVENT_ID = 128
MIN_TS = 946_684_800_000  # 2000-01-01: older stamps are seconds or garbage
MAX_TS = 4_102_444_800_000  # 2100-01-01


class EnvelopeError(RiffleError):
    """An event that cannot enter the flow; ``path`` names the offending field."""

    def __init__(
        self,
        failure_type: FailureType,
        path: str,
        reason: str,
        issues: tuple[FieldIssue, ...] = (),
    ) -> None:
        super().__init__(f"{path}: {reason}")
        self.failure_type: FailureType = failure_type
        self.path = path
        self.reason = reason
        self.issues = issues or ((path, failure_type, reason),)


def decode(raw: bytes) -> Any:
    """Parse JSON bytes; a parse failure is an :class:`EnvelopeError` of type ``parse``."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EnvelopeError("parse", "$", f"not valid JSON: {exc}") from None


def parse_ts(value: Any) -> int:
    """Event time in epoch milliseconds from epoch ms or an RFC 3339 string."""
    kind = type(value)
    if kind is int or kind is float:
        millis = int(value)
    elif kind is str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise EnvelopeError(
                "envelope", "ts", "must be epoch milliseconds or an RFC 3339 timestamp"
            ) from None
        if moment.tzinfo is None:
            raise EnvelopeError("envelope", "ts", "an RFC 3339 timestamp needs an offset or Z")
        millis = int(moment.timestamp() * 1000)
    else:
        raise EnvelopeError("envelope", "ts", "must be epoch milliseconds or an RFC 3339 string")
    if not MIN_TS <= millis < MAX_TS:
        raise EnvelopeError("envelope", "ts", "must lie between 2000 and 2100 (epoch milliseconds)")
    return millis


def check(event: Any) -> int:
    """Check the envelope of a decoded event; return its event time in epoch ms."""
    if type(event) is not dict:
        raise EnvelopeError("envelope", "$", "an event is a JSON object")
    event_id = event.get("event_id")
    if type(event_id) is not str or not event_id or len(event_id) > MAX_EVENT_ID:
        raise EnvelopeError(
            "envelope", "event_id", f"must be a non-empty string of at most {MAX_EVENT_ID} chars"
        )
    if type(event.get("type")) is not str:
        raise EnvelopeError("envelope", "type", "must be a string naming the event type")
    if "ts" not in event:
        raise EnvelopeError("envelope", "ts", "is required")
    ts = parse_ts(event["ts"])
    if type(event.get("props")) is not dict:
        raise EnvelopeError("envelope", "props", "must be an object")
    context = event.get("context")
    if context is not None and type(context) is not dict:
        raise EnvelopeError("envelope", "context", "must be an object when present")
    return ts
