"""The push to a real Alertmanager (Debian's prometheus-alertmanager 0.25) on a free port:
a firing notification shows up as an active alert with our labels, a resolved one
resolves it, and an unreachable Alertmanager dead-letters."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from operators.alerts import AlertTransition
from riffle.stack import free_port
from sinks.alertmanager import AlertmanagerChannel

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = pytest.mark.skipif(
    BINARY is None, reason="apt-get install prometheus-alertmanager to run these tests"
)
CONFIG = """
route: {receiver: devnull, group_wait: 1s}
receivers: [{name: devnull}]
"""
MIN = 60_000


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    assert BINARY is not None
    port = free_port()
    (tmp_path / "am.yml").write_text(CONFIG)
    log = (tmp_path / "am.log").open("wb")
    process = subprocess.Popen(
        [
            BINARY,
            f"--config.file={tmp_path / 'am.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "am.log").read_text()
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _alerts(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts?active=true&silenced=true", timeout=5) as r:
        found: list[dict[str, Any]] = orjson.loads(r.read())
    return found


def _t(to: str, frm: str, at: int) -> AlertTransition:
    return AlertTransition(
        "t1",
        "views_high",
        "views",
        "0123456789abcdef",
        (("alertname", "views_high"), ("country", "de"), ("severity", "critical")),
        "critical",
        frm,
        to,
        at,
        500.0,
        3 * MIN,
        (("summary", "de: 500.0 views"),),
    )


def test_firing_then_resolved_in_a_real_alertmanager(alertmanager: str) -> None:
    channel = AlertmanagerChannel(alertmanager, backoff_s=0.01)
    assert channel.notify([_t("firing", "pending", 5 * MIN), _t("pending", "normal", 3 * MIN)]) == 1
    [alert] = _alerts(alertmanager)
    assert alert["labels"] == {"alertname": "views_high", "country": "de", "severity": "critical"}
    assert alert["annotations"] == {"summary": "de: 500.0 views"}
    assert alert["startsAt"].startswith("1970-01-01T00:03:00")
    assert alert["status"]["state"] == "active"
    # Re-sending keeps one alert (Alertmanager de-duplicates by label set).
    assert channel.resend([orjson.loads(_t("firing", "pending", 5 * MIN).to_json())]) == 1
    assert len(_alerts(alertmanager)) == 1
    assert channel.notify([_t("normal", "firing", 9 * MIN)]) == 1
    assert _alerts(alertmanager) == []


def test_unreachable_alertmanager_dead_letters() -> None:
    dead: list[tuple[str, str]] = []
    channel = AlertmanagerChannel(
        f"http://127.0.0.1:{free_port()}",
        attempts=2,
        backoff_s=0.01,
        dead_letter=lambda t, why: dead.append((t.transition_id, why)),
    )
    assert channel.notify([_t("firing", "pending", 5 * MIN)]) == 0
    assert len(dead) == 1 and "unreachable" in dead[0][1]
