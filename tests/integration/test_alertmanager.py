"""The push to a real Alertmanager (Debian's prometheus-alertmanager 0.25) on a free port,
built from a receiver of the spec: a firing notification shows up as an active alert with
our labels, a re-push keeps one alert, a resolved one resolves it, and an unreachable
Alertmanager is given up after its retries."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from riffle.config.notifications import NotificationsSpec
from riffle.dataflows.notifier.run import build_channels
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.notify.dispatcher import Dispatcher
from riffle.operators.notify.groups import Notification
from riffle.sinks.channels.alertmanager import AlertmanagerChannel
from riffle.sinks.channels.base import deliver
from riffle.stack import free_port
from tests.conftest import RedisTarget
from tests.integration.notify_support import running_notifier, transition, wait_until

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


def _note(*items: AlertTransition, now: int = 0) -> Notification:
    spec = NotificationsSpec.model_validate(
        {
            "receivers": [{"name": "am", "alertmanager": {"url": "http://127.0.0.1:1"}}],
            "route": {"receiver": "am", "group_by": ["..."], "group_wait": "0s"},
        }
    )
    d = Dispatcher(spec)
    for t in items:
        d.ingest(t, now)
    [note] = d.due(now)
    return note


def test_firing_then_resolved_in_a_real_alertmanager(alertmanager: str) -> None:
    spec = NotificationsSpec.model_validate(
        {
            "receivers": [
                {
                    "name": "am",
                    "alertmanager": {
                        "url": alertmanager,
                        "backoff": "10ms",
                        "generator_url": "http://riffle.example/dashboard",
                    },
                }
            ],
            "route": {"receiver": "am", "group_by": ["..."], "group_wait": "0s"},
        }
    )
    [channel] = build_channels(spec, {})["am"]
    assert isinstance(channel, AlertmanagerChannel)
    d = Dispatcher(spec)
    d.ingest(transition("i1", at=5 * MIN, severity="critical", country="de"), 0)
    [note] = d.due(0)
    assert deliver(channel, note) is None
    [alert] = _alerts(alertmanager)
    assert alert["labels"] == {
        "alertname": "views_high",
        "country": "de",
        "severity": "critical",
        "metric": "views",
        "tenant": "t1",
    }
    assert alert["annotations"] == {"summary": "i1: 500 views"}
    assert alert["startsAt"].startswith("1970-01-01T00:03:00")
    assert alert["status"]["state"] == "active"
    assert alert["generatorURL"] == "http://riffle.example/dashboard"
    # Re-pushing what is still active keeps one alert (de-duplicated by label set).
    assert channel.resend(d.active_alerts("am")) == 1
    assert len(_alerts(alertmanager)) == 1
    d.ingest(transition("i1", "normal", "firing", at=9 * MIN, severity="critical", country="de"), 1)
    [resolved] = d.due(600_000)  # the next group_interval tick
    assert deliver(channel, resolved) is None
    assert _alerts(alertmanager) == []


def test_unreachable_alertmanager_is_given_up() -> None:
    channel = AlertmanagerChannel(f"http://127.0.0.1:{free_port()}", attempts=2, backoff_s=0.01)
    reason = deliver(channel, _note(transition("i1")))
    assert reason is not None and "unreachable" in reason


def test_the_notifier_pushes_to_an_alertmanager_receiver(
    alertmanager: str,
    redis_url: RedisTarget,
    kafka_broker: str,
    topic_factory: Callable[..., str],
) -> None:
    spec = NotificationsSpec.model_validate(
        {
            "receivers": [{"name": "am", "alertmanager": {"url": alertmanager, "backoff": "10ms"}}],
            "route": {
                "receiver": "am",
                "group_by": ["..."],
                "group_wait": "0s",
                "group_interval": "1s",
            },
        }
    )
    topic = topic_factory(partitions=1, prefix="alerts")
    with running_notifier(
        spec,
        servers=kafka_broker,
        topic=topic,
        redis_url=redis_url.url,
        prefix=f"{redis_url.prefix}-am",
    ) as run:
        run.send(transition("i1", severity="critical", country="de"))
        wait_until(lambda: len(_alerts(alertmanager)) == 1, 20, "the alert in Alertmanager")
        assert _alerts(alertmanager)[0]["labels"]["country"] == "de"
        run.send(
            transition("i1", "normal", "firing", at=900_000, severity="critical", country="de")
        )
        wait_until(lambda: _alerts(alertmanager) == [], 20, "the alert to resolve")
