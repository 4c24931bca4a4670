"""The API against its own OpenAPI document: schemathesis over every operation of the live
document of a real API process (real Redis, a Tansu broker, DuckDB, real keys).

Each run checks that no generated request gets a 5xx, that every status, content
type and body conforms to the document, and follows the document's links
(create a rule, read it, replace it, delete it; silences, keys and dead letters
alike) in a stateful phase. The operations are read from the live document, so a
route added later is covered by the same run. The default suite runs a bounded
run; the soak marker runs a longer one.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from riffle.api.app import create_app
from riffle.api.openapi import OPEN_PATHS, operations
from riffle.api.render import chromium_path
from riffle.config.settings import Settings
from riffle.keys import store
from riffle.operators.models.entities import PredictionRecord
from riffle.sinks.redis.alerts import RedisAlerts
from riffle.sinks.redis.predictions import RedisPredictionStore
from riffle.sinks.redis.silences import Matcher, SilenceSpec, SilenceStore
from tests.integration.ingest_support import serve_process
from tests.integration.notify_support import transition

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TENANT = "contract"

INTERNALS = re.compile(r"SELECT |FROM |\.duckdb|/tmp/|/work/|Traceback|File \"|redis://")
"""What no error body may carry: SQL, paths, stack traces, connection URLs."""
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)


def schemathesis_bin() -> Path:
    """The CLI of ``make contract``'s virtualenv (schemathesis pins a jsonschema-rs older than
    the schema registry's, so it lives apart from ``.venv``)."""
    path = Path(
        os.environ.get("RIFFLE_SCHEMATHESIS", ROOT / ".venv-contract" / "bin" / "schemathesis")
    )
    if not path.exists():
        raise RuntimeError(f"schemathesis not found at {path}: run `make contract` first")
    return path


@dataclass
class Api:
    """A served API process, an admin key of its tenant and the identifiers seeded for it."""

    url: str
    key: str
    log: Path
    seeded: dict[str, dict[str, str]]
    """Per operation id, path parameters naming resources that exist when the run starts."""
    share_token: str
    """A share of :data:`BOARD`, sent as ``X-Share-Token`` to the ``/v1/shared`` reads."""


def seed(settings: Settings) -> dict[str, dict[str, str]]:
    """Resources no operation of the API creates (a firing alert, a prediction) and a
    silence, written as the dataflow and a user would; their identifiers per operation."""
    client = redis.Redis.from_url(settings.redis_url)
    now = int(time.time() * 1000)
    instance = "contract_rule:0"
    RedisAlerts(client, settings.redis_prefix).write(
        [transition(instance, at=now - 60_000, rule="contract_rule", tenant=TENANT)]
    )
    RedisPredictionStore(client, settings.redis_prefix, 3600).write(
        [PredictionRecord(TENANT, "purchase_propensity", "session", "s-1", now, 0.4, "open", 3, 10)]
    )
    silence = SilenceStore(client, settings.redis_prefix).create(
        TENANT, SilenceSpec(matchers=[Matcher(name="alertname", value="x")], ends_at=now + 3600_000)
    )
    client.close()
    return {
        "ackAlert": {"instance": instance},
        "unackAlert": {"instance": instance},
        "getPrediction": {"entity_type": "session", "entity_id": "s-1"},
        "deleteSilence": {"silence_id": silence.id},
    }


@pytest.fixture
def api(settings_factory: Callable[..., Settings], tmp_path: Path) -> Iterator[Api]:
    """``riffle api`` in its own process, with limits far above what the run sends."""
    settings = settings_factory(
        rate_key_requests=100_000.0,
        rate_tenant_requests=100_000.0,
        rate_key_events=100_000.0,
        rate_tenant_events=100_000.0,
    )
    key, _ = store(settings).create(TENANT, ["ingest", "read", "admin"], name="contract")
    log = tmp_path / "api.log"
    seeded = seed(settings)
    with serve_process(settings, log, startup_timeout=120) as url:
        yield Api(url, key, log, seeded, share_board(url, key))


BOARD = {
    "id": "overview",
    "title": "Overview",
    "panels": [{"id": "events", "title": "Views", "query": {"metric": "page_views"}}],
}
"""The dashboard the export and share operations find (their path examples name it)."""


