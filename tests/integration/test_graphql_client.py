"""``/graphql`` through real clients: ``gql`` over HTTP against a served app, and a fuzz.

The app runs under uvicorn on a loopback port (:func:`ingest_support.serve`);
``gql`` is a GraphQL client nobody here wrote. The fuzz builds documents from
the live schema (random selections, aliases, named and inline fragments,
arguments of every type, valid and not) and requires that none is a 5xx or a
masked server error.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from gql import Client, gql
from gql.transport.exceptions import TransportQueryError, TransportServerError
from gql.transport.httpx import HTTPXTransport
from graphql import (
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLType,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riffle.api.graphql.router import build_schema
from tests.conftest import RedisTarget
from tests.integration.ingest_support import Served, serve
from tests.integration.readapi_support import COUNTRIES, World

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world(redis_url: RedisTarget, tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(redis_url, tmp_path_factory.mktemp("gql"))


@pytest.fixture(scope="module")
def served(world: World) -> Iterator[Served]:
    with serve(world.settings) as running:
        yield running


def _client(served: Served, key: str | None) -> Client:
    headers = {} if key is None else {"Authorization": f"Bearer {key}"}
    transport = HTTPXTransport(url=f"{served.url}/graphql", headers=headers, timeout=30)
    return Client(transport=transport, fetch_schema_from_transport=True)


def test_gql_reads_series_and_metrics_over_http(served: Served, world: World) -> None:
    query = gql(
        """
        query Breakdown($start: String!, $end: String!) {
          metrics { name kind dimensions dimensionValues(dimension: "country") }
          series(metric: "revenue", start: $start, end: $end, step: "1h",
                 groupBy: ["country"]) {
            totalCount
            nodes { dims { name value } points { start value } }
          }
        }
        """
    )
    with _client(served, served.key("t1", ["read"])) as session:
        # The client fetched the schema by introspection and validates against it.
        assert session.client.schema is not None
        query.variable_values = {"start": str(world.start), "end": str(world.end)}
        result = session.execute(query)
    assert [m["name"] for m in result["metrics"]][:1] == ["revenue"]
    assert result["metrics"][0]["dimensionValues"] == list(COUNTRIES)
    assert result["series"]["totalCount"] == 3
    de = result["series"]["nodes"][0]
    assert de["dims"] == [{"name": "country", "value": "de"}]
    assert sum(p["value"] for p in de["points"]) == pytest.approx(
        sum(world.expected_sum(world.start, world.end, 60_000, countries=["de"]).values())
    )


def test_gql_sees_refusals_as_errors_with_codes(served: Served) -> None:
    with (
        _client(served, served.key("t1", ["read"])) as session,
        pytest.raises(TransportQueryError) as refused,
    ):
        session.execute(gql('{ series(metric: "nope") { metric } }'))
    assert refused.value.errors is not None
    assert refused.value.errors[0]["extensions"]["code"] == "metric_not_found"
    anonymous = Client(
        transport=HTTPXTransport(url=f"{served.url}/graphql", timeout=30),
        fetch_schema_from_transport=False,
    )
    with pytest.raises(TransportServerError) as denied, anonymous as session:
        session.execute(gql("{ metrics { name } }"))
    assert denied.value.code == 401
    response = httpx.post(
        f"{served.url}/graphql",
        json={"query": "{ metrics { name } }"},
        headers={"X-API-Key": served.key("t1", ["ingest"])},
    )
    assert response.status_code == 403


# --- the fuzz -------------------------------------------------------------------------------

SCHEMA = build_schema()._schema
WORDS = st.sampled_from(
    ["revenue", "conversion", "purchases", "country", "device", "de", "1h", "1m", "-3h", "now",
     "", "nope", "2024-01-01T00:00:00Z", "0", "-1", "🙂", "a" * 300, "previous_period", "x:y"]
)  # fmt: skip


def _named(kind: GraphQLType) -> GraphQLNamedType:
    while isinstance(kind, GraphQLNonNull | GraphQLList):
        kind = kind.of_type
    assert isinstance(kind, GraphQLNamedType)
    return kind


def _literal(draw: st.DrawFn, kind: GraphQLType, depth: int = 0) -> str:
    if isinstance(kind, GraphQLNonNull):
        return _literal(draw, kind.of_type, depth)
    if isinstance(kind, GraphQLList):
        items = draw(st.lists(st.just(0), max_size=3))
        return "[" + ", ".join(_literal(draw, kind.of_type, depth + 1) for _ in items) + "]"
    if isinstance(kind, GraphQLInputObjectType):
        fields = draw(st.lists(st.sampled_from(sorted(kind.fields)), max_size=3, unique=True))
        inner = ", ".join(f"{f}: {_literal(draw, kind.fields[f].type, depth + 1)}" for f in fields)
        return "{" + inner + "}"
    assert isinstance(kind, GraphQLScalarType)
    if kind.name in ("Int", "Millis"):
        return str(draw(st.integers(-(2**40), 2**40)))
    if kind.name == "Float":
        return repr(draw(st.floats(-1e9, 1e9, allow_nan=False)))
    if kind.name == "Boolean":
        return draw(st.sampled_from(["true", "false"]))
    text = draw(WORDS | st.text(max_size=20))
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _selection(draw: st.DrawFn, kind: GraphQLObjectType, depth: int, out: list[str]) -> str:
    names = draw(st.lists(st.sampled_from(sorted(kind.fields)), min_size=1, max_size=4))
    parts = []
    for name in names:
        field: GraphQLField = kind.fields[name]
        alias = f"a{draw(st.integers(0, 30))}: " if draw(st.booleans()) else ""
        args = [a for a, spec in field.args.items() if draw(st.booleans()) or
                isinstance(spec.type, GraphQLNonNull)]  # fmt: skip
        arg_text = (
            "(" + ", ".join(f"{a}: {_literal(draw, field.args[a].type)}" for a in args) + ")"
            if args
            else ""
        )
        target = _named(field.type)
        sub = ""
        if isinstance(target, GraphQLObjectType):
            if depth > 4:
                continue
            inner = _selection(draw, target, depth + 1, out)
            style = draw(st.sampled_from(["plain", "inline", "fragment"]))
            if style == "inline":
                inner = f"... on {target.name} {{ {inner} }}"
            elif style == "fragment":
                fragment = f"F{len(out)}"
                out.append(f"fragment {fragment} on {target.name} {{ {inner} }}")
                inner = f"...{fragment}"
            sub = f" {{ {inner} }}"
        parts.append(f"{alias}{name}{arg_text}{sub}")
    return " ".join(parts) or "__typename"


@st.composite
def documents(draw: st.DrawFn) -> str:
    fragments: list[str] = []
    assert SCHEMA.query_type is not None
    body = _selection(draw, SCHEMA.query_type, 0, fragments)
    return " ".join([f"query {{ {body} }}", *fragments])


@pytest.fixture(scope="module")
def keyed(world: World) -> TestClient:
    return TestClient(world.app, headers={"X-API-Key": world.key("t1", ["read"])})


def _fuzz(document: str, keyed: TestClient) -> None:
    answer = keyed.post("/graphql", json={"query": document})
    assert answer.status_code < 500, (document, answer.text)
    body: dict[str, Any] = answer.json()
    for error in body.get("errors") or []:
        assert error["message"] != "Unexpected error.", (document, body)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=documents())
def test_fuzzed_documents_never_fail_the_server(keyed: TestClient, document: str) -> None:
    _fuzz(document, keyed)


@pytest.mark.soak
@pytest.mark.timeout(1_800)
@settings(
    max_examples=1_000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=documents())
def test_many_fuzzed_documents_never_fail_the_server(keyed: TestClient, document: str) -> None:
    _fuzz(document, keyed)
