"""Fuzzing POST /v1/events over HTTP: generated bodies, no 5xx, every reject explained.

The default run sends 2,000 bodies; the soak run (``-m soak``) 10,000, from the same
strategies and checks.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riffle.config.settings import Settings
from riffle.keys import store
from tests.integration.ingest_support import serve_process

pytestmark = pytest.mark.integration

BODIES_PER_EXAMPLE = 25

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
event_types = st.sampled_from(["purchase", "page_view", "signup", "api_request", "nope", ""])
props = st.one_of(
    st.fixed_dictionaries(
        {
            "amount": st.one_of(st.floats(-10, 1e6), st.text(max_size=5)),
            "currency": st.text(max_size=4),
        }
    ),
    st.fixed_dictionaries({"page": st.text(max_size=6), "path": st.text(max_size=6)}),
    st.fixed_dictionaries({"channel": st.one_of(st.text(max_size=5), st.integers(-99, 99))}),
    json_values,
)
envelopes = st.fixed_dictionaries(
    {"type": event_types, "props": props},
    optional={
        "event_id": st.one_of(st.text(max_size=140), st.integers(-(2**31), 2**31)),
        "ts": st.one_of(
            st.integers(min_value=-(2**40), max_value=2**45),
            st.sampled_from(["2025-01-01T00:00:00Z", "2025-01-01T00:00:00", "yesterday"]),
        ),
        "context": json_values,
        "schema": st.sampled_from(["purchase/1-0-0", "purchase/2-0-0", "signup/1-0-0", "x"]),
    },
)


@st.composite
def bodies(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    kind = draw(st.sampled_from(["event", "array", "ndjson", "json", "bytes"]))
    headers: dict[str, str] = {}
    if kind == "event":
        raw = orjson.dumps(draw(envelopes))
    elif kind == "array":
        raw = orjson.dumps(draw(st.lists(st.one_of(envelopes, json_values), max_size=6)))
    elif kind == "ndjson":
        lines = draw(
            st.lists(st.one_of(envelopes.map(orjson.dumps), st.binary(max_size=20)), max_size=6)
        )
        raw = b"\n".join(line.replace(b"\n", b" ") for line in lines)
        headers["Content-Type"] = "application/x-ndjson"
    elif kind == "json":
        raw = orjson.dumps(draw(json_values))
    else:
        raw = draw(st.binary(max_size=64))
    if draw(st.integers(0, 9)) == 0:
        raw = gzip.compress(raw)
        headers["Content-Encoding"] = "gzip"
    return raw, headers


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    body: Any = response.json()
    if response.status_code in (200, 202):
        assert body["accepted"] + body["rejected"] + body["failed"] == len(body["results"])
        for result in body["results"]:
            if result["status"] == "rejected":
                assert result["failure_type"] and result["dead_letter_id"]
                assert result["errors"]
                for error in result["errors"]:
                    assert error["path"] and error["rule"] and error["message"]
            else:
                assert result["status"] in ("accepted", "queued")
                assert result["event_id"]
    else:
        assert response.status_code in (400, 413, 415, 422), response.text
        assert body["error"]["code"] and body["error"]["message"]


@pytest.mark.parametrize(
    "examples",
    [
        pytest.param(80, id="2000-bodies"),
        pytest.param(400, id="10000-bodies", marks=pytest.mark.soak),
    ],
)
def test_fuzz_ingest_never_5xx_and_explains_every_reject(
    settings_factory: Callable[..., Settings], tmp_path: Path, examples: int
) -> None:
    app_settings = settings_factory(
        ingest_max_body_bytes=2048,
        ingest_max_events=5,
        rate_key_requests=1e9,
        rate_tenant_requests=1e9,
        rate_key_events=1e9,
        rate_tenant_events=1e9,
    )
    sent = 0
    # The app runs in its own process, so generating bodies does not share its GIL, and
    # four client threads keep it busy.
    key, _ = store(app_settings).create("fuzz", ["ingest"])
    local = threading.local()
    with serve_process(app_settings, tmp_path / "api.log") as url, ThreadPoolExecutor(4) as pool:

        def post(item: tuple[int, tuple[bytes, dict[str, str]]]) -> None:
            index, (raw, headers) = item
            if not hasattr(local, "http"):
                local.http = httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=30)
            # Mostly fire-and-forget (202) to keep it fast; some wait for the broker.
            wait = "true" if index == 0 else "false"
            check(local.http.post(f"/v1/events?wait={wait}", content=raw, headers=headers))

        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.lists(bodies(), min_size=BODIES_PER_EXAMPLE, max_size=BODIES_PER_EXAMPLE))
        def run(batch: list[tuple[bytes, dict[str, str]]]) -> None:
            nonlocal sent
            list(pool.map(post, enumerate(batch)))
            sent += len(batch)

        run()
    assert sent >= examples * BODIES_PER_EXAMPLE
