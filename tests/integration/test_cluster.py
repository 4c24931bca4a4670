"""A dataflow cluster started the way the StatefulSet starts it, against one process.

Each process gets what the manifests give a pod (k8s/base/flow.yaml): no
``-i``/``-a``, but ``RIFFLE_CLUSTER_SIZE``, ``RIFFLE_CLUSTER_ADDRESSES``,
``RIFFLE_POD_NAME=riffle-flow-<n>``, ``RIFFLE_METRICS_PORT_PER_PROCESS`` and,
with recovery, a directory of its own prepared by ``riffle recovery init
--pod`` (the init container). The addresses are an explicit list here, one
loopback port per process, where the manifests use the headless Service's
``riffle-flow-{i}.riffle-flow:2101`` pattern.

* Rescaling (in ``make test``): two pods with recovery are killed with
  SIGKILL mid-stream and three resume from the two partitions (one per
  volume; the third volume holds none), after asking each other for their
  progress and dropping the snapshots a kill left past where they resume
  (dataflows/recovery.py); every closed window equals the SQL
  recomputation one process is held to (tests/integration/test_spine.py), and
  every sketched window the single-pass sketch over its events.
* Soak: one, two and three processes over the same topic store exactly the
  same finals, every metric (hopping and session windows, sketches) included.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from riffle.config.settings import Settings
from riffle.dataflows.recovery import StoreProgress, progress_rows
from riffle.operators.records import WindowResult
from tests.integration.flow_support import (
    WindowKey,
    assert_matches,
    assert_sketches_match,
    closed_expectation,
    closed_sketches,
    cluster_ports,
    final_differences,
    kill,
    lean_spec,
    produce,
    redis_finals,
    scrape,
    settings_env,
    start_flow,
    wait_for,
)
from tests.scenario import Sent, closers, scenario

pytestmark = pytest.mark.integration

riffle = str(Path(sys.executable).with_name("riffle"))

PARTITIONS = 4


def pod_settings(settings: Settings, size: int, addresses: str, ordinal: int) -> Settings:
    """What the StatefulSet's pod ``riffle-flow-<ordinal>`` is given, on one machine."""
    update: dict[str, object] = {
        "cluster_size": size,
        "cluster_addresses": addresses,
        "pod_name": f"riffle-flow-{ordinal}",
    }
    if settings.recovery_dir is not None:
        update["recovery_dir"] = settings.recovery_dir.with_name(f"recovery-{ordinal}")
    return settings.model_copy(update=update)


