"""Import throughput beside a plain pyarrow read of the same file.

    python -m benchmarks.imports [--rows 200000] [--redis redis://127.0.0.1:6379/15]

Writes ``--rows`` orders of the demo's shape (order id, time, country,
device, amount, currency) as Parquet and as CSV, then for each file prints
rows per second of:

- ``pyarrow read``: ``pyarrow.parquet.read_table`` / ``pyarrow.csv.read_csv``,
  columns only, no Python objects;
- ``pyarrow rows``: the same read turned into Python dicts (``to_pylist``),
  the least any row-by-row consumer pays;
- ``riffle import``: ``riffle import FILE --mapping …`` in this process (the
  purchase mapping of docs/import.md; decode, schema check, enrichment and
  every demo metric, windows written to a DuckDB file, dead letters to a
  local Tansu broker), wall clock and per core (rows per CPU second).
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from riffle.config.mapping import parse_mapping
from riffle.config.settings import Settings
from riffle.config.spec import load_spec
from riffle.dataflows.imports import ImportRequest, run_import
from riffle.sources.topics import ensure_topics
from riffle.stack import free_port, start_tansu

BASE = 1_767_225_600_000
MAPPING = """
type: purchase
event_id: order_id
ts: {column: created_at, format: "%Y-%m-%d %H:%M:%S"}
props:
  amount: {column: total, type: float}
  currency: currency
context:
  country: country
  device: device
"""


def orders(rows: int) -> pa.Table:
    rng = random.Random(7)
    countries = ["US", "DE", "FR", "GB", "BR", "IN", "JP", "CA"]
    return pa.table(
        {
            "order_id": [f"o-{i}" for i in range(rows)],
            "created_at": [
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(BASE / 1000 + i // 20))
                for i in range(rows)
            ],
            "country": [rng.choice(countries) for _ in range(rows)],
            "device": [rng.choice(["mobile", "desktop", "tablet"]) for _ in range(rows)],
            "total": [f"{rng.uniform(5, 300):.2f}" for _ in range(rows)],
            "currency": [rng.choice(["USD", "EUR", "GBP"]) for _ in range(rows)],
        }
    )


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(work: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU seconds of ``work``."""
    wall, used = time.perf_counter(), cpu()
    work()
    return time.perf_counter() - wall, cpu() - used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    rows = args.rows
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table = orders(rows)
        pq.write_table(table, folder / "orders.parquet", row_group_size=50_000)
        pacsv.write_csv(table, folder / "orders.csv")
        port = free_port()
        broker = start_tansu(port)
        try:
            servers = f"127.0.0.1:{port}"
            ensure_topics(servers, ["bench-dead"], 1)
            print(f"{rows:,} orders of the demo's shape; rows per second")
            print(f"{'file':16} {'pyarrow read':>14} {'pyarrow rows':>14} {'import':>10} "
                  f"{'import/core':>12}")  # fmt: skip
            for name, read in (
                ("orders.parquet", lambda p: pq.read_table(p)),
                ("orders.csv", lambda p: pacsv.read_csv(p)),
            ):
                path = folder / name
                plain, _ = timed(lambda: read(path))  # noqa: B023 - called at once
                dicts, _ = timed(lambda: read(path).to_pylist())  # noqa: B023
                settings = Settings(
                    kafka_bootstrap=servers,
                    deadletter_topic="bench-dead",
                    redis_url=args.redis,
                    redis_prefix=f"bench-imports-{uuid.uuid4().hex[:8]}",
                    warehouse=f"duckdb:///{folder / (name + '.duckdb')}",
                    import_state_dir=folder / "state",
                    metrics_port=0,
                )
                request = ImportRequest(source=str(path), mapping=parse_mapping(MAPPING))
                spec = load_spec(settings.spec)
                wall, used = timed(lambda: run_import(settings, spec, request))  # noqa: B023
                print(
                    f"{name:16} {rows / plain:>14,.0f} {rows / dicts:>14,.0f} "
                    f"{rows / wall:>10,.0f} {rows / used:>12,.0f}"
                )
        finally:
            broker.terminate()
            broker.wait(10)


if __name__ == "__main__":
    main()
