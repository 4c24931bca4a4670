"""``GET /v1/stream`` over real HTTP: windows written by the dataflow's Redis writer (and
transitions by its alert writer) arrive as server-sent events, per series or grouped,
tenant-scoped and resumable exactly."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

from riffle.config.settings import Settings
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.records import WindowResult
from riffle.sinks.redis.alerts import RedisAlerts
from riffle.sinks.redis.windows import RedisWindowStore
from tests.integration.ingest_support import Served, serve
from tests.integration.sse_support import sse

pytestmark = pytest.mark.integration

SPEC = """
version: 1
event_types:
  page_view: {}
dimensions:
  country: {path: context.country}
  device: {path: context.device}
metrics:
  - name: views
    events: [page_view]
    aggregation: count
    dimensions: [country, device]
    window: 10s
"""
START = (int(time.time() * 1000) // 10_000) * 10_000


def window(
    count: int, *, country: str = "de", device: str = "mobile", final: bool = False,
    start: int = START, tenant: str = "demo", revision: int = 1,
) -> WindowResult:  # fmt: skip
    return WindowResult(
        tenant=tenant, metric="views", dims=(("country", country), ("device", device)),
        window_start=start, window_end=start + 10_000, count=count, sum=float(count),
        min=None, max=None, value=float(count), is_final=final, revision=revision,
    )  # fmt: skip


@pytest.fixture
def served(settings_factory: Callable[..., Settings], tmp_path: Path) -> Iterator[Served]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    with serve(settings_factory(spec=spec)) as running:
        yield running


def store(served: Served) -> RedisWindowStore:
    client = redis.Redis.from_url(served.settings.redis_url)
    return RedisWindowStore(client, served.settings.redis_prefix, 3600)


def test_partials_then_final_arrive_per_series(served: Served) -> None:
    key = served.key("demo", ["read"])
    hot = store(served)
    with sse(f"{served.url}/v1/stream?metric=views", {"Authorization": f"Bearer {key}"}) as s:
        assert s.next().event == "ready"
        hot.write([window(3)])
        (first,) = s.windows(1)
        assert (first["value"], first["is_final"], first["dims"]) == (
            3.0, False, {"country": "de", "device": "mobile"},
        )  # fmt: skip
        hot.write([window(5, revision=2)])
        hot.write([window(7, final=True, revision=3)])
        seen = s.windows(1)
        while not seen[-1]["is_final"]:
            seen += s.windows(1)
        assert seen[-1]["value"] == 7.0


def test_group_by_merges_series_and_filters_apply(served: Served) -> None:
    key = served.key("demo", ["read"])
    hot = store(served)
    headers = {"Authorization": f"Bearer {key}"}
    url = f"{served.url}/v1/stream?metric=views&group_by=country&device=mobile"
    with sse(url, headers) as s:
        s.next()
        hot.write([window(2, device="mobile"), window(4, device="desktop")])
        hot.write([window(1, device="mobile", country="fr")])
        got: dict[str, float] = {}
        while len(got) < 2:
            (w,) = s.windows(1)
            got[w["dims"]["country"]] = w["value"]
        assert got == {"de": 2.0, "fr": 1.0}
        hot.write([window(6, device="tablet"), window(3, device="mobile", revision=2)])
        (w,) = s.windows(1)
        assert (w["dims"], w["value"]) == ({"country": "de"}, 3.0)


def test_resume_with_last_event_id_is_exact_and_tenants_are_apart(served: Served) -> None:
    key = served.key("demo", ["read"])
    hot = store(served)
    headers = {"Authorization": f"Bearer {key}"}
    with sse(f"{served.url}/v1/stream?metric=views", headers) as s:
        s.next()
        hot.write([window(1, country="a")])
        s.windows(1)
        resume = s.last_id
    assert resume is not None
    hot.write([window(9, country="b", tenant="other")])
    hot.write([window(2, country="b"), window(3, country="c")])
    with sse(f"{served.url}/v1/stream?metric=views", {**headers, "Last-Event-ID": resume}) as s:
        caught = s.windows(2)
        assert {w["dims"]["country"]: w["value"] for w in caught} == {"b": 2.0, "c": 3.0}
        hot.write([window(4, country="d")])
        assert s.windows(1)[0]["dims"]["country"] == "d"


def test_stream_follows_key_and_parameter_rules(served: Served) -> None:
    import httpx

    read = served.key("demo", ["read"])
    ingest = served.key("demo", ["ingest"])
    base = f"{served.url}/v1/stream"
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{base}?metric=views").status_code == 401
        auth = {"Authorization": f"Bearer {ingest}"}
        assert client.get(f"{base}?metric=views", headers=auth).status_code == 403
        auth = {"Authorization": f"Bearer {read}"}
        assert client.get(f"{base}?metric=nope", headers=auth).status_code == 404
        assert client.get(f"{base}?metric=views&group_by=x", headers=auth).status_code == 400
        bad = {**auth, "Last-Event-ID": "yesterday"}
        assert client.get(f"{base}?metric=views", headers=bad).status_code == 400


def test_resume_past_the_trimmed_stream_resets(served: Served) -> None:
    key = served.key("demo", ["read"])
    hot = store(served)
    hot.write([window(1)])
    live = hot.live_key("demo")
    hot.client.xtrim(live, maxlen=0)
    hot.write([window(2)])
    headers = {"Authorization": f"Bearer {key}", "Last-Event-ID": "1-0"}
    with sse(f"{served.url}/v1/stream?metric=views", headers) as s:
        event = s.next()
        assert event.event == "reset"
        assert event.id is not None


def test_alert_transitions_stream_as_alert_events(served: Served) -> None:
    key = served.key("demo", ["read"])
    client = redis.Redis.from_url(served.settings.redis_url)
    alerts = RedisAlerts(client, served.settings.redis_prefix)

    def transition(metric: str, to_state: str, at: int) -> AlertTransition:
        return AlertTransition(
            tenant="demo", rule=f"{metric}_high", metric=metric, instance=f"{metric}-1",
            labels=(), severity="critical", from_state="normal", to_state=to_state, at=at,
            value=1.0, active_at=None,
        )  # fmt: skip

    sub = '{"kind": "alerts", "metrics": ["views"], "severities": ["critical"]}'
    url = f"{served.url}/v1/stream?metric=views&sub={quote(sub)}"
    with sse(url, {"Authorization": f"Bearer {key}"}) as s:
        assert s.next().event == "ready"
        firing = transition("views", "firing", START)
        alerts.write([transition("other", "firing", START), firing])
        store(served).write([window(2)])
        kinds: dict[str, dict[str, Any]] = {}
        while len(kinds) < 2:
            event = s.next()
            kinds[event.event] = event.data
        assert kinds["alert"]["transition_id"] == firing.transition_id
        assert (kinds["alert"]["sub"], kinds["alert"]["to_state"]) == (1, "firing")
        assert "tenant" not in kinds["alert"]
        assert (kinds["window"]["sub"], kinds["window"]["value"]) == (0, 2.0)


def test_alert_subscriptions_are_checked(served: Served) -> None:
    import httpx

    auth = {"Authorization": f"Bearer {served.key('demo', ['read'])}"}
    base = f"{served.url}/v1/stream"
    bad = {
        '{"kind": "alerts", "metrics": ["nope"]}': 404,
        '{"kind": "alerts", "severities": ["dire"]}': 400,
        '{"kind": "alerts", "rules": "views_high"}': 400,
        '{"kind": "bogus"}': 400,
    }
    with httpx.Client(timeout=10) as client:
        for sub, status in bad.items():
            assert client.get(base, params={"sub": sub}, headers=auth).status_code == status, sub