def share_board(url: str, key: str) -> str:
    """Save :data:`BOARD` as a user would and share it; the share's token."""
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    with admin:
        saved = admin.post("/v1/dashboards", json=BOARD)
        assert saved.status_code in (200, 201), saved.text
        made = admin.post(f"/v1/dashboards/{BOARD['id']}/shares", json={"expires_in": "1h"})
        assert made.status_code == 201, made.text
        return str(made.json()["token"])


RENDERS = "^export(Panel|DashboardPdf)$"
"""The operations that render in Chromium."""


def _browserless() -> bool:
    """No Chromium here (.ci/run goes on when it cannot be installed): the renders, which
    then answer their documented 503 ``render_unavailable``, are left out of the run."""
    return chromium_path() is None


def config_file(api: Api, path: Path) -> Path:
    """A schemathesis.toml that hands the seeded identifiers to the operations using them."""
    browserless = ["enabled = false"] if _browserless() else []
    lines = []
    for operation, params in api.seeded.items():
        lines += [
            "[[operations]]",
            f'include-operation-id = "{operation}"',
            *(browserless if re.match(RENDERS, operation) else []),
            "[operations.parameters]",
        ]
        lines += [f'"path.{name}" = "{value}"' for name, value in params.items()]
    lines += [  # the first block an operation matches is its settings
        "[[operations]]",
        'include-path-regex = "^/v1/shared/"',
        f'headers = {{ "X-Share-Token" = "{api.share_token}" }}',
        "max-stream-events = 1",
        "[[operations]]",  # a stream's first event (ready) is its answer; heartbeats follow
        'include-operation-id = "streamWindows"',
        "max-stream-events = 1",
        "[[operations]]",  # each render is a browser page load: a few suffice (e2e draws them)
        f'include-operation-id-regex = "{RENDERS}"',
        "generation.max-examples = 2",
        *browserless,
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Outcome:
    """What one schemathesis run did."""

    operations: int
    requests: int
    failures: list[str]
    warnings: str
    output: str


def run_schemathesis(
    api: Api, tmp_path: Path, max_examples: int, seed: int, phases: str
) -> Outcome:
    """Run the schemathesis CLI over the live document; its JUnit report says what failed."""
    junit = tmp_path / "junit.xml"
    ndjson = tmp_path / "events.ndjson"
    argv = [
        str(schemathesis_bin()),
        "--config-file",
        str(config_file(api, tmp_path / "schemathesis.toml")),
        "run",
        f"{api.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {api.key}",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--phases",
        phases,
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--generation-with-security-parameters",
        "false",
        "--no-color",
        "--report",
        "junit,ndjson",
        "--report-junit-path",
        str(junit),
        "--report-ndjson-path",
        str(ndjson),
    ]
    # In tmp_path: schemathesis keeps a cache (.schemathesis/) in its working directory.
    done = subprocess.run(
        argv, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False
    )
    output = done.stdout + done.stderr
    failures = []
    operations = 0
    if junit.exists():
        for case in ET.parse(junit).getroot().iter("testcase"):
            operations += 1
            failures.extend(
                f"{case.get('name')}: {problem.get('message') or problem.text}"
                for problem in (*case.iter("failure"), *case.iter("error"))
            )
    responses = list(recorded_responses(ndjson)) if ndjson.exists() else []
    requests = len(responses)
    failures.extend(
        f"{status} body carries internals: {body[:300]}"
        for status, body in responses
        if status >= 400 and INTERNALS.search(body)
    )
    warnings = output.split("WARNINGS", 1)[1].split("SUMMARY", 1)[0] if "WARNINGS" in output else ""
    if done.returncode not in (0, 1) and not failures:
        failures.append(f"schemathesis exited with {done.returncode}")
    return Outcome(operations, requests, failures, warnings, output)


def recorded_responses(ndjson: Path) -> Iterator[tuple[int, str]]:
    """``(status, body)`` of every response the run's NDJSON report recorded."""
    for line in ndjson.read_text().splitlines():
        ((kind, event),) = json.loads(line).items()
        if kind != "ScenarioFinished":
            continue
        for interaction in event.get("recorder", {}).get("interactions", {}).values():
            response = interaction.get("response")
            if isinstance(response, dict):
                content = response.get("content") or {}
                raw = content.get("$base64", "") if isinstance(content, dict) else str(content)
                body = base64.b64decode(raw).decode("utf-8", "replace") if raw else ""
                yield response["status_code"], body


def _documented(api: Api) -> int:
    doc = httpx.get(f"{api.url}/openapi.json", timeout=10).json()
    return sum(
        1
        for item in doc["paths"].values()
        for method, operation in item.items()
        if method in ("get", "put", "post", "delete", "patch")
        and not (_browserless() and re.match(RENDERS, operation["operationId"]))
    )


ONE_OF_TWO = {"GET /v1/stream", "PUT /v1/dashboards/{dashboard_id}"}
"""Operations that need one of two optional parameters (``metric=`` or ``sub=``; ``If-Match``
or ``?version=``), which OpenAPI cannot state: generated requests without either are
refused, so schemathesis reports most of its data rejected there."""


def _section(warnings: str, word: str) -> str:
    """The paragraph of ``warnings`` whose heading holds ``word`` (up to the next one)."""
    parts = re.split(r"\n(?=\S)", warnings)
    return "\n".join(p for p in parts if word in p.split("\n", 1)[0].lower())


def _assert_clean(outcome: Outcome, api: Api, operations: int) -> None:
    tail = outcome.output[-6000:]
    assert not outcome.failures, "\n".join(outcome.failures[:20]) + "\n" + tail
    mismatched = set(re.findall(r"^\s*- ([A-Z]+ \S+)$", _section(outcome.warnings, "validation")))
    assert mismatched <= ONE_OF_TWO, outcome.warnings
    assert outcome.operations >= operations, tail
    served = api.log.read_text()
    assert "Traceback" not in served and "unhandled_error" not in served, served[-4000:]


@pytest.mark.timeout(600)
def test_every_operation_keeps_its_contract(api: Api, tmp_path: Path) -> None:
    """The bounded run: examples, fuzzing and stateful links; the coverage phase (every
    boundary of every parameter, most of the time) runs in the soak below."""
    operations = _documented(api)
    outcome = run_schemathesis(
        api, tmp_path, max_examples=12, seed=20, phases="examples,fuzzing,stateful"
    )
    print(  # the figures the issue asks for, in the test log
        f"contract run: {outcome.operations} operations, {outcome.requests} requests"
    )
    _assert_clean(outcome, api, operations)
    assert outcome.requests >= 10 * operations


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_every_operation_keeps_its_contract_long(api: Api, tmp_path: Path) -> None:
    operations = _documented(api)
    outcome = run_schemathesis(
        api, tmp_path, max_examples=100, seed=2020, phases="examples,coverage,fuzzing,stateful"
    )
    print(f"contract soak: {outcome.operations} operations, {outcome.requests} requests")
    _assert_clean(outcome, api, operations)


OWN_ERROR_BODIES = {
    ("POST /v1/events", "503"),  # per-event results beside the error
    ("POST /v1/dead-letters/replay", "503"),
    ("GET /readyz", "503"),  # the checks beside the error
}


def test_the_document_gives_every_identifier_and_error(
    settings_factory: Callable[..., Settings],
) -> None:
    """What the run relies on, checked on every operation (routes added later included):
    path identifiers have an enum or examples, errors have the one error body, and the
    open routes say a key is optional."""
    doc = create_app(settings_factory()).openapi()
    error = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, method, op in operations(doc):
        label = f"{method.upper()} {path}"
        for param in op.get("parameters", []):
            if param["in"] == "path":
                schema = param["schema"]
                assert schema.get("enum") or schema.get("examples"), (label, param["name"])
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")) and (label, status) not in OWN_ERROR_BODIES:
                assert response["content"]["application/json"]["schema"] == error, (label, status)
        assert "400" in op["responses"], label
        if path in OPEN_PATHS:
            assert {} in op["security"], label
        else:
            assert {"401", "403", "429", "503"} <= set(op["responses"]), label
    assert "HTTPValidationError" not in doc["components"]["schemas"]
