"""The webhook channel against a real HTTP receiver: signed body, dedup key as the
Idempotency-Key, retries with backoff then a reason to dead-letter, no retry of a 4xx;
and the silences API (matchers, time bounds, tenants)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from riffle.api.app import create_app
from riffle.config.notifications import NotificationsSpec
from riffle.config.settings import Settings
from riffle.operators.notify.dispatcher import Dispatcher
from riffle.operators.notify.groups import Notification
from riffle.sinks.channels.base import deliver
from riffle.sinks.channels.webhook import WebhookChannel, verify
from riffle.sinks.redis.silences import SilenceStore
from riffle.stack import free_port
from tests.api_support import keyed_client
from tests.conftest import RedisTarget
from tests.integration.notify_support import SECRET, Receiver, transition
from tests.integration.test_alerts_flow import SPEC


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.close()


def _note(*instances: str) -> Notification:
    spec = NotificationsSpec.model_validate(
        {"receivers": [{"name": "ops"}], "route": {"receiver": "ops", "group_wait": "0s"}}
    )
    d = Dispatcher(spec)
    for i in instances:
        d.ingest(transition(i, country=i), 0)
    [note] = d.due(0)
    return note


def test_signed_body_and_stable_dedup_key(receiver: Receiver) -> None:
    channel = WebhookChannel(receiver.url(), SECRET, backoff_s=0.01)
    note = _note("de", "fr")
    assert deliver(channel, note) is None
    assert deliver(channel, note) is None  # a re-send carries the same key
    for hit in receiver.received:
        assert verify(SECRET, hit.timestamp, hit.body, hit.signature)
        assert not verify(b"wrong", hit.timestamp, hit.body, hit.signature)
        body = hit.json
        assert body["version"] == 2 and body["dedup_key"] == hit.headers["Idempotency-Key"]
        assert body["dedup_key"] == note.dedup_key
        assert [a["instance"] for a in body["alerts"]] == ["de", "fr"]
        assert body["alerts"][0]["annotations"] == {"summary": "de: 500 views"}
        assert body["common_labels"]["alertname"] == "views_high"
    assert _note("de").dedup_key != note.dedup_key


def test_failures_are_retried_then_given_up(receiver: Receiver) -> None:
    channel = WebhookChannel(receiver.url(), SECRET, attempts=4, backoff_s=0.01)
    receiver.script = [500, 503, 429]  # three failures, then 200
    assert deliver(channel, _note("de")) is None
    assert len(receiver.received) == 4

    receiver.received.clear()
    receiver.default = 502
    reason = deliver(channel, _note("fr"))
    assert reason is not None and "answered 502" in reason
    assert len(receiver.received) == 4

    receiver.received.clear()
    receiver.default = 400  # a client error is not retried
    assert deliver(channel, _note("it")) is not None
    assert len(receiver.received) == 1


def test_unreachable_receiver_is_given_up() -> None:
    url = f"http://127.0.0.1:{free_port()}/nobody"
    channel = WebhookChannel(url, SECRET, attempts=2, backoff_s=0.01)
    assert "unreachable" in (deliver(channel, _note("de")) or "")
    with pytest.raises(ValueError, match="http"):
        WebhookChannel("file:///etc/passwd", SECRET)
    with pytest.raises(ValueError, match="secret"):
        WebhookChannel(url, b"")


def test_silences_through_the_api(redis_url: RedisTarget, tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(SPEC)
    prefix = f"{redis_url.prefix}-sil"
    settings = Settings(
        spec=spec_path,
        warehouse=f"duckdb:///{tmp_path / 'w.duckdb'}",
        default_tenant="t1",
        redis_url=redis_url.url,
        redis_prefix=prefix,
    )
    app = create_app(settings)
    admin = keyed_client(app, "t1", ("read", "admin"))
    reader = keyed_client(app, "t1")
    now = int(time.time() * 1000)
    body = {
        "matchers": [
            {"name": "alertname", "value": "views_high"},
            {"name": "country", "op": "=~", "value": "d.|fr"},
        ],
        "ends_at": now + 3_600_000,
        "comment": "deploy",
    }
    assert reader.post("/v1/silences", json=body).status_code == 403
    made = admin.post("/v1/silences", json=body)
    assert made.status_code == 201, made.text
    silence_id = made.json()["id"]
    bad = admin.post("/v1/silences", json={**body, "ends_at": now - 1000})
    assert bad.status_code == 422
    bad = admin.post(
        "/v1/silences", json={**body, "matchers": [{"name": "a", "op": "=~", "value": "("}]}
    )
    assert bad.status_code == 422
    listed = reader.get("/v1/silences", params={"active": "true"}).json()["silences"]
    assert [s["id"] for s in listed] == [silence_id] and listed[0]["active"]
    # Another tenant sees none of it.
    assert keyed_client(app, "t2").get("/v1/silences").json()["silences"] == []

    store = SilenceStore(redis.Redis.from_url(redis_url.url), prefix)
    assert store.mutes("t1", {"alertname": "views_high", "country": "de"})
    assert not store.mutes("t1", {"alertname": "views_high", "country": "it"})
    assert not store.mutes("t2", {"alertname": "views_high", "country": "de"})
    # The silence does not apply before it starts or after it ends.
    [s] = store.list("t1")
    assert not s.mutes({"alertname": "views_high", "country": "de"}, s.ends_at)
    assert s.mutes({"alertname": "views_high", "country": "de"}, s.starts_at)
    assert not store.mutes("t1", {"alertname": "views_high", "country": "de"}, s.starts_at - 1)

    assert admin.delete(f"/v1/silences/{silence_id}").status_code == 204
    assert admin.delete(f"/v1/silences/{silence_id}").status_code == 404
    assert not store.mutes("t1", {"alertname": "views_high", "country": "de"})
