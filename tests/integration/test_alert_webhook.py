"""The webhook and email channels against a real HTTP receiver on a free port and a real
SMTP server (aiosmtpd): signed bodies, one dedup key per notification, retries with
backoff, then a dead letter in Redis; silences; the alert stage notifying the receiver."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
import pytest
import redis
from aiosmtpd.controller import Controller
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main

from api.app import create_app
from config.settings import Settings
from config.spec import parse_spec
from dataflows.alerts import WebhookSink, alert_stage
from operators.alerts import AlertTransition
from riffle.stack import free_port
from sinks.silences import Matcher, SilenceSpec, SilenceStore
from sinks.smtp_channel import EmailChannel
from sinks.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    RedisUndelivered,
    WebhookChannel,
    verify,
)
from tests.api_support import keyed_client
from tests.conftest import RedisTarget
from tests.integration.test_alerts_flow import SPEC, _windows

SECRET = b"s3cret-for-tests"
MIN = 60_000


class Receiver:
    """An HTTP server that records POSTs and answers with scripted status codes."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict[str, Any]] = []
        self.script: list[int] = []
        self.default = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(
                    {
                        "body": body,
                        "timestamp": self.headers[TIMESTAMP_HEADER],
                        "signature": self.headers[SIGNATURE_HEADER],
                        "idempotency": self.headers["Idempotency-Key"],
                    }
                )
                code = receiver.script.pop(0) if receiver.script else receiver.default
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def _transition(to: str = "firing", frm: str = "pending", at: int = 5 * MIN) -> AlertTransition:
    return AlertTransition(
        "t1",
        "views_high",
        "views",
        "0123456789abcdef",
        (("alertname", "views_high"), ("country", "de")),
        "critical",
        frm,
        to,
        at,
        500.0,
        3 * MIN,
        (("summary", "de: 500.0 views"),),
    )


def test_signed_body_and_stable_dedup_key(receiver: Receiver) -> None:
    channel = WebhookChannel(receiver.url, SECRET, backoff_s=0.01)
    items = [
        _transition(),
        _transition("recovering", "firing"),
        _transition("normal", "recovering"),
    ]
    assert channel.notify(items) == 2  # firing and resolved; recovering is not notified
    assert channel.notify(items[:1]) == 1  # a re-send carries the same dedup key
    statuses = []
    for hit in receiver.received:
        assert verify(SECRET, hit["timestamp"], hit["body"], hit["signature"])
        assert not verify(b"wrong", hit["timestamp"], hit["body"], hit["signature"])
        body = orjson.loads(hit["body"])
        assert body["dedup_key"] == hit["idempotency"] == body["alert"]["transition_id"]
        statuses.append(body["status"])
    assert statuses == ["firing", "resolved", "firing"]
    keys = [orjson.loads(h["body"])["dedup_key"] for h in receiver.received]
    assert keys[0] == keys[2] != keys[1]
    assert orjson.loads(receiver.received[0]["body"])["alert"]["annotations"] == {
        "summary": "de: 500.0 views"
    }


def test_failures_are_retried_then_dead_lettered(
    receiver: Receiver, redis_url: RedisTarget
) -> None:
    dead = RedisUndelivered(redis.Redis.from_url(redis_url.url), f"{redis_url.prefix}-wh")
    channel = WebhookChannel(receiver.url, SECRET, attempts=4, backoff_s=0.01, dead_letter=dead)
    receiver.script = [500, 503, 429]  # three failures, then 200
    assert channel.notify([_transition()]) == 1
    assert len(receiver.received) == 4 and dead.all() == {}

    receiver.received.clear()
    receiver.default = 502
    failing = _transition(at=9 * MIN)
    assert channel.notify([failing]) == 0
    assert len(receiver.received) == 4
    assert list(dead.all()) == [failing.transition_id]
    assert "answered 502" in str(dead.all()[failing.transition_id]["reason"])

    receiver.received.clear()
    receiver.default = 400  # a client error is not retried
    assert channel.notify([_transition(at=11 * MIN)]) == 0
    assert len(receiver.received) == 1 and len(dead.all()) == 2


def test_unreachable_receiver_is_dead_lettered(redis_url: RedisTarget) -> None:
    dead = RedisUndelivered(redis.Redis.from_url(redis_url.url), f"{redis_url.prefix}-wh2")
    url = f"http://127.0.0.1:{free_port()}/nobody"
    channel = WebhookChannel(url, SECRET, attempts=2, backoff_s=0.01, dead_letter=dead)
    assert channel.notify([_transition()]) == 0
    assert "unreachable" in str(next(iter(dead.all().values()))["reason"])
    with pytest.raises(ValueError, match="http"):
        WebhookChannel("file:///etc/passwd", SECRET)


