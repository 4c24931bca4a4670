"""Export render times: PNG, SVG and PDF of the bundled web-shop dashboard through the API.

    python -m benchmarks.renders [--redis redis://127.0.0.1:6379/15] [--rounds 3] [--code DIR]

Starts ``riffle api`` on a free port (its own Redis prefix, a temporary DuckDB, the
web-shop dashboard provisioned), then asks for each export ``--rounds`` times in a
row, then four PNGs at once, and prints wall-clock seconds per request: the first
(a browser start included when the process keeps one) and the median of the rest.
``--code DIR`` runs the API from another checkout (to compare with an older one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis

from riffle.stack import free_port

EXPORTS = {
    "png": "/v1/dashboards/web-shop/panels/views-by-device/export.png",
    "svg": "/v1/dashboards/web-shop/panels/views-by-device/export.svg",
    "pdf": "/v1/dashboards/web-shop/export.pdf",
}


def timed(http: httpx.Client, path: str) -> float:
    began = time.perf_counter()
    reply = http.get(path, timeout=120)
    took = time.perf_counter() - began
    if reply.status_code != 200:
        raise SystemExit(f"{path}: {reply.status_code} {reply.text[:200]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--code", default=os.getcwd(), help="Checkout whose API is measured.")
    args = parser.parse_args()
    prefix = f"bench-render-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(args.redis)
    port = free_port()
    tmp = tempfile.TemporaryDirectory()
    env = {
        **os.environ,
        "PYTHONPATH": args.code,
        "RIFFLE_REDIS_URL": args.redis,
        "RIFFLE_REDIS_PREFIX": prefix,
        "RIFFLE_WAREHOUSE": f"duckdb:///{tmp.name}/w.duckdb",
        "RIFFLE_LOG_LEVEL": "WARNING",
        "RIFFLE_RATE_KEY_REQUESTS": "10000",
        "RIFFLE_RATE_TENANT_REQUESTS": "10000",
    }
    cli = [sys.executable, "-m", "riffle.cli"]
    key = subprocess.run(
        [*cli, "keys", "create", "--tenant", "demo", "--scopes", "read"],
        env=env, capture_output=True, text=True, check=True, cwd=args.code,
    ).stdout.split()[-1]  # fmt: skip
    api = subprocess.Popen(
        [*cli, "api", "--port", str(port)], env=env, cwd=args.code,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=url, headers=headers) as http:
            for fmt, path in EXPORTS.items():
                times = [timed(http, path) for _ in range(args.rounds)]
                rest = statistics.median(times[1:]) if len(times) > 1 else float("nan")
                print(f"{fmt}: first {times[0]:.2f} s, then median {rest:.2f} s "
                      f"({', '.join(f'{t:.2f}' for t in times)})")  # fmt: skip
            began = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                each = list(pool.map(lambda _: timed(http, EXPORTS["png"]), range(4)))
            print(f"4 PNGs at once: {time.perf_counter() - began:.2f} s in all, "
                  f"slowest {max(each):.2f} s")  # fmt: skip
    finally:
        api.terminate()
        api.wait(30)
        tmp.cleanup()
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])


if __name__ == "__main__":
    main()
