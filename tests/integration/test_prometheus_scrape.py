"""A real Prometheus scrapes a running stack and loads Riffle's alert rules.

The dataflow, the API and the notifier run as processes; Prometheus (Debian's
``prometheus``) scrapes their ``/metrics`` as the jobs ``riffle-flow``,
``riffle-api`` and ``riffle-notifier`` the rules name, with
``k8s/monitoring/riffle-rules.yaml`` loaded. Every target must be up, every
rule group healthy, and every metric name a rule's expression uses must exist
in Prometheus — a renamed metric breaks this test, not a silent alert.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from riffle.config.settings import Settings
from riffle.stack import free_port, wait_for_port
from tests.integration.flow_support import (
    kill,
    lean_spec,
    produce,
    settings_env,
    start_flow,
    wait_for,
)
from tests.scenario import scenario

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
RULES = ROOT / "k8s" / "monitoring" / "riffle-rules.yaml"
RIFFLE = str(Path(sys.executable).with_name("riffle"))


def rule_metric_names() -> set[str]:
    """Every metric name the rules' expressions read."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    names = set()
    for group in groups:
        for rule in group["rules"]:
            names |= set(re.findall(r"\b(riffle_[a-z_]+|up)\b", rule["expr"]))
    return names


def start(settings: Settings, log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [RIFFLE, *args],
        env=settings_env(settings) | env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.timeout(600)
def test_prometheus_scrapes_every_process_and_finds_every_rule_metric(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus not installed (apt-get install prometheus; .ci/run does)")
    spec = lean_spec(tmp_path)
    spec.write_text(
        spec.read_text(encoding="utf-8")
        + "notifications:\n  receivers:\n    - name: ops\n"
        + "      webhook: {url: 'http://127.0.0.1:9/hook', secret_env: HOOK_SECRET}\n"
        + "  route: {receiver: ops}\n",
        encoding="utf-8",
    )
    settings = settings_factory(
        spec=spec,
        metrics_port=free_port(),
        api_port=free_port(),
        notify_metrics_port=free_port(),
        idle_seconds=1,
    )
    produce(settings, scenario(seed=37, n=1000, partitions=4))
    log = tmp_path / "stack.log"
    ports = {
        "riffle-flow": settings.metrics_port,
        "riffle-api": settings.api_port,
        "riffle-notifier": settings.notify_metrics_port,
    }
    web = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
            for job, port in ports.items()
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    processes = [
        start_flow(settings, log),
        start(settings, log, "api", "--port", str(settings.api_port)),
        start(settings, log, "notify", HOOK_SECRET="drill-secret"),
        subprocess.Popen(
            [
                prometheus,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{web}",
            ],
            stdout=(tmp_path / "prometheus.log").open("ab"),
            stderr=subprocess.STDOUT,
        ),
    ]
    base = f"http://127.0.0.1:{web}/api/v1"
    try:
        assert wait_for_port("127.0.0.1", web, 60, processes[-1])

        def api(path: str, **params: str) -> Any:
            return httpx.get(f"{base}/{path}", params=params, timeout=10).json()["data"]

        def all_up() -> bool:
            active = api("targets")["activeTargets"]
            return len(active) == 3 and all(t["health"] == "up" for t in active)

        wait_for(all_up, 240, "every target up", log, lambda: str(api("targets")))
        names = rule_metric_names()
        assert {"riffle_dataflow_source_lag_messages", "up"} <= names

        def series(query: str) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = api("query", query=query)["result"]
            return found

        def missing() -> set[str]:
            return {n for n in names if not series(f'count({{__name__="{n}"}})')}

        wait_for(lambda: not missing(), 120, "every rule metric", log, lambda: str(missing()))
        groups = api("rules")["groups"]
        assert {g["name"] for g in groups} == {"riffle-dataflow", "riffle-notifier", "riffle-api"}
        assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
        jobs = {s["metric"]["job"] for s in series("riffle_dataflow_events_in_total")}
        assert jobs == {"riffle-flow"}
    finally:
        for process in processes:
            kill(process)
