"""The notifier against real peers: transitions on a real topic (Tansu), state in Redis,
deliveries to a real HTTP receiver (webhook and Slack-compatible) and a real SMTP server.

Covers grouping timings (group_wait batches, group_interval, repeat_interval), acks through
the API stopping repeats, routing with ``continue``, inhibition, mute time intervals,
silences, the Slack payload, email through the receivers config, and a failing webhook
retried then dead-lettered."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from riffle.api.app import create_app
from riffle.config.notifications import NotificationsSpec
from riffle.config.settings import Settings
from riffle.dataflows.notifier.feeds import KafkaFeed
from riffle.dataflows.notifier.service import Notifier, NotifierError
from riffle.sinks.channels.webhook import verify
from riffle.sinks.redis.alerts import RedisAlerts
from riffle.sinks.redis.notify_state import LeaseLostError, NotifyState
from riffle.sinks.redis.silences import Matcher, SilenceSpec, SilenceStore
from riffle.sinks.redis.undelivered import RedisUndelivered
from tests.api_support import keyed_client
from tests.conftest import RedisTarget
from tests.integration.notify_support import (
    SECRET,
    Inbox,
    Receiver,
    running_notifier,
    smtp_server,
    transition,
    wait_until,
)
from tests.integration.test_alerts_flow import SPEC

ENV = {"HOOK_SECRET": SECRET.decode()}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    try:
        yield r
    finally:
        r.close()


def _spec(data: dict[str, Any]) -> NotificationsSpec:
    return NotificationsSpec.model_validate(data)


def test_group_wait_interval_repeat_and_ack_through_the_api(
    receiver: Receiver,
    redis_url: RedisTarget,
    kafka_broker: str,
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    spec = _spec(
        {
            "receivers": [
                {"name": "ops", "webhook": {"url": receiver.url(), "secret_env": "HOOK_SECRET"}}
            ],
            "route": {
                "receiver": "ops",
                "group_by": ["alertname"],
                "group_wait": "1s",
                "group_interval": "2s",
                "repeat_interval": "4s",
            },
        }
    )
    prefix = f"{redis_url.prefix}-group"
    topic = topic_factory(partitions=2, prefix="alerts")
    with running_notifier(
        spec, servers=kafka_broker, topic=topic, redis_url=redis_url.url, prefix=prefix, environ=ENV
    ) as run:
        sent = time.time()
        run.send(transition("a", country="de"), transition("b", country="fr"))
        wait_until(lambda: len(receiver.received) >= 1, 20, "the first notification")
        first = receiver.received[0]
        assert first.at - sent >= 0.9  # group_wait held it back
        body = first.json
        assert [a["instance"] for a in body["alerts"]] == ["a", "b"]  # batched in one
        assert body["status"] == "firing" and not body["repeat"]
        assert verify(SECRET, first.timestamp, first.body, first.signature)
        assert first.headers["Idempotency-Key"] == body["dedup_key"]

        run.send(transition("c", country="it"))
        wait_until(lambda: len(receiver.received) >= 2, 20, "the group_interval flush")
        second = receiver.received[1]
        assert second.at - first.at >= 1.8
        assert [a["instance"] for a in second.json["alerts"]] == ["a", "b", "c"]

        wait_until(lambda: len(receiver.received) >= 3, 20, "the repeat")
        repeat = receiver.received[2]
        assert repeat.json["repeat"] and repeat.at - second.at >= 3.8
        keys = [h.json["dedup_key"] for h in receiver.received]
        assert len(set(keys)) == 3

        # Acknowledge every alert through the API: no more repeats.
        client = redis.Redis.from_url(redis_url.url)
        RedisAlerts(client, prefix).write(
            [transition(i, country=c) for i, c in (("a", "de"), ("b", "fr"), ("c", "it"))]
        )
        spec_path = tmp_path / "spec.yaml"
        spec_path.write_text(SPEC)
        app = create_app(
            Settings(
                spec=spec_path,
                warehouse=f"duckdb:///{tmp_path / 'w.duckdb'}",
                default_tenant="t1",
                redis_url=redis_url.url,
                redis_prefix=prefix,
            )
        )
        admin = keyed_client(app, "t1", ("read", "admin"))
        reader = keyed_client(app, "t1")
        ack = {"by": "ana", "comment": "looking"}
        assert reader.post("/v1/alerts/a/ack", json=ack).status_code == 403
        assert admin.post("/v1/alerts/nope/ack", json=ack).status_code == 404
        assert (
            keyed_client(app, "t2", ("admin",)).post("/v1/alerts/a/ack", json=ack).status_code
            == 404
        )
        bad = admin.post("/v1/alerts/a/ack", json={**ack, "until": 1000})
        assert bad.status_code == 422
        for instance in ("a", "b", "c"):
            reply = admin.post(f"/v1/alerts/{instance}/ack", json=ack)
            assert reply.status_code == 201, reply.text
        listed = reader.get("/v1/alerts").json()["alerts"]
        assert {a["instance"]: a["ack"]["by"] for a in listed} == {
            "a": "ana",
            "b": "ana",
            "c": "ana",
        }
        count = len(receiver.received)
        time.sleep(6.5)  # more than a repeat_interval and a group_interval
        assert len(receiver.received) == count, "an acknowledged group repeated"

        # A change is still told: b resolves.
        run.send(transition("b", "normal", "firing", at=600_000, country="fr"))
        wait_until(lambda: len(receiver.received) > count, 20, "the resolved notification")
        last = receiver.received[-1].json
        assert ("b", "resolved") in [(a["instance"], a["status"]) for a in last["alerts"]]
        # Withdrawn, an ack no longer shows (and repeats would resume).
        assert admin.delete("/v1/alerts/a/ack").status_code == 204
        assert admin.delete("/v1/alerts/a/ack").status_code == 404
        listed = {a["instance"]: a["ack"] for a in reader.get("/v1/alerts").json()["alerts"]}
        assert listed["a"] is None and listed["c"] is not None
        # A pending instance cannot be acked.
        RedisAlerts(client, prefix).write([transition("p", "pending", "normal", at=700_000)])
        assert admin.post("/v1/alerts/p/ack", json=ack).status_code == 409


def test_routing_inhibition_mute_silence_and_slack(
    receiver: Receiver,
    redis_url: RedisTarget,
    kafka_broker: str,
    topic_factory: Callable[..., str],
) -> None:
    spec = _spec(
        {
            "receivers": [
                {
                    "name": "default",
                    "webhook": {"url": receiver.url("/default"), "secret_env": "HOOK_SECRET"},
                },
                {
                    "name": "pager",
                    "webhook": {"url": receiver.url("/pager"), "secret_env": "HOOK_SECRET"},
                },
                {"name": "chat", "slack": {"url_env": "SLACK_URL", "channel": "#alerts"}},
                {
                    "name": "quiet",
                    "webhook": {"url": receiver.url("/quiet"), "secret_env": "HOOK_SECRET"},
                },
            ],
            "route": {
                "receiver": "default",
                "group_by": ["..."],
                "group_wait": "0s",
                "group_interval": "1s",
                "routes": [
                    {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True},
                    {"matchers": ["team=~web|shop"], "receiver": "chat"},
                    {
                        "matchers": ["team=night"],
                        "receiver": "quiet",
                        "mute_time_intervals": ["always"],
                    },
                ],
            },
            "inhibit_rules": [
                {
                    "source_matchers": ["severity=critical"],
                    "target_matchers": ["severity=warning"],
                    "equal": ["country"],
                }
            ],
            "time_intervals": [{"name": "always", "time_zone": "Europe/Berlin"}],
        }
    )
    prefix = f"{redis_url.prefix}-route"
    client = redis.Redis.from_url(redis_url.url)
    SilenceStore(client, prefix).create(
        "t1",
        SilenceSpec(
            matchers=[Matcher(name="country", value="it")],
            ends_at=int(time.time() * 1000) + 600_000,
        ),
    )
    topic = topic_factory(partitions=2, prefix="alerts")
    env = {**ENV, "SLACK_URL": receiver.url("/slack")}
    with running_notifier(
        spec, servers=kafka_broker, topic=topic, redis_url=redis_url.url, prefix=prefix, environ=env
    ) as run:
        run.send(transition("crit", rule="down", severity="critical", country="de", team="web"))
        wait_until(lambda: len(receiver.at("/pager")) == 1, 20, "the critical alert's page")
        run.send(
            transition("warn_de", country="de"),  # inhibited by crit (same country)
            transition("warn_fr", country="fr"),  # default receiver
            transition("shop", rule="orders_low", country="fr", team="shop"),  # chat
            transition("night", rule="batch_late", country="fr", team="night"),  # muted route
            transition("silenced", rule="it_views", country="it"),  # silenced
        )
        wait_until(lambda: len(receiver.at("/default")) >= 1, 20, "the default receiver")
        wait_until(lambda: len(receiver.at("/slack")) >= 2, 20, "both Slack messages")
        time.sleep(2.5)  # two more group_interval ticks: nothing else may arrive
        routed = sorted(
            (h.path, a["instance"])
            for h in receiver.received
            if h.path != "/slack"
            for a in h.json["alerts"]
        )
        assert routed == [("/default", "warn_fr"), ("/pager", "crit")]
        assert receiver.at("/quiet") == []
        slack = [h.json for h in receiver.at("/slack")]
        assert len(slack) == 2
        texts = sorted(s["text"] for s in slack)
        assert texts[0].startswith("[FIRING:1]") and "down firing" in texts[0]
        assert "orders_low firing" in texts[1]
        for message in slack:
            assert message["channel"] == "#alerts"
            kinds = [b["type"] for b in message["blocks"]]
            assert kinds[0] == "header" and kinds[-1] == "context" and "section" in kinds
            assert "dedup" in message["blocks"][-1]["elements"][0]["text"]

        # The critical alert resolves: the warning it inhibited is told now, and the page
        # resolves.
        run.send(
            transition(
                "crit",
                "normal",
                "firing",
                at=900_000,
                rule="down",
                severity="critical",
                country="de",
                team="web",
            )
        )
        wait_until(lambda: len(receiver.at("/pager")) == 2, 20, "the page's resolution")
        wait_until(
            lambda: any(
                a["instance"] == "warn_de"
                for h in receiver.at("/default")
                for a in h.json["alerts"]
            ),
            20,
            "the formerly inhibited warning",
        )
        assert receiver.at("/pager")[1].json["status"] == "resolved"


def test_failing_webhook_is_retried_then_dead_lettered_and_email_goes_through(
    receiver: Receiver,
    redis_url: RedisTarget,
    kafka_broker: str,
    topic_factory: Callable[..., str],
) -> None:
    inbox = Inbox(fail=1)  # the first mail gets a 451 and is retried
    with smtp_server(inbox) as port:
        spec = _spec(
            {
                "receivers": [
                    {
                        "name": "ops",
                        "webhook": {
                            "url": receiver.url(),
                            "secret_env": "HOOK_SECRET",
                            "max_attempts": 3,
                            "backoff": "10ms",
                        },
                        "email": {
                            "host": "127.0.0.1",
                            "port": port,
                            "from": "riffle@example.test",
                            "to": ["oncall@example.test"],
                            "backoff": "10ms",
                        },
                    }
                ],
                "route": {"receiver": "ops", "group_wait": "0s", "group_interval": "1s"},
            }
        )
        receiver.default = 503
        prefix = f"{redis_url.prefix}-dead"
        topic = topic_factory(partitions=1, prefix="alerts")
        with running_notifier(
            spec,
            servers=kafka_broker,
            topic=topic,
            redis_url=redis_url.url,
            prefix=prefix,
            environ=ENV,
        ) as run:
            run.send(transition("a", country="de"))
            client = redis.Redis.from_url(redis_url.url)
            dead = RedisUndelivered(client, prefix)
            wait_until(lambda: len(dead.all()) == 1, 30, "the dead letter")
            wait_until(lambda: len(inbox.messages) == 1, 30, "the email")
            wait_until(run.notifier.idle, 10, "deliveries to finish")
            sample = run.registry.get_sample_value
            deliveries = "riffle_notify_deliveries_total"
            labels = {"receiver": "ops", "channel": "webhook", "outcome": "dead"}
            assert sample(deliveries, labels) == 1
            assert sample(deliveries, labels | {"channel": "email", "outcome": "delivered"}) == 1
            # Exposed at 0 from the start, not absent: rate() alerts see the series.
            assert sample(deliveries, labels | {"outcome": "delivered"}) == 0
            assert sample(deliveries, labels | {"channel": "email", "outcome": "dead"}) == 0
            assert sample("riffle_notify_transitions_total", {"outcome": "applied"}) == 1
        assert len(receiver.received) == 3  # three attempts, all 503
        [(key, record)] = dead.all().items()
        assert key.endswith(":webhook") and "answered 503" in str(record["reason"])
        assert record["receiver"] == "ops"
        [msg] = inbox.messages
        dedup = key.rsplit(":", 1)[0]
        assert msg["Message-ID"] == f"<{dedup}@riffle>" and msg["X-Riffle-Dedup-Key"] == dedup
        assert msg["Subject"].startswith("[FIRING:1] alertname=views_high")
        assert "summary: a: 500 views" in msg.get_payload()
        state = NotifyState(client, prefix, topic)
        assert state.outbox() == {}
        assert state.delivered(f"{dedup}:email") and state.delivered(f"{dedup}:webhook")


def test_a_second_notifier_waits_for_the_lease(
    redis_url: RedisTarget, kafka_broker: str, topic_factory: Callable[..., str]
) -> None:
    spec = _spec({"receivers": [{"name": "x"}], "route": {"receiver": "x"}})
    prefix = f"{redis_url.prefix}-lease"
    topic = topic_factory(partitions=1, prefix="alerts")
    with running_notifier(
        spec, servers=kafka_broker, topic=topic, redis_url=redis_url.url, prefix=prefix
    ):
        standby = Notifier(
            spec,
            {},
            feed=KafkaFeed(kafka_broker, topic),
            redis_url=redis_url.url,
            prefix=prefix,
            registry=CollectorRegistry(),
        )
        with pytest.raises(NotifierError, match="lease"):
            standby.start(wait_s=0.5)
        # Fenced: a notifier without the lease cannot commit state.
        with pytest.raises(LeaseLostError):
            standby.state.commit(standby.owner, [], [], {}, {0: 99}, {})
        assert standby.state.load()[2] == {}
    # The running one stopped cleanly and gave the lease up: the standby can start now.
    standby.start(wait_s=5)
    standby.close()