def test_a_spike_in_the_flow_reaches_the_receiver_signed(receiver: Receiver) -> None:
    spec = parse_spec(SPEC)
    flow = Dataflow("alerts_webhook_test")
    results = op.input("in", flow, TestingSource(_windows(), batch_size=7))
    sink = WebhookSink(receiver.url, SECRET, backoff_s=0.01, redis=None)
    alert_stage(results, spec, shards=2, sink=TestingSink([]), notify=sink)
    run_main(flow, epoch_interval=timedelta(0))
    got = []
    for hit in receiver.received:
        assert verify(SECRET, hit["timestamp"], hit["body"], hit["signature"])
        body = orjson.loads(hit["body"])
        alert = body["alert"]
        got.append((alert["rule"], alert["labels"].get("country", ""), alert["at"], body["status"]))
    assert ("views_high", "de", 8 * MIN, "firing") in got
    assert ("views_high", "de", 12 * MIN, "resolved") in got
    assert ("views_total_high", "", 6 * MIN, "firing") in got
    assert len(got) == len(set(got))


def test_silences_through_the_api_mute_the_webhook(
    receiver: Receiver, redis_url: RedisTarget, tmp_path: Path
) -> None:
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
    channel = WebhookChannel(receiver.url, SECRET, backoff_s=0.01, silenced=store.mutes)
    other = AlertTransition(**_as_dict(_transition(), rule="x"))
    assert channel.notify([_transition(), other]) == 1  # views_high/de is muted
    assert [orjson.loads(h["body"])["alert"]["rule"] for h in receiver.received] == ["x"]
    # The silence does not apply before it starts or after it ends.
    [s] = store.list("t1")
    assert not s.mutes({"alertname": "views_high", "country": "de"}, s.ends_at)
    assert s.mutes({"alertname": "views_high", "country": "de"}, s.starts_at)

    assert admin.delete(f"/v1/silences/{silence_id}").status_code == 204
    assert admin.delete(f"/v1/silences/{silence_id}").status_code == 404
    assert channel.notify([_transition()]) == 1


def _as_dict(t: AlertTransition, **changes: Any) -> dict[str, Any]:
    data = {name: getattr(t, name) for name in AlertTransition.__dataclass_fields__}
    data.update(changes)
    labels = dict(data["labels"])
    labels["alertname"] = data["rule"]
    data["labels"] = tuple(sorted(labels.items()))
    return data


class _Inbox:
    """aiosmtpd handler that keeps every message and fails the first ``fail`` of them."""

    def __init__(self, fail: int = 0) -> None:
        self.messages: list[Any] = []
        self.fail = fail

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        if self.fail:
            self.fail -= 1
            return "451 try again later"
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def test_email_reaches_a_real_smtp_server_and_silences_apply(redis_url: RedisTarget) -> None:
    inbox = _Inbox(fail=1)  # the first delivery gets a 451 and is retried
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        prefix = f"{redis_url.prefix}-mail"
        client = redis.Redis.from_url(redis_url.url)
        silences = SilenceStore(client, prefix)
        dead = RedisUndelivered(client, prefix)
        channel = EmailChannel(
            "127.0.0.1",
            port,
            "riffle@example.test",
            ["oncall@example.test"],
            backoff_s=0.01,
            dead_letter=dead,
            silenced=silences.mutes,
        )
        fired = _transition()
        assert channel.notify([fired, _transition("recovering", "firing")]) == 1
        [msg] = inbox.messages
        assert msg["Subject"].startswith("[FIRING] views_high (critical)")
        assert msg["X-Riffle-Dedup-Key"] == fired.transition_id
        assert msg["Message-ID"] == f"<{fired.transition_id}@riffle>"
        assert "summary: de: 500.0 views" in msg.get_payload()

        silences.create(
            "t1",
            SilenceSpec(
                matchers=[Matcher(name="country", value="de")],
                ends_at=int(time.time() * 1000) + 60_000,
            ),
        )
        assert channel.notify([_transition("normal", "firing", at=20 * MIN)]) == 0
        assert len(inbox.messages) == 1 and dead.all() == {}
    finally:
        controller.stop()
    # The server is gone: retried, then dead-lettered (fr is not silenced).
    unsilenced = _as_dict(_transition(at=31 * MIN))
    unsilenced["labels"] = (("alertname", "views_high"), ("country", "fr"))
    assert channel.notify([AlertTransition(**unsilenced)]) == 0
    assert any("unreachable" in str(v["reason"]) for v in dead.all().values())
