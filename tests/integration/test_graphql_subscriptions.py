"""GraphQL subscriptions over ``graphql-transport-ws`` against the app under uvicorn.

``gql`` (a client nobody here wrote) subscribes over a real websocket; windows
are written with the dataflow's Redis window writer and transitions with its
alert writer, into real Redis, and arrive through the API's live stream. The
slow-client and close-code checks speak the protocol by hand over the
``websockets`` library, which can stop reading and shows close codes.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from gql import Client, gql
from gql.client import AsyncClientSession
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from riffle.config.settings import Settings
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.records import WindowResult
from riffle.sinks.redis.alerts import RedisAlerts
from riffle.sinks.redis.windows import RedisWindowStore
from tests.conftest import RedisTarget
from tests.integration.ingest_support import Served, serve
from tests.integration.test_live_stream import SPEC as LIVE_SPEC

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SPEC = (
    LIVE_SPEC
    + """  - name: clicks
    events: [page_view]
    aggregation: count
    dimensions: [country]
    window: 10s
"""
)
START = (int(time.time() * 1000) // 10_000) * 10_000
BUFFER_LIMIT = 200
SDL = Path(__file__).parents[2] / "docs" / "graphql.schema.graphql"
WINDOWS = """
subscription Live($groupBy: [String!], $filters: [DimensionFilter!], $lastId: String) {
  windows(metric: "views", groupBy: $groupBy, filters: $filters, lastId: $lastId) {
    lastId reset
    windows { metric dims { name value } windowStartMs value count isFinal }
  }
}
"""
ALERTS = """
subscription Alerts($lastId: String) {
  alertTransitions(metrics: ["views"], lastId: $lastId) {
    lastId reset
    transitions { id rule metric instance fromState toState atMs value labels { name value } }
  }
}
"""


def window(
    count: int, *, country: str = "de", device: str = "mobile", final: bool = False,
    start: int = START, tenant: str = "demo", revision: int = 1,
) -> WindowResult:  # fmt: skip
    return WindowResult(
        tenant=tenant, metric="views", dims=(("country", country), ("device", device)),
        window_start=start, window_end=start + 10_000, count=count, sum=float(count),
        min=None, max=None, value=float(count), is_final=final, revision=revision,
    )  # fmt: skip


def transition(
    to_state: str, from_state: str, at: int, *, metric: str = "views", tenant: str = "demo"
) -> AlertTransition:
    return AlertTransition(
        tenant=tenant, rule=f"{metric}_high", metric=metric, instance=f"{metric}-de",
        labels=(("country", "de"),), severity="warning", from_state=from_state,
        to_state=to_state, at=at, value=120.0, active_at=None,
    )  # fmt: skip


@pytest.fixture
def served(redis_url: RedisTarget, tmp_path: Path) -> Iterator[Served]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    settings = Settings(
        redis_url=redis_url.url,
        redis_prefix=f"{redis_url.prefix}-{uuid.uuid4().hex[:8]}",
        warehouse=f"duckdb:///{tmp_path / 'warehouse.duckdb'}",
        spec=spec,
        metrics_port=0,
        log_format="console",
        stream_buffer_limit=BUFFER_LIMIT,
    )
    # A small kernel send buffer: a client that stops reading holds the server up at once.
    with serve(settings, send_buffer=4096) as running:
        yield running


def writers(served: Served) -> tuple[RedisWindowStore, RedisAlerts]:
    """The dataflow's Redis writers (windows, alert transitions) on the app's key space."""
    client = redis.Redis.from_url(served.settings.redis_url)
    prefix = served.settings.redis_prefix
    return RedisWindowStore(client, prefix, 3600), RedisAlerts(client, prefix)


def ws_url(served: Served) -> str:
    return served.url.replace("http://", "ws://") + "/graphql"


@asynccontextmanager
async def session(served: Served, key: str) -> AsyncIterator[AsyncClientSession]:
    transport = WebsocketsTransport(
        url=ws_url(served), init_payload={"Authorization": f"Bearer {key}"}
    )
    # The socket runs subscriptions only (no introspection query): the client validates
    # every document against the published SDL instead.
    async with Client(transport=transport, schema=SDL.read_text()) as opened:
        yield opened


class Follow:
    """One subscription of a ``gql`` session, read message by message."""

    def __init__(self, opened: AsyncClientSession, document: str, **variables: Any) -> None:
        request = gql(document)
        request.variable_values = variables
        self._messages = opened.subscribe(request)
        self.last_id: str | None = None

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        message = await asyncio.wait_for(anext(self._messages), timeout)
        batch: dict[str, Any] = next(iter(message.values()))
        self.last_id = batch["lastId"]
        return batch

    async def windows(self, n: int) -> list[dict[str, Any]]:
        """The next ``n`` windows, however the server batched them."""
        got: list[dict[str, Any]] = []
        while len(got) < n:
            got += (await self.next())["windows"]
        assert len(got) == n, got
        return got

    async def close(self) -> None:
        await self._messages.aclose()


def test_windows_from_the_writer_arrive_per_series_grouped_and_on_resume(served: Served) -> None:
    hot, _ = writers(served)

    async def run() -> None:
        async with session(served, served.key("demo", ["read"])) as opened:
            series = Follow(opened, WINDOWS)
            first = await series.next()
            assert (first["reset"], first["windows"]) == (False, [])
            await asyncio.to_thread(hot.write, [window(3)])
            (partial,) = await series.windows(1)
            assert partial == {
                "metric": "views", "windowStartMs": START, "value": 3.0, "count": 3,
                "isFinal": False,
                "dims": [{"name": "country", "value": "de"}, {"name": "device", "value": "mobile"}],
            }  # fmt: skip
            await asyncio.to_thread(hot.write, [window(7, final=True, revision=2)])
            seen = await series.windows(1)
            while not seen[-1]["isFinal"]:
                seen += await series.windows(1)
            assert seen[-1]["value"] == 7.0
            resume = series.last_id
            assert resume is not None
            await series.close()

            grouped = Follow(
                opened, WINDOWS, groupBy=["country"],
                filters=[{"dimension": "device", "values": ["mobile"]}],
            )  # fmt: skip
            await grouped.next()
            await asyncio.to_thread(
                hot.write, [window(2, start=START + 10_000), window(4, device="desktop")]
            )
            await asyncio.to_thread(hot.write, [window(1, country="fr", start=START + 10_000)])
            got = {w["dims"][0]["value"]: w["value"] for w in await grouped.windows(2)}
            assert got == {"de": 2.0, "fr": 1.0}
            await grouped.close()

            # Everything written after `resume` (the two mobile windows and the desktop one).
            resumed = Follow(opened, WINDOWS, lastId=resume)
            caught = (await resumed.next())["windows"]
            assert sorted(w["value"] for w in caught) == [1.0, 2.0, 4.0]
            await resumed.close()

    asyncio.run(run())


def test_alert_transitions_arrive_once_filtered_and_resume_exactly(served: Served) -> None:
    _, alerts = writers(served)

    async def run() -> None:
        async with session(served, served.key("demo", ["read"])) as opened:
            follow = Follow(opened, ALERTS)
            assert (await follow.next())["transitions"] == []
            firing = transition("firing", "pending", START)
            await asyncio.to_thread(
                alerts.write, [transition("firing", "normal", START, metric="clicks"), firing]
            )
            message = await follow.next()
            assert [t["id"] for t in message["transitions"]] == [firing.transition_id]
            assert message["transitions"][0] == {
                "id": firing.transition_id, "rule": "views_high", "metric": "views",
                "instance": "views-de", "fromState": "pending", "toState": "firing",
                "atMs": START, "value": 120.0, "labels": [{"name": "country", "value": "de"}],
            }  # fmt: skip
            resume = message["lastId"]
            resolved = transition("normal", "firing", START + 60_000)
            # A replay writes `firing` again: it is not streamed a second time.
            await asyncio.to_thread(alerts.write, [firing])
            await asyncio.to_thread(alerts.write, [firing, resolved])
            later = await follow.next()
            assert [t["id"] for t in later["transitions"]] == [resolved.transition_id]
            await follow.close()

            again = Follow(opened, ALERTS, lastId=resume)
            caught = await again.next()
            assert [t["toState"] for t in caught["transitions"]] == ["normal"]
            await again.close()

    asyncio.run(run())


def test_tenants_are_apart_and_refusals_carry_codes(served: Served) -> None:
    hot, _ = writers(served)

    async def run() -> None:
        async with session(served, served.key("demo", ["read"])) as opened:
            follow = Follow(opened, WINDOWS)
            await follow.next()
            await asyncio.to_thread(hot.write, [window(9, tenant="other")])
            await asyncio.to_thread(hot.write, [window(5, country="it")])
            (only,) = await follow.windows(1)
            assert only["dims"][0]["value"] == "it"
            await follow.close()

            refusals = {
                'subscription { windows(metric: "nope") { lastId } }': "unknown_metric",
                'subscription { windows(metric: "views", groupBy: ["x"]) { lastId } }': (
                    "unknown_dimension"
                ),
                'subscription { windows(metric: "views", lastId: "soon") { lastId } }': (
                    "invalid_last_id"
                ),
                'subscription { alertTransitions(severities: ["dire"]) { lastId } }': (
                    "unknown_severity"
                ),
            }
            for document, code in refusals.items():
                with pytest.raises(TransportQueryError) as refused:
                    await Follow(opened, document).next()
                assert refused.value.errors is not None
                assert refused.value.errors[0]["extensions"]["code"] == code, document
            with pytest.raises(TransportQueryError, match="queries are not allowed"):
                await opened.execute(gql("{ metrics { name } }"))

    asyncio.run(run())
    over_http = httpx.post(
        f"{served.url}/graphql",
        json={"query": 'subscription { windows(metric: "views") { lastId } }'},
        headers={"X-API-Key": served.key("demo", ["read"])},
    )
    assert over_http.status_code == 400
    assert "subscriptions are not allowed" in over_http.text


async def _handshake(
    served: Served, payload: dict[str, str] | None, headers: dict[str, str] | None = None
) -> ClientConnection:
    ws = await connect(
        ws_url(served),
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        additional_headers=headers,
        compression=None,
    )
    message: dict[str, Any] = {"type": "connection_init"}
    if payload is not None:
        message["payload"] = payload
    await ws.send(json.dumps(message))
    return ws


async def _close_code(ws: ClientConnection) -> tuple[int, str] | None:
    """The code and reason the server closed ``ws`` with (``None``: closed without)."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    except ConnectionClosed as closed:
        received = closed.rcvd
        return None if received is None else (received.code, received.reason)


