"""Spec loading: the demo is valid, and every bad spec names file, line and field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from riffle.config.durations import format_duration, parse_duration
from riffle.config.errors import SpecError
from riffle.config.spec import load_spec, parse_spec

DEMO = Path("config/demo.yaml")


def test_demo_spec_is_rich_enough() -> None:
    spec = load_spec(DEMO)
    assert len(spec.metrics) >= 6
    used = {d for m in spec.metrics for d in m.dimensions}
    assert {"country", "device", "page"} <= used
    assert {m.aggregation for m in spec.metrics} == {
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "distinct",
        "quantiles",
        "top_k",
    }
    assert {m.window.kind for m in spec.metrics} == {"tumbling", "hopping", "session"}
    assert spec.metric("revenue") is not None
    assert spec.metric("nope") is None


def _broken(old: str, new: str) -> str:
    text = DEMO.read_text()
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("old", "new", "line_of", "field", "message"),
    [
        (
            "aggregation: sum",
            "aggregation: median",
            "aggregation: median",
            "metrics[4].aggregation",
            "Input should be",
        ),
        (
            "events: [signup]",
            "events: [sign_up]",
            "events: [sign_up]",
            "metrics[7].events[0]",
            "unknown event type 'sign_up'",
        ),
        (
            "dimensions: [country, channel]",
            "dimensions: [country, chanel]",
            "dimensions: [country, chanel]",
            "metrics[7].dimensions[1]",
            "unknown dimension",
        ),
        (
            "    value: props.amount\n    dimensions: [country, currency]",
            "    dimensions: [country, currency]",
            "name: revenue",
            "metrics[4].value",
            "needs a value field path",
        ),
        ("window: 10s", "window: 7s", "window: 7s", "metrics[1].window", "divide a day"),
        (
            "      detector: riffle",
            "      detector: rifle",
            "detector: rifle",
            "metrics[1].anomaly.detector",
            "unknown detector 'rifle' (known: riffle, windowed_gaussian, halfspacetrees)",
        ),
        (
            "    path: context.country",
            "    path: country",
            "path: country",
            "dimensions.country.path",
            "String should match pattern",
        ),
        ("  hot: 2d", "  hot: forever", "hot: forever", "retention.hot", "not a duration"),
        (
            "    description: Orders paid.",
            "    description: Orders paid.\n    colour: red",
            "colour: red",
            "metrics[3].colour",
            "Extra inputs are not permitted",
        ),
    ],
)
def test_bad_spec_names_file_line_and_field(
    old: str, new: str, line_of: str, field: str, message: str
) -> None:
    text = _broken(old, new)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if line_of in row)
    with pytest.raises(SpecError) as caught:
        parse_spec(text, source="shop.yaml")
    assert f"shop.yaml:{line}: {field}: " in str(caught.value)
    assert message in str(caught.value)


def test_yaml_syntax_error_has_a_line() -> None:
    with pytest.raises(SpecError, match=r"shop.yaml:3: not valid YAML"):
        parse_spec("version: 1\nmetrics:\n  - name: a: b\n  - x\n", source="shop.yaml")


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the spec"):
        load_spec(tmp_path / "absent.yaml")


def test_durations_round_trip() -> None:
    assert parse_duration("1m") == timedelta(minutes=1)
    assert parse_duration("250ms") == timedelta(milliseconds=250)
    assert parse_duration(30) == timedelta(seconds=30)
    assert format_duration(timedelta(hours=2)) == "2h"
    assert format_duration(timedelta(milliseconds=1500)) == "1500ms"
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")
