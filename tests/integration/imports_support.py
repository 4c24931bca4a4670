"""Events, files, readers and the Cloud Storage emulator the import tests share."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec, load_spec
from riffle.operators.records import Dims, WindowResult
from riffle.sinks.warehouse.engines import open_warehouse
from riffle.sources.demo import generate
from riffle.sources.storage import gcs_client
from riffle.stack import free_port

SPEC = load_spec("config/demo.yaml")
BUCKET = "riffle-test"
WindowKey = tuple[str, Dims, int]
QUANTILE_METRICS = {m.name for m in SPEC.metrics if m.aggregation == "quantiles"}


def demo_events(count: int, start_ms: int, *, seed: int = 11, rate: float = 40.0) -> list[bytes]:
    """Demo web-shop events in event-time order (so nothing is late anywhere), with the
    demo's malformed ones left out, plus one closing page view three hours later."""
    events = []
    for raw in generate(count, seed, start_ms, rate):
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        # Kafka producers must give an event id; an import derives one: keep those with one.
        if type(event) is dict and type(event.get("ts")) is int and event.get("event_id"):
            events.append(event)
    events.sort(key=lambda e: e["ts"])
    closer = dict(events[-1], event_id="closer", ts=events[-1]["ts"] + 3 * 3_600_000)
    return [orjson.dumps(e) for e in [*events, closer]]


def user_partition(raw: bytes, partitions: int) -> int:
    """The demo keys events by user: one user's events stay in order in one partition."""
    context = orjson.loads(raw).get("context") or {}
    return zlib.crc32(str(context.get("user_id")).encode()) % partitions


def write_ndjson(path: Path, events: list[bytes]) -> Path:
    path.write_bytes(b"".join(e + b"\n" for e in events))
    return path


def finals(settings: Settings, spec: PipelineSpec = SPEC) -> dict[WindowKey, WindowResult]:
    """Every final window of the default tenant in the warehouse."""
    warehouse = open_warehouse(settings)
    out: dict[WindowKey, WindowResult] = {}
    for metric in spec.metrics:
        for _dims, points in warehouse.read_series(settings.default_tenant, metric.name, 0, 2**62):
            out.update({(p.metric, p.dims, p.window_start): p for p in points})
    return out


def assert_same_windows(
    got: dict[WindowKey, WindowResult], want: dict[WindowKey, WindowResult]
) -> None:
    """Every window of ``want`` is in ``got`` with the same value: exact metrics and HLL
    and top-k sketches exactly; KLL quantiles within the sketch's rank error (its
    compaction is randomised, so merging the same items in another grouping may move a
    quantile to a neighbouring item)."""
    missing = want.keys() - got.keys()
    assert not missing, f"{len(missing)} windows missing, e.g. {sorted(missing)[:3]}"
    wrong = []
    for key, expected in want.items():
        actual = got[key]
        same = (actual.count, actual.window_end) == (expected.count, expected.window_end)
        if key[0] in QUANTILE_METRICS:
            same = same and actual.value == pytest.approx(expected.value, rel=0.1)
        else:
            same = same and (actual.sum, actual.min, actual.max, actual.value, actual.detail) == (
                pytest.approx(expected.sum),
                expected.min,
                expected.max,
                pytest.approx(expected.value),
                expected.detail,
            )
        if not same:
            wrong.append((key, actual, expected))
    assert not wrong, f"{len(wrong)} of {len(want)} windows differ, e.g. {wrong[:2]}"


@pytest.fixture(scope="module")
def gcs() -> Iterator[str]:
    """A Cloud Storage emulator (``gcp-storage-emulator``) with one bucket;
    ``STORAGE_EMULATOR_HOST`` points the official client at it."""
    port = free_port()
    binary = Path(sys.executable).with_name("gcp-storage-emulator")
    process = subprocess.Popen(
        [str(binary), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    before = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                gcs_client().create_bucket(BUCKET)
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield BUCKET
    finally:
        if before is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = before
        process.terminate()
        process.wait(10)


def upload(name: str, data: bytes) -> None:
    """Write (or overwrite: a new generation) ``name`` in the emulator's bucket."""
    gcs_client().bucket(BUCKET).blob(name).upload_from_string(data)
