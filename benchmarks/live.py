"""The live stream's cost: what the Redis writers pay per window and per alert transition
for the stream entry, and the fan-out of ``GET /v1/stream`` and of GraphQL subscriptions
to many clients (latency from the write to each client, CPU of the API process).

    python -m benchmarks.live [--redis redis://127.0.0.1:6379/15] [--clients 100] [--rounds 10]

Starts ``riffle api`` on a free port (its own Redis prefix and a temporary DuckDB),
opens N SSE clients, writes 20 series' partial windows once a second with the
dataflow's writer (:class:`sinks.redis.windows.RedisWindowStore`), and prints
percentiles of write→client latency and the API's CPU seconds per second; then
the same with N GraphQL subscriptions (``graphql-transport-ws``, one socket each).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import httpx
import orjson
import redis
from websockets.asyncio.client import connect

from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.records import WindowResult
from riffle.sinks.redis.alerts import RedisAlerts
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.stack import free_port

COUNTRIES = [f"c{i:02d}" for i in range(20)]


def window(country: str, start: int, n: int) -> WindowResult:
    return WindowResult(
        "demo",
        "page_views",
        (("country", country), ("device", "m"), ("page", "/")),
        start,
        start + 60_000,
        n,
        float(n),
        None,
        None,
        float(n),
        False,
        n,
    )


def writer_cost(client: redis.Redis, prefix: str, windows: int = 20_000, batch: int = 500) -> None:
    store = RedisWindowStore(client, prefix, 3600)
    start = (int(time.time() * 1000) // 60_000) * 60_000
    batches = [
        [window(f"s{(b * batch + i) % 2000}", start, b + 1) for i in range(batch)]
        for b in range(windows // batch)
    ]
    began = time.perf_counter()
    for items in batches:
        store.write(items)
    total = time.perf_counter() - began
    began = time.perf_counter()
    for items in batches:
        pipe = client.pipeline(transaction=False)
        for w in items:
            pipe.xadd(
                f"{prefix}:xonly",
                {"w": orjson.dumps({"v": w.value})},
                maxlen=10_000,
                approximate=True,
            )
        pipe.execute()
    xadd = time.perf_counter() - began
    print(
        f"writer: {windows} windows in batches of {batch}: {total / windows * 1e6:.1f} us/window "
        f"with the stream entry; an XADD alone costs {xadd / windows * 1e6:.1f} us/window "
        f"({xadd / total * 100:.0f} % of the write)"
    )


def alert_writer_cost(
    client: redis.Redis, prefix: str, transitions: int = 5_000, batch: int = 100
) -> None:
    """The alert writer's cost per transition (newest-per-instance script and stream entry),
    beside an ``XADD`` of the same entry alone."""
    store = RedisAlerts(client, prefix)
    now = int(time.time() * 1000)
    items = [
        AlertTransition(
            tenant="demo",
            rule="views_high",
            metric="views",
            instance=f"i{i % 500}",
            labels=(("country", f"c{i % 500}"),),
            severity="warning",
            from_state="pending" if i % 2 else "normal",
            to_state="firing" if i % 2 else "pending",
            at=now + i,
            value=float(i),
            active_at=None,
        )
        for i in range(transitions)
    ]
    batches = [items[i : i + batch] for i in range(0, transitions, batch)]
    began = time.perf_counter()
    for part in batches:
        store.write(part)
    total = time.perf_counter() - began
    began = time.perf_counter()
    for part in batches:
        pipe = client.pipeline(transaction=False)
        for t in part:
            pipe.xadd(f"{prefix}:xonly", {"a": t.to_json()}, maxlen=10_000, approximate=True)
        pipe.execute()
    xadd = time.perf_counter() - began
    print(
        f"alert writer: {transitions} transitions in batches of {batch}: "
        f"{total / transitions * 1e6:.1f} us/transition with the stream entry; an XADD alone "
        f"costs {xadd / transitions * 1e6:.1f} us/transition "
        f"({xadd / total * 100:.0f} % of the write)"
    )


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def fan_out(
    url: str, key: str, clients: int, rounds: int, store: RedisWindowStore, pid: int
) -> None:
    written: dict[int, float] = {}
    latencies: list[float] = []
    ready = asyncio.Event()
    connected = 0
    last = Last(clients, rounds)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal connected
        async with http.stream(
            "GET", f"{url}/v1/stream?metric=page_views", headers={"Authorization": f"Bearer {key}"}
        ) as response:
            connected += 1
            if connected == clients:
                ready.set()
            async for line in response.aiter_lines():
                if line.startswith('data: {"metric"'):
                    n = orjson.loads(line[6:])["count"]
                    latencies.append(time.perf_counter() - written[n])
                    last.saw(n)

    limits = httpx.Limits(max_connections=clients + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None), limits=limits) as http:
        tasks = [asyncio.create_task(client(http)) for _ in range(clients)]
        load = await measured(tasks, ready, 60, store, rounds, written, last, pid)
    report("SSE clients", clients, rounds, latencies, load, last)


async def measured(
    tasks: list[asyncio.Task[None]],
    ready: asyncio.Event,
    ready_timeout: float,
    store: RedisWindowStore,
    rounds: int,
    written: dict[int, float],
    last: Last,
    pid: int,
) -> float:
    """Once every client is live, write the rounds; then stop the clients. The API
    process's CPU share (CPU seconds per wall second) while the rounds went out."""
    await asyncio.wait_for(ready.wait(), ready_timeout)
    await asyncio.sleep(1.0)
    start = (int(time.time() * 1000) // 60_000) * 60_000
    cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
    await write_rounds(store, start, rounds, written, last)
    cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - wall0
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return cpu / wall


SUBSCRIBE = json.dumps(
    {
        "id": "1",
        "type": "subscribe",
        "payload": {
            "query": 'subscription { windows(metric: "page_views") { windows { count } } }'
        },
    }
)


async def graphql_fan_out(
    url: str, key: str, clients: int, rounds: int, store: RedisWindowStore, pid: int
) -> None:
    """As :func:`fan_out`, with GraphQL subscriptions: one socket each, the message a batch."""
    written: dict[int, float] = {}
    latencies: list[float] = []
    ready = asyncio.Event()
    connected = 0
    last = Last(clients, rounds)

    async def client() -> None:
        nonlocal connected
        async with connect(
            url.replace("http://", "ws://") + "/graphql",
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"X-API-Key": key}}))
            await ws.recv()
            await ws.send(SUBSCRIBE)
            await ws.recv()  # the first batch: the subscription is live
            connected += 1
            if connected == clients:
                ready.set()
            async for raw in ws:
                arrived = time.perf_counter()
                batch = orjson.loads(raw)["payload"]["data"]["windows"]["windows"]
                for w in batch:
                    latencies.append(arrived - written[w["count"]])
                    last.saw(w["count"])

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    load = await measured(tasks, ready, 120, store, rounds, written, last, pid)
    report("GraphQL subscriptions", clients, rounds, latencies, load, last)


