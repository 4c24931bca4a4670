"""``riffle up`` cleans up after itself: its children die with it however it ends (kill -9,
a closed terminal's SIGHUP), a restart reuses the demo key and resumes the flow's open
windows from the recovery store under ``.riffle/``, and ``riffle reset`` forgets it all."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from riffle.config.settings import Settings
from riffle.keys import store
from riffle.local_state import DEMO_KEY_NAME
from riffle.stack import free_port
from tests.conftest import RedisTarget
from tests.e2e.test_stack import _lines, _wait_for

pytestmark = pytest.mark.e2e


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.2)
    return [p for p in pids if _alive(p)]


def _up(cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "riffle.cli", "up", "--rate", "200"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _started(process: subprocess.Popen[str], seen: list[str]) -> tuple[str, queue.Queue[str]]:
    """Wait for the stack to be up; the demo key it printed and its output lines."""
    lines = _lines(process)
    deadline = time.monotonic() + 180
    while not any("Riffle is up." in line for line in seen):
        assert time.monotonic() < deadline, "\n".join(seen)
        try:
            seen.append(lines.get(timeout=0.5))
        except queue.Empty:
            assert process.poll() is None, "riffle up exited:\n" + "\n".join(seen)
    _wait_for(lines, "API key of tenant", 10, seen)
    return seen[-1].rsplit(" ", 1)[-1], lines


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_die_with_up_and_a_restart_resumes(
    kafka_broker: str, redis_url: RedisTarget, tmp_path: Path
) -> None:
    api_port, metrics_port = free_port(), free_port()
    run = uuid.uuid4().hex[:8]
    prefix = f"{redis_url.prefix}-life"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    env.update(
        RIFFLE_KAFKA_BOOTSTRAP=kafka_broker,
        RIFFLE_EVENTS_TOPIC=f"life-events-{run}",
        RIFFLE_DEADLETTER_TOPIC=f"life-dead-{run}",
        RIFFLE_REDIS_URL=redis_url.url,
        RIFFLE_REDIS_PREFIX=prefix,
        RIFFLE_API_PORT=str(api_port),
        RIFFLE_METRICS_PORT=str(metrics_port),
        RIFFLE_LOG_FORMAT="console",
        RIFFLE_SNAPSHOT_SECONDS="2",
        # A flow without recovery state starts at the end of the topic, as one of a
        # restarted in-memory broker would: run 1's open windows then close only if
        # run 2 resumes them from the recovery store.
        RIFFLE_START_FROM="end",
    )
    settings = Settings(redis_url=redis_url.url, redis_prefix=prefix)
    keys = store(settings)
    stale, _ = keys.create("demo", ["read"], name=DEMO_KEY_NAME)  # left by an older run
    series = f"http://127.0.0.1:{api_port}/v1/metrics/page_views_10s/series"

    # Run 1: ended by kill -9; every child follows it.
    first = _up(tmp_path, env)
    seen: list[str] = []
    try:
        key, _ = _started(first, seen)
        auth = {"Authorization": f"Bearer {key}"}
        key_file = tmp_path / ".riffle" / "demo-key"
        assert key_file.read_text().strip() == key
        assert key_file.stat().st_mode & 0o777 == 0o600
        older = keys.authenticate(stale)
        assert older is not None and older.state(int(time.time() * 1000)) == "revoked"
        assert (tmp_path / ".riffle" / "recovery" / "part-0.sqlite3").exists()
        children = _children(first.pid)
        assert len(children) >= 3, seen
        deadline = time.monotonic() + 60
        counted = 0
        while counted == 0 and time.monotonic() < deadline:
            body = httpx.get(series, params={"start": "-5m"}, headers=auth, timeout=5).json()
            counted = sum(p["count"] for s in body["series"] for p in s["points"])
            time.sleep(1)
        assert counted > 0
        time.sleep(5)  # a snapshot or two with open windows in it
        killed_at = int(time.time() * 1000)
        first.kill()
        first.wait(timeout=10)
        left = _wait_gone(children, 30)
        assert not left, f"children still running after kill -9 of riffle up: {left}"
        assert not _listening(api_port)  # the next `riffle up` can have the ports
        assert not _listening(metrics_port)
    finally:
        if first.poll() is None:
            first.kill()

    # Run 2, same folder: the same key; the windows open at the kill become final.
    second = _up(tmp_path, env)
    seen = []
    try:
        again, lines = _started(second, seen)
        assert again == key
        assert "new, " not in seen[-1]
        active = [
            k
            for k in keys.list("demo")
            if k.name == DEMO_KEY_NAME and k.state(int(time.time() * 1000)) == "active"
        ]
        assert [k.prefix for k in active] == [key.split("_")[1]]
        before = int(killed_at - 20_000)
        deadline = time.monotonic() + 90
        open_windows: list[str] = ["?"]
        while open_windows and time.monotonic() < deadline:
            body = httpx.get(
                series,
                params={"start": str(before), "end": str(killed_at)},
                headers=auth,
                timeout=5,
            ).json()
            points = [p for s in body["series"] for p in s["points"]]
            open_windows = [p["window_start"] for p in points if not p["is_final"]]
            time.sleep(2)
        assert points, body
        assert not open_windows, f"windows of the killed run still open: {open_windows}"
        children = _children(second.pid)

        # A closed terminal: SIGHUP stops the stack gracefully.
        second.send_signal(signal.SIGHUP)
        _wait_for(lines, "SIGHUP: stopping", 30, seen)
        assert second.wait(timeout=60) == 0
        assert not _wait_gone(children, 10)
    finally:
        if second.poll() is None:
            second.kill()

    # riffle reset: the key is revoked, .riffle is gone.
    done = subprocess.run(
        [sys.executable, "-m", "riffle.cli", "reset"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp_path / ".riffle").exists()
    record = keys.authenticate(key)
    assert record is not None and record.state(int(time.time() * 1000)) == "revoked"
