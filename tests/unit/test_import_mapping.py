"""Schema mappings: loading with file/line errors, and rows mapped or rejected by column."""

from __future__ import annotations

import orjson
import pytest

from riffle.config.mapping import MappingError, parse_mapping
from riffle.operators.envelope import EnvelopeError, check
from riffle.operators.mapping import RowMapper, event_id_for

MAPPING = """
type: purchase
event_id: order_id
ts: {column: created_at, format: "%Y-%m-%d %H:%M:%S", zone: Europe/Berlin}
props:
  amount: {column: total, type: float}
  currency: cur
  channel: {const: legacy}
  net: {expr: "float(row.total) - float(row.tax)", type: float}
  note: {column: note, required: false}
context:
  country: {column: country, default: unknown}
"""


def row(values: dict[str, object], number: int = 7, file: str = "/data/o.csv") -> bytes:
    return orjson.dumps({"file": file, "row": number, "values": values})


GOOD = {
    "order_id": "o-1",
    "created_at": "2026-01-05 10:00:12",
    "total": "49.90",
    "tax": "7.90",
    "cur": "EUR",
    "note": None,
    "country": None,
}


def test_a_row_becomes_the_envelope_the_mapping_describes() -> None:
    mapper = RowMapper(parse_mapping(MAPPING), event_type=None)
    event = mapper(row(GOOD))
    assert event == {
        "event_id": "o-1",
        "type": "purchase",
        "ts": 1_767_603_612_000,  # 10:00:12 in Berlin is 09:00:12Z
        "props": {"amount": 49.9, "currency": "EUR", "channel": "legacy", "net": 42.0},
        "context": {"country": "unknown"},
    }
    assert check(event) == 1_767_603_612_000


@pytest.mark.parametrize(
    ("change", "column", "reason"),
    [
        ({"total": "abc"}, "total", "'abc' for amount"),
        ({"created_at": "05/01/2026"}, "created_at", "is not a time of format"),
        ({"cur": None}, "cur", "empty value for currency"),
        ({"order_id": ""}, "order_id", "event id column is empty"),
        ({"tax": "x"}, "net", "the expression failed: ValueError"),
    ],
)
def test_a_bad_row_names_its_column_and_reason(
    change: dict[str, object], column: str, reason: str
) -> None:
    mapper = RowMapper(parse_mapping(MAPPING), event_type=None)
    with pytest.raises(EnvelopeError) as caught:
        mapper(row(GOOD | change))
    assert caught.value.failure_type == "import"
    assert caught.value.path == column
    assert reason in caught.value.reason


def test_an_unreadable_row_is_rejected_with_the_readers_reason() -> None:
    mapper = RowMapper(None, event_type="purchase")
    raw = orjson.dumps({"file": "/d/x.csv", "row": 3, "error": "a quote is not closed"})
    with pytest.raises(EnvelopeError) as caught:
        mapper(raw)
    assert (caught.value.path, caught.value.reason) == ("$row", "a quote is not closed")


def test_derived_ids_are_stable_per_source_file_and_row() -> None:
    mapper = RowMapper(None, event_type="signup")
    flat = {"ts": "1767225600000", "channel": "ads"}
    first = mapper(row(flat, 7))
    assert (
        first["event_id"] == mapper(row(flat, 7))["event_id"] == event_id_for("", "/data/o.csv", 7)
    )
    assert first["event_id"] != mapper(row(flat, 8))["event_id"]
    assert first["props"] == {"channel": "ads"} and first["ts"] == 1_767_225_600_000
    other = RowMapper(None, event_type="signup", source_id="crm")(row(flat, 7))
    assert other["event_id"] != first["event_id"]


def test_an_envelope_row_is_taken_as_it_is() -> None:
    mapper = RowMapper(None, event_type=None)
    values = {"event_id": "e1", "type": "signup", "ts": 5, "props": "not an object"}
    event = mapper(row(values))
    with pytest.raises(EnvelopeError):
        check(event)  # the live path's envelope check rejects it, as it would live


def test_mapping_errors_name_file_line_and_field() -> None:
    text = "type: purchase\nts: {column: t, zone: Mars/Base}\nprops:\n  a: {column: x, const: 1}\n"
    with pytest.raises(MappingError) as caught:
        parse_mapping(text, "m.yaml")
    message = str(caught.value)
    assert "m.yaml:2: ts.zone: Value error, unknown time zone 'Mars/Base'" in message
    assert "m.yaml:4: props.a: Value error, a field takes exactly one of" in message
    with pytest.raises(MappingError, match="'__import__' cannot be called"):
        parse_mapping("props:\n  a: {expr: \"__import__('os')\"}\n")