class Last:
    """Counts the last round's windows the clients received; set when all have."""

    def __init__(self, clients: int, rounds: int) -> None:
        self.rounds = rounds
        self.missing = clients * len(COUNTRIES)
        self.done = asyncio.Event()

    def saw(self, n: int) -> None:
        if n == self.rounds:
            self.missing -= 1
            if self.missing == 0:
                self.done.set()


async def write_rounds(
    store: RedisWindowStore, start: int, rounds: int, written: dict[int, float], last: Last
) -> None:
    """One round a second (every country's window, its count the round), then wait (up to
    30 s) until every client has the last round's values."""
    for n in range(1, rounds + 1):
        written[n] = time.perf_counter()
        await asyncio.to_thread(store.write, [window(c, start, n) for c in COUNTRIES])
        await asyncio.sleep(1.0)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(last.done.wait(), 30)


def report(
    what: str, clients: int, rounds: int, latencies: list[float], cpu: float, last: Last
) -> None:
    expected = clients * rounds * len(COUNTRIES)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(
        f"fan-out: {clients} {what}, {rounds} rounds of {len(COUNTRIES)} windows: "
        f"{len(latencies)}/{expected} window updates received (a slow client gets the "
        f"latest value of a window, coalesced), last round's values missing at the end: "
        f"{last.missing}; write->client latency p50 {q[49] * 1000:.0f} ms, "
        f"p95 {q[94] * 1000:.0f} ms, max {max(latencies, default=0.0) * 1000:.0f} ms; "
        f"API CPU {cpu:.2f} s/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    prefix = f"bench-live-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(args.redis)
    try:
        writer_cost(client, prefix + "-w")
        alert_writer_cost(client, prefix + "-a")
        port = free_port()
        with tempfile.TemporaryDirectory() as tmp:
            env = {
                **os.environ,
                "RIFFLE_REDIS_URL": args.redis,
                "RIFFLE_REDIS_PREFIX": prefix,
                "RIFFLE_WAREHOUSE": f"duckdb:///{tmp}/w.duckdb",
                "RIFFLE_LOG_LEVEL": "WARNING",
                "RIFFLE_RATE_KEY_REQUESTS": "10000",
                "RIFFLE_RATE_TENANT_REQUESTS": "10000",
            }
            key = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "riffle.cli",
                    "keys",
                    "create",
                    "--tenant",
                    "demo",
                    "--scopes",
                    "read",
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()[-1]
            api = subprocess.Popen(
                [sys.executable, "-m", "riffle.cli", "api", "--port", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                for _ in range(300):
                    try:
                        if httpx.get(f"{url}/healthz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.1)
                store = RedisWindowStore(client, prefix, 3600)
                asyncio.run(fan_out(url, key, args.clients, args.rounds, store, api.pid))
                asyncio.run(graphql_fan_out(url, key, args.clients, args.rounds, store, api.pid))
            finally:
                api.terminate()
                api.wait(15)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])


if __name__ == "__main__":
    main()
