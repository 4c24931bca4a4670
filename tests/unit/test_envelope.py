"""Envelope decoding and checks."""

from __future__ import annotations

import pytest

from riffle.operators.envelope import EnvelopeError, check, decode, parse_ts

GOOD = {"event_id": "e1", "type": "page_view", "ts": 1_767_225_600_000, "props": {}}


def test_good_envelope_returns_event_time() -> None:
    assert check(dict(GOOD)) == 1_767_225_600_000
    assert check({**GOOD, "context": {"country": "US"}}) == 1_767_225_600_000


@pytest.mark.parametrize(
    ("ts", "millis"),
    [
        (1_767_225_600_123, 1_767_225_600_123),
        (1_767_225_600_123.9, 1_767_225_600_123),
        ("2026-01-01T00:00:00Z", 1_767_225_600_000),
        ("2026-01-01T01:00:00.250+01:00", 1_767_225_600_250),
    ],
)
def test_timestamps(ts: object, millis: int) -> None:
    assert parse_ts(ts) == millis


@pytest.mark.parametrize(
    ("event", "failure", "path"),
    [
        ([1, 2], "envelope", "$"),
        ({**GOOD, "event_id": ""}, "envelope", "event_id"),
        ({**GOOD, "event_id": "x" * 129}, "envelope", "event_id"),
        ({k: v for k, v in GOOD.items() if k != "event_id"}, "envelope", "event_id"),
        ({**GOOD, "type": 3}, "envelope", "type"),
        ({k: v for k, v in GOOD.items() if k != "ts"}, "envelope", "ts"),
        ({**GOOD, "ts": "2026-01-01T00:00:00"}, "envelope", "ts"),
        ({**GOOD, "ts": 1_767_225_600}, "envelope", "ts"),
        ({**GOOD, "ts": True}, "envelope", "ts"),
        ({**GOOD, "props": None}, "envelope", "props"),
        ({**GOOD, "context": "mobile"}, "envelope", "context"),
    ],
)
def test_bad_envelopes_name_the_field(event: object, failure: str, path: str) -> None:
    with pytest.raises(EnvelopeError) as caught:
        check(event)
    assert caught.value.failure_type == failure
    assert caught.value.path == path
    assert caught.value.reason


def test_undecodable_bytes_are_parse_failures() -> None:
    with pytest.raises(EnvelopeError) as caught:
        decode(b'{"event_id": ')
    assert caught.value.failure_type == "parse"
    assert decode(b'{"a": 1}') == {"a": 1}
