"""The disaster-recovery drill: back up a running stack, lose everything, restore, replay.

The dataflow (with recovery) and the API run as processes; an API key, an
alert rule and a silence are made through the CLI and the API; half the
events are read and snapshotted when ``riffle backup create`` runs (with the
flow still running), then the rest arrive and every window closes. Then the
disaster: both processes are killed with SIGKILL, every Redis key of the
prefix, the DuckDB file and the recovery store are deleted. ``riffle backup
restore`` puts the backup back, the flow resumes from the restored snapshot
and replays the topic after it; the final windows in Redis and in the
warehouse, sketches included, must equal those before the loss, and the key,
the rule and the silence must be there as they were. The recovery time —
from the restore command to the last final window back — is printed and
written to ``recovery-time.txt`` in the test's directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from riffle.config.settings import Settings
from riffle.dataflows.recovery import init_recovery
from riffle.stack import free_port, wait_for_port
from tests.integration.flow_support import (
    assert_matches,
    assert_sketches_match,
    closed_expectation,
    closed_sketches,
    final_differences,
    kill,
    lean_spec,
    produce,
    redis_finals,
    scrape,
    settings_env,
    start_flow,
    wait_for,
    warehouse_rows,
)
from tests.scenario import closers, scenario

pytestmark = pytest.mark.integration

PARTITIONS = 4
RIFFLE = str(Path(sys.executable).with_name("riffle"))


def cli(settings: Settings, *args: str) -> str:
    """``riffle ARGS`` with ``settings``; its standard output."""
    done = subprocess.run(
        [RIFFLE, *args], env=settings_env(settings), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def start_api(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    api = subprocess.Popen(
        [RIFFLE, "api", "--port", str(settings.api_port)],
        env=settings_env(settings),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    assert wait_for_port("127.0.0.1", settings.api_port, 120, api), log.read_text()[-2000:]
    return api


def what_the_api_holds(settings: Settings, key: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    base = f"http://127.0.0.1:{settings.api_port}"
    rules = httpx.get(f"{base}/v1/alerts/rules", headers=headers, timeout=30)
    silences = httpx.get(f"{base}/v1/silences", headers=headers, timeout=30)
    assert rules.status_code == silences.status_code == 200, (rules.text, silences.text)
    return {"rules": rules.json(), "silences": silences.json()}


@pytest.mark.timeout(900)
def test_backup_lose_everything_restore_and_replay(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(
        lateness_seconds=10,
        idle_seconds=120,
        partial_interval_seconds=0.2,
        snapshot_seconds=0.5,
        recovery_backup_seconds=60,
        recovery_dir=tmp_path / "recovery",
        metrics_port=free_port(),
        api_port=free_port(),
        spec=lean_spec(tmp_path),
    )
    assert settings.recovery_dir is not None
    init_recovery(settings.recovery_dir, 1)
    log = tmp_path / "stack.log"
    now = int(time.time() * 1000)
    base = now - now % 60_000 - 20 * 60_000
    first = scenario(seed=29, n=4000, partitions=PARTITIONS, base=base, spacing_ms=60, users=True)
    second = scenario(
        seed=31, n=4000, partitions=PARTITIONS, base=base + 240_000, spacing_ms=60, users=True
    )
    tail = closers(base + 3_600_000, PARTITIONS)
    sent = first + second + tail
    expected = closed_expectation(sent, lateness_ms=10_000)
    sketched = closed_sketches(sent, lateness_ms=10_000)
    keys = expected.keys() | sketched.keys()

    made_key = cli(
        settings, "keys", "create", "--tenant", settings.default_tenant, "--scopes", "read,admin"
    )
    (key,) = [word for word in made_key.split() if word.startswith("rfl_")]
    produce(settings, first)
    flow, api = start_flow(settings, log), start_api(settings, log)
    try:
        headers = {"Authorization": f"Bearer {key}"}
        rule = {"name": "busy", "kind": "threshold", "metric": "page_views", "value": 5}
        made = httpx.post(
            f"http://127.0.0.1:{settings.api_port}/v1/alerts/rules",
            json=rule,
            headers=headers,
            timeout=30,
        )
        assert made.status_code == 201, made.text
        silence = {
            "matchers": [{"name": "alertname", "value": "busy"}],
            "ends_at": now + 86_400_000,
            "comment": "drill",
        }
        made = httpx.post(
            f"http://127.0.0.1:{settings.api_port}/v1/silences",
            json=silence,
            headers=headers,
            timeout=30,
        )
        assert made.status_code == 201, made.text
        wait_for(lambda: _events_in(settings) == len(first), 240, "the first half", log)
        time.sleep(4 * settings.snapshot_seconds)
        backup = Path(cli(settings, "backup", "create", str(tmp_path / "backups")).strip())
        produce(settings, second + tail)
        wait_for(lambda: keys <= redis_finals(settings).keys(), 240, "every final", log)
        wait_for(lambda: keys <= warehouse_rows(settings).keys(), 120, "the warehouse", log)
        before = {
            "redis": redis_finals(settings),
            "warehouse": warehouse_rows(settings),
            "api": what_the_api_holds(settings, key),
        }
    finally:
        kill(flow)
        kill(api)
    assert before["api"]["rules"] and before["api"]["silences"]

    # The disaster: Redis data, the warehouse file and the recovery store are gone.
    client = redis.Redis.from_url(settings.redis_url)
    lost = list(client.scan_iter(match=f"{settings.redis_prefix}:*", count=1000))
    client.delete(*lost)
    for path in settings.duckdb_path.parent.glob(settings.duckdb_path.name + "*"):
        path.unlink()
    shutil.rmtree(settings.recovery_dir)

    started = time.monotonic()
    restored = cli(settings, "backup", "restore", str(backup))
    flow, api = start_flow(settings, log), start_api(settings, log)
    try:
        wait_for(
            lambda: not final_differences(redis_finals(settings), before["redis"]),
            300,
            "the finals to come back",
            log,
            lambda: str(final_differences(redis_finals(settings), before["redis"])[:3]),
        )
        wait_for(
            lambda: not final_differences(warehouse_rows(settings), before["warehouse"]),
            120,
            "the warehouse to come back",
            log,
            lambda: str(final_differences(warehouse_rows(settings), before["warehouse"])[:3]),
        )
        recovery_s = time.monotonic() - started
        after = what_the_api_holds(settings, key)
    finally:
        kill(flow)
        kill(api)
    assert after == before["api"]
    assert_matches(redis_finals(settings), expected)
    assert_sketches_match(redis_finals(settings), sketched)
    assert_matches(warehouse_rows(settings), expected)
    report = f"{restored.strip()}; recovered in {recovery_s:.1f} s (restore, start, replay)"
    (tmp_path / "recovery-time.txt").write_text(report + "\n")
    print(report)
    assert len(lost) > 100


def _events_in(settings: Settings) -> float:
    try:
        return scrape(settings, "riffle_dataflow_events_in_total")
    except OSError:
        return -1.0
