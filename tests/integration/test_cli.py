"""The ``riffle`` command as a user runs it: a subprocess, its exit code and output."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from riffle.config.settings import Settings
from riffle.config.spec import load_spec
from tests.integration.kafka_support import read_topic

pytestmark = pytest.mark.integration


def riffle(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``riffle ARGS`` with only the given RIFFLE_* variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "riffle.cli", *args],
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
        check=False,
    )


def test_spec_check_accepts_the_demo_spec() -> None:
    result = riffle("spec", "check")
    assert result.returncode == 0, result.stderr
    spec = load_spec("config/demo.yaml")
    summary = (
        f"ok ({len(spec.event_types)} event types, {len(spec.dimensions)} dimensions, "
        f"{len(spec.metrics)} metrics)"
    )
    assert summary in result.stdout


def test_spec_check_names_file_line_and_field(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "version: 1\n"
        "event_types:\n"
        "  page_view: {}\n"
        "metrics:\n"
        "  - name: views\n"
        "    events: [page_veiw]\n"
        "    aggregation: sum\n",
        encoding="utf-8",
    )
    result = riffle("spec", "check", str(spec))
    assert result.returncode == 1
    assert f"{spec}:6: metrics[0].events[0]: unknown event type 'page_veiw'" in result.stderr
    # A missing field is reported on the line of the item that lacks it.
    assert f"{spec}:5: metrics[0].value: a sum metric needs a value field path" in result.stderr
    assert result.stdout == ""


def test_spec_check_reports_a_missing_file(tmp_path: Path) -> None:
    result = riffle("spec", "check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "cannot read the spec" in result.stderr


def test_topics_create_is_idempotent(kafka_broker: str) -> None:
    env = {
        "RIFFLE_KAFKA_BOOTSTRAP": kafka_broker,
        "RIFFLE_EVENTS_TOPIC": f"cli-events-{os.getpid()}",
        "RIFFLE_DEADLETTER_TOPIC": f"cli-dead-{os.getpid()}",
    }
    first = riffle("topics", "create", "--partitions", "3", **env)
    assert first.returncode == 0, first.stderr
    assert "topics ready" in first.stdout
    again = riffle("topics", "create", **env)
    assert again.returncode == 0, again.stderr
    metadata = AdminClient({"bootstrap.servers": kafka_broker}).list_topics(timeout=10)
    for name in (env["RIFFLE_EVENTS_TOPIC"], env["RIFFLE_DEADLETTER_TOPIC"]):
        assert len(metadata.topics[name].partitions) == 3


def test_demo_produce_sends_count_events(
    kafka_broker: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=2, prefix="cli-demo")
    result = riffle(
        "demo-produce", "--rate", "5000", "--count", "300", "--topic", topic, "--seed", "4",
        RIFFLE_KAFKA_BOOTSTRAP=kafka_broker,
        RIFFLE_LOG_FORMAT="json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert '"event": "demo_produce_done"' in result.stderr
    assert '"sent": 300' in result.stderr
    assert sum(len(m) for m in read_topic(kafka_broker, topic).values()) == 300


def test_settings_prints_effective_values_with_passwords_masked() -> None:
    result = riffle(
        "settings",
        RIFFLE_REDIS_URL="redis://:s3cret@127.0.0.1:6379/2",
        RIFFLE_API_PORT="8123",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "RIFFLE_API_PORT=8123" in lines
    assert "RIFFLE_REDIS_URL=redis://:***@127.0.0.1:6379/2" in lines
    assert "s3cret" not in result.stdout
    assert len(lines) == len(Settings.model_fields)


def test_settings_markdown_lists_every_setting() -> None:
    result = riffle("settings", "--markdown")
    assert result.returncode == 0, result.stderr
    for name in Settings.model_fields:
        assert f"| `RIFFLE_{name.upper()}` |" in result.stdout


def test_invalid_settings_exit_2() -> None:
    result = riffle("settings", RIFFLE_API_PORT="not-a-port")
    assert result.returncode == 2
    assert "RIFFLE_API_PORT" in result.stderr


def test_dashboards_generate_never_drops_panels(tmp_path: Path) -> None:
    refused = riffle("dashboards", "generate")
    assert refused.returncode == 1
    assert "a dashboard holds at most 50" in refused.stderr
    assert "--out DIR" in refused.stderr and refused.stdout == ""
    written = riffle("dashboards", "generate", "--out", str(tmp_path))
    assert written.returncode == 0, written.stderr
    files = sorted(p.name for p in tmp_path.glob("*.yaml"))
    assert files == ["overview-2.yaml", "overview.yaml"]
    spec = load_spec("config/demo.yaml")
    from riffle.config.dashboards import load_dashboards

    boards = load_dashboards(tmp_path, spec)
    assert sum(len(b.panels) for b in boards) == sum(3 if m.dimensions else 2 for m in spec.metrics)