def test_auth_errors_close_the_socket_with_4403(served: Served) -> None:
    read = served.key("demo", ["read"])
    revoked = served.key("demo", ["read"])
    served.app.state.collect.keys.revoke(revoked.split("_")[1])
    refused = {
        "no key": {},
        "unknown key": {"Authorization": "Bearer rfl_nope_nope"},
        "no read scope": {"X-API-Key": served.key("demo", ["ingest"])},
        "revoked key": {"X-API-Key": revoked},
    }

    async def run() -> None:
        for why, payload in refused.items():
            ws = await _handshake(served, payload)
            assert await _close_code(ws) == (4403, "Forbidden"), why
        # A subscription before connection_init is the protocol's 4401.
        ws = await connect(ws_url(served), subprotocols=["graphql-transport-ws"])  # type: ignore[list-item]
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{x}"}}))
        assert await _close_code(ws) == (4401, "Unauthorized")
        # The handshake's own header counts when the payload has no key.
        ws = await _handshake(served, {}, headers={"X-API-Key": read})
        assert json.loads(await ws.recv()) == {"type": "connection_ack"}
        await ws.close()

    asyncio.run(run())


def test_a_slow_client_gets_a_bounded_buffer_then_a_reset(served: Served) -> None:
    hot, _ = writers(served)
    registry = served.app.state.services.registry
    subscribe = {
        "id": "1",
        "type": "subscribe",
        "payload": {"query": "subscription { windows(metric: \"views\") "
                             "{ lastId reset windows { windowStartMs value dims { value } } } }"},
    }  # fmt: skip

    def buffered() -> float:
        return registry.get_sample_value("riffle_api_stream_buffered") or 0.0

    async def run() -> None:
        # A client that stops reading: a tiny receive buffer, one queued frame at most.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before the handshake
        sock.connect(("127.0.0.1", int(served.url.rsplit(":", 1)[1])))
        ws = await connect(
            ws_url(served),
            sock=sock,
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
            max_queue=1,
            compression=None,
        )
        await ws.send(json.dumps({"type": "connection_init", "payload": {"X-API-Key": key}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps(subscribe))
        await ws.recv()  # the first, empty batch
        # Batches of 100 distinct windows (distinct starts: nothing coalesces) until the
        # server's sends have blocked — the socket's buffers take about ten batches, more
        # when the kernel grows them — and the buffer has overflowed since: five batches
        # after it first held half its limit (at most 100 batches).
        highest, written, after_half = 0.0, 0, 0
        while after_half < 5 and written < 100:
            written += 1
            start = START - 10_000 * written
            await asyncio.to_thread(
                hot.write, [window(written, country=f"c{i}", start=start) for i in range(100)]
            )
            await asyncio.sleep(0.05)  # the hub reads the stream
            highest = max(highest, buffered())
            after_half += highest >= BUFFER_LIMIT / 2
        await asyncio.sleep(0.5)
        highest = max(highest, buffered())
        assert BUFFER_LIMIT / 2 <= highest <= BUFFER_LIMIT, highest
        received, resets = 0, 0
        while True:  # read on: what was sent, then the reset, then nothing more
            try:
                message = json.loads(await asyncio.wait_for(ws.recv(), 1))
            except TimeoutError:
                break
            batch = message["payload"]["data"]["windows"]
            received += len(batch["windows"])
            resets += batch["reset"]
        assert resets >= 1 and received < 100 * written
        assert registry.get_sample_value("riffle_api_stream_resets_total") >= 1
        assert buffered() == 0
        # After the reset the subscription carries on.
        await asyncio.to_thread(hot.write, [window(1, country="new", start=START + 20_000)])
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert message["payload"]["data"]["windows"]["windows"][0]["dims"] == [
            {"value": "new"},
            {"value": "mobile"},
        ]
        await ws.close()

    key = served.key("demo", ["read"])
    asyncio.run(run())
