"""The schema registry: loading, validation paths, compatibility rules, and the flow's hook."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from riffle.cli import app
from riffle.config.registry import (
    SchemaRegistryError,
    check_compatibility,
    check_registry,
    load_schemas,
)
from riffle.config.settings import SCHEMAS_DIR
from riffle.config.spec import load_spec
from riffle.operators.envelope import EnvelopeError, check, decode
from riffle.operators.extract import compile_plans
from riffle.operators.ingest import PartitionIngest
from riffle.operators.schemas import EventValidator
from riffle.operators.watermark import PartitionClock
from riffle.sources.demo import generate

BASE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
    },
    "required": ["amount"],
}


def write(root: Path, event_type: str, version: str, schema: dict[str, Any]) -> None:
    (root / event_type).mkdir(parents=True, exist_ok=True)
    (root / event_type / f"{version}.json").write_text(json.dumps(schema))


def test_demo_events_pass_and_malformed_ones_fail() -> None:
    validator = EventValidator(load_schemas(SCHEMAS_DIR))
    outcomes: dict[str, int] = {}
    for raw in generate(5000, seed=3):
        try:
            event = decode(raw)
            check(event)
            validator.check(event)
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except EnvelopeError as exc:
            outcomes[exc.failure_type] = outcomes.get(exc.failure_type, 0) + 1
    assert "schema" not in outcomes, "well-formed demo events satisfy their schemas"
    assert outcomes["ok"] > 4900
    assert outcomes.get("parse", 0) + outcomes.get("envelope", 0) > 0
    assert check_registry(SCHEMAS_DIR) == []


def test_validation_reports_every_rule_with_its_path(tmp_path: Path) -> None:
    nested = {
        **BASE,
        "properties": {
            **BASE["properties"],
            "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
        },
    }
    write(tmp_path, "purchase", "1-0-0", nested)
    validator = EventValidator(load_schemas(tmp_path))
    key, issues = validator.validate(
        {"type": "purchase", "props": {"currency": "GBP", "items": [{}, {"sku": 1}]}}
    )
    assert key == "purchase/1-0-0"
    assert sorted(issues) == sorted(
        [
            ("props.amount", "required", '"amount" is a required property'),
            ("props.currency", "enum", issues[[i[0] for i in issues].index("props.currency")][2]),
            ("props.items[0].sku", "required", '"sku" is a required property'),
        ]
    )
    _, named = validator.validate({"type": "purchase", "schema": "purchase/3-0-0", "props": {}})
    assert named[0][:2] == ("schema", "unknown_schema")
    _, other = validator.validate({"type": "purchase", "schema": "signup/1-0-0", "props": {}})
    assert other[0][:2] == ("schema", "schema_mismatch")
    assert validator.validate({"type": "unregistered", "props": {"x": 1}}) == (None, [])


def test_an_event_may_name_an_older_version(tmp_path: Path) -> None:
    write(tmp_path, "purchase", "1-0-0", BASE)
    write(tmp_path, "purchase", "2-0-0", {**BASE, "required": ["amount", "currency"]})
    validator = EventValidator(load_schemas(tmp_path))
    event = {"type": "purchase", "props": {"amount": 1}}
    assert validator.validate(event)[0] == "purchase/2-0-0"
    assert validator.validate(event)[1]
    assert validator.validate({**event, "schema": "purchase/1-0-0"}) == ("purchase/1-0-0", [])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s.update(required=[]), "required field removed"),
        (lambda s: s.update(required=["amount", "currency"]), "required field added"),
        (lambda s: s["properties"].pop("currency"), "property removed"),
        (lambda s: s["properties"]["amount"].update(type="integer"), "type narrowed"),
        (lambda s: s["properties"]["currency"].update(enum=["EUR"]), "enum narrowed"),
        (lambda s: s["properties"]["amount"].update(minimum=5), "minimum tightened"),
        (lambda s: s.update(additionalProperties=False), "additionalProperties closed"),
    ],
)
def test_breaking_changes_are_refused_within_a_model(
    change: Any, problem: str, tmp_path: Path
) -> None:
    edited = json.loads(json.dumps(BASE))
    change(edited)
    assert any(problem in p for p in check_compatibility(BASE, edited))
    write(tmp_path / "same", "purchase", "1-0-0", BASE)
    write(tmp_path / "same", "purchase", "1-0-1", edited)
    assert check_registry(tmp_path / "same")
    write(tmp_path / "major", "purchase", "1-0-0", BASE)
    write(tmp_path / "major", "purchase", "2-0-0", edited)
    assert check_registry(tmp_path / "major") == []


def test_compatible_changes_pass(tmp_path: Path) -> None:
    widened = json.loads(json.dumps(BASE))
    widened["properties"]["amount"]["type"] = ["number", "string"]
    widened["properties"]["currency"]["enum"] = ["EUR", "USD", "GBP"]
    widened["properties"]["note"] = {"type": "string"}
    assert check_compatibility(BASE, widened) == []


def test_cli_schemas_check_and_in_place_edits(tmp_path: Path) -> None:
    runner = CliRunner()
    write(tmp_path / "published", "purchase", "1-0-0", BASE)
    write(tmp_path / "edited", "purchase", "1-0-0", {**BASE, "required": ["amount", "currency"]})
    ok = runner.invoke(app, ["schemas", "check", str(tmp_path / "published")])
    assert ok.exit_code == 0, ok.output
    assert "ok (1 schema versions" in ok.output
    bad = runner.invoke(
        app,
        ["schemas", "check", str(tmp_path / "edited"), "--baseline", str(tmp_path / "published")],
    )
    assert bad.exit_code == 1
    assert "purchase 1-0-0 (edited in place): props.currency: required field added" in bad.output


def test_bad_schema_files_are_named(tmp_path: Path) -> None:
    write(tmp_path, "purchase", "1-0", BASE)
    with pytest.raises(SchemaRegistryError, match=r"1-0\.json"):
        load_schemas(tmp_path)
    (tmp_path / "purchase" / "1-0.json").unlink()
    write(tmp_path, "purchase", "1-0-0", {"type": "nonsense"})
    with pytest.raises(SchemaRegistryError, match="not a valid JSON Schema"):
        load_schemas(tmp_path)


def test_the_flow_ingest_stage_runs_the_same_validator() -> None:
    spec = load_spec(Path("config/demo.yaml"))
    validator = EventValidator(load_schemas(SCHEMAS_DIR))
    ingest = PartitionIngest(
        compile_plans(spec, default_lateness_ms=10_000),
        source="kafka:events/0",
        default_tenant="demo",
        buckets=4,
        clock=PartitionClock(idle_ms=3000, last_arrival=0),
        validate=validator.check,
    )
    ts = 1_800_000_000_000
    good = orjson.dumps(
        {"event_id": "a", "type": "purchase", "ts": ts, "props": {"amount": 3, "currency": "EUR"}}
    )
    bad = orjson.dumps(
        {"event_id": "b", "type": "purchase", "ts": ts, "props": {"amount": "3", "currency": "eur"}}
    )
    result = ingest.process([(good, "acme", 0), (bad, "acme", 1)], ts)
    assert result.ok == 1
    [letter] = result.dead
    assert letter.failure_type == "schema"
    assert [issue[:2] for issue in letter.errors] == [
        ("props.amount", "type"),
        ("props.currency", "pattern"),
    ]
    assert letter.event_id == "b"
    assert letter.tenant == "acme"
