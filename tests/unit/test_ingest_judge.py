"""``POST /v1/events``' per-event checks: what an array element's dead letter keeps."""

from __future__ import annotations

from pathlib import Path

import orjson

from riffle.api.routes.ingest import _split, judge
from riffle.config.registry import load_schemas
from riffle.config.settings import SCHEMAS_DIR
from riffle.config.spec import load_spec
from riffle.operators.schemas import EventValidator

SPEC = load_spec(Path(__file__).parents[2] / "config" / "demo.yaml")
VALIDATOR = EventValidator(load_schemas(SCHEMAS_DIR))


def test_array_elements_are_encoded_once_and_a_rejected_one_keeps_its_own_json() -> None:
    good = {"type": "signup", "ts": 1_900_000_000_000, "props": {"channel": "ads"}}
    bad = {"type": "signup", "ts": 1_900_000_000_000, "props": {"channel": 7}}
    named = {**bad, "event_id": "mine"}
    raws = _split(orjson.dumps([good, bad, named]), "application/json")
    assert raws is not None
    assert [raw for raw, _ in raws] == [None, None, None]  # no bytes of their own yet
    accepted, rejected, rejected_named = (
        judge(raw, value, VALIDATOR, SPEC, "acme") for raw, value in raws
    )
    assert accepted.letter is None and accepted.value is not None
    assert orjson.loads(accepted.value) == {**good, "event_id": accepted.event_id}
    assert rejected.letter is not None and rejected.event_id is not None
    # The letter keeps the element as it came: without the id assigned here.
    assert rejected.letter.raw == orjson.dumps(bad)
    assert rejected.letter.event_id == rejected.event_id
    assert rejected_named.letter is not None
    assert rejected_named.letter.raw == orjson.dumps(named)


def test_a_single_event_keeps_the_body_bytes() -> None:
    body = b'{"type": "signup",  "ts": 1, "props": {"channel": 7}}'
    raws = _split(body, "application/json")
    assert raws is not None
    checked = judge(*raws[0], VALIDATOR, SPEC, "acme")
    assert checked.letter is not None and checked.letter.raw == body
