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

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from riffle.config.settings import Settings
from riffle.keys import store
from tests.integration.ingest_support import serve_process

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

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
    """A served API process and an admin key of its tenant."""

    url: str
    key: str
    log: Path


@pytest.fixture
def api(settings_factory: Callable[..., Settings], tmp_path: Path) -> Iterator[Api]:
    """``riffle api`` in its own process, with limits far above what the run sends."""
    settings = settings_factory(
        rate_key_requests=100_000.0,
        rate_tenant_requests=100_000.0,
        rate_key_events=100_000.0,
        rate_tenant_events=100_000.0,
    )
    key, _ = store(settings).create("contract", ["ingest", "read", "admin"], name="contract")
    log = tmp_path / "api.log"
    with serve_process(settings, log) as url:
        yield Api(url, key, log)


@dataclass
class Outcome:
    """What one schemathesis run did."""

    operations: int
    requests: int
    failures: list[str]
    warnings: str
    output: str


def run_schemathesis(api: Api, tmp_path: Path, max_examples: int, seed: int) -> Outcome:
    """Run the schemathesis CLI over the live document; its JUnit report says what failed."""
    junit = tmp_path / "junit.xml"
    ndjson = tmp_path / "events.ndjson"
    argv = [
        str(schemathesis_bin()),
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
        "examples,coverage,fuzzing,stateful",
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
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
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
    requests = ndjson.read_text().count('"response":') if ndjson.exists() else 0
    warnings = output.split("WARNINGS", 1)[1].split("SUMMARY", 1)[0] if "WARNINGS" in output else ""
    if done.returncode not in (0, 1) and not failures:
        failures.append(f"schemathesis exited with {done.returncode}")
    return Outcome(operations, requests, failures, warnings, output)


def _documented(api: Api) -> int:
    doc = httpx.get(f"{api.url}/openapi.json", timeout=10).json()
    return sum(
        1
        for item in doc["paths"].values()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    )


def _assert_clean(outcome: Outcome, api: Api, operations: int) -> None:
    tail = outcome.output[-6000:]
    assert not outcome.failures, "\n".join(outcome.failures[:20]) + "\n" + tail
    assert "validation" not in outcome.warnings.lower(), outcome.warnings
    assert outcome.operations >= operations, tail
    assert re.search(r"\b5\d\d\b", api.log.read_text()) is None or "Traceback" not in (
        api.log.read_text()
    ), api.log.read_text()[-4000:]


def test_every_operation_keeps_its_contract(api: Api, tmp_path: Path) -> None:
    operations = _documented(api)
    outcome = run_schemathesis(api, tmp_path, max_examples=12, seed=20)
    print(  # the figures the issue asks for, in the test log
        f"contract run: {outcome.operations} operations, {outcome.requests} requests"
    )
    _assert_clean(outcome, api, operations)
    assert outcome.requests >= 10 * operations


@pytest.mark.soak
def test_every_operation_keeps_its_contract_long(api: Api, tmp_path: Path) -> None:
    operations = _documented(api)
    outcome = run_schemathesis(api, tmp_path, max_examples=150, seed=2020)
    print(f"contract soak: {outcome.operations} operations, {outcome.requests} requests")
    _assert_clean(outcome, api, operations)
