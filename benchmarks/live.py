"""The live stream's cost: what the Redis writer pays per window for the stream entry, and
the fan-out of ``GET /v1/stream`` to many clients (latency from the write to each client,
CPU of the API process).

    python -m benchmarks.live [--redis redis://127.0.0.1:6379/15] [--clients 100] [--rounds 10]

Starts ``riffle api`` on a free port (its own Redis prefix and a temporary DuckDB),
opens N SSE clients, writes 20 series' partial windows once a second with the
dataflow's writer (:class:`sinks.redis.windows.RedisWindowStore`), and prints
percentiles of write→client latency and the API's CPU seconds per second.
"""

from __future__ import annotations

import argparse
import asyncio
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

from riffle.operators.records import WindowResult
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

    limits = httpx.Limits(max_connections=clients + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=None), limits=limits) as http:
        tasks = [asyncio.create_task(client(http)) for _ in range(clients)]
        await asyncio.wait_for(ready.wait(), 60)
        await asyncio.sleep(1.0)
        start = (int(time.time() * 1000) // 60_000) * 60_000
        cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
        for n in range(1, rounds + 1):
            written[n] = time.perf_counter()
            await asyncio.to_thread(store.write, [window(c, start, n) for c in COUNTRIES])
            await asyncio.sleep(1.0)
        cpu, wall = cpu_seconds(pid) - cpu0, time.perf_counter() - wall0
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    expected = clients * rounds * len(COUNTRIES)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(
        f"fan-out: {clients} SSE clients, {rounds} rounds of {len(COUNTRIES)} windows: "
        f"{len(latencies)}/{expected} window events received (coalescing may merge); "
        f"write->client latency p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms; API CPU {cpu / wall:.2f} s/s"
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
            finally:
                api.terminate()
                api.wait(15)
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])


if __name__ == "__main__":
    main()