def start_pods(settings: Settings, size: int, log: Path) -> list[subprocess.Popen[bytes]]:
    """``size`` processes as pods: the init container's command, then ``riffle run``.

    Pod ``n`` serves metrics on ``settings.metrics_port + n`` (0: none).
    """
    _, addresses = cluster_ports(size)
    pods = [pod_settings(settings, size, addresses, ordinal) for ordinal in range(size)]
    inits = [
        subprocess.Popen(
            [riffle, "recovery", "init", str(pod.recovery_dir), "-p", "2", "--pod", "--exist-ok"],
            env=settings_env(pod),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for pod in pods
        if pod.recovery_dir is not None
    ]
    for init in inits:
        output, _ = init.communicate(timeout=240)  # imports take minutes on a busy machine
        assert init.returncode == 0 and b"recovery store" in output, output
    return [start_flow(pod, log) for pod in pods]


def run_until_closed(
    settings: Settings,
    size: int,
    sent: list[Sent],
    log: Path,
    reference: dict[WindowKey, WindowResult] | None,
) -> dict[WindowKey, WindowResult]:
    """Run ``size`` pods until every expected window is final; return every final."""
    expected = closed_expectation(sent, lateness_ms=10_000)
    sketched = closed_sketches(sent, lateness_ms=10_000)
    if size > 1:
        metrics, _ = cluster_ports(size)
        pods = start_pods(settings.model_copy(update={"metrics_port": metrics}), size, log)
    else:
        pods = [start_flow(settings, log)]
    try:
        wait_for(
            lambda: (expected.keys() | sketched.keys()) <= redis_finals(settings).keys(),
            240,  # three processes start in ~10 s each on an idle machine, minutes on a busy one
            f"finals of {size} processes",
            log,
        )
        if reference is not None:
            wait_for(
                lambda: not final_differences(redis_finals(settings), reference),
                30,
                f"the finals of {size} processes to equal one process's",
                log,
                lambda: str(final_differences(redis_finals(settings), reference)[:3]),
            )
        finals = redis_finals(settings)
        assert_matches(finals, expected)
        assert_sketches_match(finals, sketched)
        return finals
    finally:
        for pod in pods:
            kill(pod)


@pytest.fixture
def events(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> tuple[Settings, list[Sent]]:
    now = int(time.time() * 1000)
    base = now - now % 60_000 - 20 * 60_000
    settings = settings_factory(
        lateness_seconds=10,
        idle_seconds=120,
        partial_interval_seconds=0.2,
        buckets=12,
        spec=lean_spec(tmp_path),
    )
    sent = scenario(seed=17, n=8000, partitions=PARTITIONS, base=base, spacing_ms=40, users=True)
    sent += closers(base + 3_600_000, PARTITIONS)
    produce(settings, sent)
    return settings, sent


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_two_and_three_pods_store_what_one_process_stores(
    events: tuple[Settings, list[Sent]],
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    settings, sent = events
    reference = run_until_closed(settings, 1, sent, tmp_path / "one.log", None)
    assert any(key[0] == "browsing_sessions" for key in reference), "session windows compared too"
    for size in (2, 3):
        cluster = settings_factory(
            events_topic=settings.events_topic,
            warehouse=f"duckdb:///{tmp_path / f'warehouse-{size}.duckdb'}",
            lateness_seconds=10,
            idle_seconds=120,
            partial_interval_seconds=0.2,
            buckets=12,
            spec=settings.spec,
        )
        run_until_closed(cluster, size, sent, tmp_path / f"cluster-{size}.log", reference)


@pytest.mark.timeout(900)
def test_rescale_from_two_to_three_pods_with_recovery(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(
        lateness_seconds=10,
        idle_seconds=120,
        partial_interval_seconds=0.2,
        snapshot_seconds=0.5,
        recovery_backup_seconds=30,
        recovery_dir=tmp_path / "recovery",
        buckets=12,
        spec=lean_spec(tmp_path),
    )
    log = tmp_path / "flow.log"
    now = int(time.time() * 1000)
    base = now - now % 60_000 - 20 * 60_000
    first = scenario(seed=19, n=4000, partitions=PARTITIONS, base=base, spacing_ms=40, users=True)
    produce(settings, first)
    metrics, _ = cluster_ports(2)
    two = settings.model_copy(update={"metrics_port": metrics})
    pods = start_pods(two, 2, log)
    try:
        wait_for(lambda: _read(two, 2) == len(first), 240, "two pods to read the first half", log)
        time.sleep(4 * settings.snapshot_seconds)  # snapshots cover most of it
    finally:
        for pod in pods:
            kill(pod)
    held = sorted(p.name for p in tmp_path.glob("recovery-*/part-*.sqlite3"))
    assert held == ["part-0.sqlite3", "part-1.sqlite3"], held
    # What a kill may leave: snapshots past where the next run resumes, in both volumes.
    # Neither pod can tell where that is alone; they ask each other and drop them.
    volumes = [tmp_path / f"recovery-{n}" for n in range(2)]
    resume = StoreProgress.of([progress_rows(v) for v in volumes]).resume_epoch()
    for n, volume in enumerate(volumes):
        with closing(sqlite3.connect(volume / f"part-{n}.sqlite3")) as db, db:
            db.execute(
                "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) "
                "VALUES ('riffle_metrics.windows', 'abandoned', ?, NULL)",
                (resume + n,),
            )
    second = scenario(
        seed=23, n=4000, partitions=PARTITIONS, base=base + 160_000, spacing_ms=40, users=True
    )
    tail = closers(base + 3_600_000, PARTITIONS)
    produce(settings, second + tail)
    run_until_closed(settings, 3, first + second + tail, log, None)
    assert not list((tmp_path / "recovery-2").glob("part-*")), "the added pod holds no partition"
    for n, volume in enumerate(volumes):
        with closing(sqlite3.connect(volume / f"part-{n}.sqlite3")) as db:
            left = db.execute("SELECT count(*) FROM snaps WHERE state_key = 'abandoned'")
            assert left.fetchone() == (0,), log.read_text()[-3000:]


def _read(settings: Settings, processes: int) -> float:
    total = 0.0
    for i in range(processes):
        try:
            total += scrape(
                settings.model_copy(update={"metrics_port": settings.metrics_port + i}),
                "riffle_dataflow_events_in_total",
            )
        except OSError:
            return -1.0
    return total
