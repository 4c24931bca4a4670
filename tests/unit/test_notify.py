"""The pure dispatcher with a hand-moved clock: group_wait, group_interval, repeat_interval,
routing with continue, inhibition, mute intervals, silences and acks; and the spec's
``notifications:`` validation with file:line errors."""

from __future__ import annotations

from typing import Any

import pytest

from riffle.config.errors import SpecError
from riffle.config.notifications import NotificationsSpec
from riffle.config.spec import parse_spec
from riffle.config.time_intervals import TimeInterval
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.notify.dispatcher import Dispatcher
from riffle.operators.notify.groups import Group, GroupAlert, Notification

S = 1000
BASE_SPEC = """
version: 1
event_types: {view: {}}
dimensions: {country: {path: props.country}}
metrics:
  - {name: views, events: [view], aggregation: count, dimensions: [country], window: 1m}
"""


def _spec(**route: Any) -> NotificationsSpec:
    data: dict[str, Any] = {
        "receivers": [{"name": "default"}, {"name": "pager"}, {"name": "web"}],
        "route": {
            "receiver": "default",
            "group_by": ["alertname"],
            "group_wait": "10s",
            "group_interval": "1m",
            "repeat_interval": "5m",
            **route,
        },
        "inhibit_rules": [
            {
                "source_matchers": ["severity=critical"],
                "target_matchers": ["severity=warning"],
                "equal": ["country"],
            }
        ],
        "time_intervals": [{"name": "weekends", "weekdays": ["saturday", "sunday"]}],
    }
    return NotificationsSpec.model_validate(data)


def _t(
    instance: str,
    to: str = "firing",
    frm: str = "pending",
    at: int = 60_000,
    rule: str = "views_high",
    severity: str = "warning",
    **labels: str,
) -> AlertTransition:
    shown = {"alertname": rule, "severity": severity, "tenant": "t1", **labels}
    return AlertTransition(
        "t1",
        rule,
        "views",
        instance,
        tuple(sorted(shown.items())),
        severity,
        frm,
        to,
        at,
        1.0,
        at,
        (),
    )


def _statuses(note: Notification) -> list[tuple[str, str]]:
    return [(a.instance, a.status) for a in note.alerts]


def test_group_wait_batches_then_interval_then_repeat() -> None:
    d = Dispatcher(_spec())
    d.ingest(_t("a"), 0)
    d.ingest(_t("b"), 5 * S)
    assert d.due(9 * S) == []
    [first] = d.due(10 * S)
    assert _statuses(first) == [("a", "firing"), ("b", "firing")] and not first.repeat
    d.ingest(_t("c"), 20 * S)
    assert d.due(69 * S) == []  # a new alert waits for the group_interval tick
    [second] = d.due(70 * S)
    assert [i for i, _ in _statuses(second)] == ["a", "b", "c"]
    assert second.dedup_key != first.dedup_key
    assert d.due(130 * S) == []  # nothing new, repeat not yet due
    assert d.due(310 * S) == []
    [repeat] = d.due(370 * S)  # 5 min after the last one, on a tick
    assert repeat.repeat and len(repeat.alerts) == 3
    d.ingest(_t("a", "normal", "firing", at=120_000), 380 * S)
    [resolved] = d.due(430 * S)
    assert ("a", "resolved") in _statuses(resolved)
    assert "a" not in d.groups[resolved.group_key].alerts


def test_replayed_and_older_transitions_change_nothing() -> None:
    d = Dispatcher(_spec())
    t = _t("a", at=120_000)
    assert d.ingest(t, 0) and not d.ingest(t, 1)
    assert not d.ingest(_t("a", at=60_000), 2)
    assert len(d.due(10 * S)) == 1


def test_resolved_before_first_flush_is_not_notified() -> None:
    d = Dispatcher(_spec())
    d.ingest(_t("a"), 0)
    d.ingest(_t("a", "normal", "firing", at=120_000), 1 * S)
    assert d.due(10 * S) == [] and d.groups == {}


def test_routes_continue_and_default() -> None:
    spec = _spec(
        routes=[
            {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True},
            {"matchers": ["team=~web|shop"], "receiver": "web"},
            {"matchers": ["team=web"], "receiver": "pager"},
        ]
    )
    d = Dispatcher(spec)
    d.ingest(_t("crit", severity="critical", team="web", country="de"), 0)
    d.ingest(_t("plain", rule="other"), 0)
    d.ingest(_t("shop", rule="shop_rule", team="shop"), 0)
    got = sorted((n.receiver, tuple(a.instance for a in n.alerts)) for n in d.due(10 * S))
    assert got == [
        ("default", ("plain",)),
        ("pager", ("crit",)),
        ("web", ("crit",)),
        ("web", ("shop",)),
    ]


def test_inhibition_needs_equal_labels_and_a_firing_source() -> None:
    d = Dispatcher(_spec(group_by=["..."]))
    d.ingest(_t("crit", severity="critical", rule="down", country="de"), 0)
    d.ingest(_t("warn_de", country="de"), 0)
    d.ingest(_t("warn_fr", country="fr"), 0)
    sent = {a.instance for n in d.due(10 * S) for a in n.alerts}
    assert sent == {"crit", "warn_fr"}
    d.ingest(
        _t("crit", "normal", "firing", at=120_000, severity="critical", rule="down", country="de"),
        20 * S,
    )
    sent = {(a.instance, a.status) for n in d.due(70 * S) for a in n.alerts}
    assert sent == {("crit", "resolved"), ("warn_de", "firing")}


def test_mute_interval_holds_notifications_back() -> None:
    spec = _spec(mute_time_intervals=["weekends"])
    saturday = 1_767_398_400_000  # 2026-01-03T00:00:00Z, a Saturday
    d = Dispatcher(spec)
    d.ingest(_t("a"), saturday)
    assert d.due(saturday + 10 * S) == []
    monday = saturday + 2 * 86_400_000
    [note] = d.due(monday)
    assert _statuses(note) == [("a", "firing")]


def test_time_interval_in_a_time_zone() -> None:
    iv = TimeInterval.model_validate(
        {
            "name": "nights",
            "time_zone": "Europe/Berlin",
            "times": [{"start": "22:00", "end": "24:00"}],
        }
    )
    assert iv.contains(1_767_222_000_000 - 3_600_000)  # 2025-12-31T22:00Z is 23:00 in Berlin
    assert not iv.contains(1_767_222_000_000 - 4 * 3_600_000)


def test_silences_drop_alerts_and_acks_stop_only_repeats() -> None:
    muted = {"b"}
    acked: set[str] = set()
    d = Dispatcher(
        _spec(),
        silenced=lambda tenant, labels, now: labels.get("country") in muted,
        acked=lambda tenant, a, now: a.instance in acked,
    )
    d.ingest(_t("a", country="a"), 0)
    d.ingest(_t("b", country="b"), 0)
    [note] = d.due(10 * S)
    assert _statuses(note) == [("a", "firing")]
    acked.add("a")
    assert d.due(370 * S) == []  # the repeat is held back
    d.ingest(_t("c", country="c"), 380 * S)
    [change] = d.due(430 * S)  # a change is still told, with the acked alert in it
    assert [i for i, _ in _statuses(change)] == ["a", "c"]


def test_group_state_round_trips_and_dedup_key_is_stable() -> None:
    d = Dispatcher(_spec())
    d.ingest(_t("a"), 0)
    copy = Dispatcher(
        _spec(), groups={k: Group.from_json(g.to_json()) for k, g in d.groups.items()}
    )
    [n1] = d.due(10 * S)
    [n2] = copy.due(11 * S)
    assert n1.dedup_key == n2.dedup_key
    assert Notification.from_dict(n1.to_dict()) == n1
    assert isinstance(n1.alerts[0], GroupAlert)


def test_notification_problems_name_file_and_line() -> None:
    text = (
        BASE_SPEC
        + """
notifications:
  receivers:
    - name: ops
      webhook: {url: "https://x.example/h", secret: inline}
    - name: ops
  route:
    receiver: nobody
    routes:
      - matchers: ["team~~x"]
      - receiver: ops
        mute_time_intervals: [never]
  time_intervals:
    - {name: bad, time_zone: Mars/Olympus}
"""
    )
    with pytest.raises(SpecError) as err:
        parse_spec(text, source="s.yaml")
    message = str(err.value)
    assert "s.yaml:11: notifications.receivers[0].webhook.secret: Extra inputs" in message
    assert "s.yaml:11: notifications.receivers[0].webhook.secret_env: Field required" in message
    assert "routes[0].matchers[0]" in message and "s.yaml:16" in message
    assert "s.yaml:20: notifications.time_intervals[0].time_zone" in message
    fixed = text.replace("secret: inline", "secret_env: OPS_SECRET").replace(
        '"team~~x"', '"team=x"'
    )
    fixed = fixed.replace("Mars/Olympus", "UTC")
    with pytest.raises(SpecError) as err:
        parse_spec(fixed, source="s.yaml")
    message = str(err.value)
    assert "s.yaml:12: notifications.receivers[1].name: receiver 'ops' is defined twice" in message
    assert "s.yaml:14: notifications.route.receiver: unknown receiver 'nobody'" in message
    assert (
        "s.yaml:18: notifications.route.routes[1].mute_time_intervals[0]: unknown time" in message
    )


def test_legacy_webhook_setting_becomes_a_receiver_and_secrets_come_from_the_environment(
    tmp_path: Any,
) -> None:
    from riffle.config.notifications import NotificationConfigError
    from riffle.config.settings import Settings
    from riffle.dataflows.notifier.legacy import LEGACY_SECRET_ENV, notifications_for
    from riffle.dataflows.notifier.run import build_channels
    from riffle.sinks.channels.webhook import WebhookChannel

    spec = parse_spec(BASE_SPEC)
    settings = Settings(alert_webhook_url="http://127.0.0.1:9/hook", alert_webhook_secret="k")
    legacy = notifications_for(spec, settings)
    assert legacy is not None and legacy.route.group_by == ["..."]
    [channel] = build_channels(legacy, {LEGACY_SECRET_ENV: "k"})["webhook"]
    assert isinstance(channel, WebhookChannel) and channel.secret == b"k"
    assert notifications_for(spec, Settings()) is None
    with pytest.raises(NotificationConfigError, match=LEGACY_SECRET_ENV):
        build_channels(legacy, {})


def test_two_transitions_at_one_event_time_replay_as_no_ops() -> None:
    d = Dispatcher(_spec())
    nodata = _t("a", "nodata", "firing", at=120_000)
    back = _t("a", "normal", "nodata", at=120_000)
    assert d.ingest(nodata, 0) and d.ingest(back, 0)
    assert not d.ingest(nodata, 1) and not d.ingest(back, 1)
    assert d.seen["a"] == (120_000, [nodata.transition_id, back.transition_id])


def test_slack_and_email_layouts() -> None:
    from riffle.sinks.channels.email import render
    from riffle.sinks.channels.slack import MAX_ALERTS, payload

    d = Dispatcher(_spec(group_wait="0s"))
    for i in range(MAX_ALERTS + 3):
        d.ingest(_t(f"i{i:02d}", country=f"c{i}"), 0)
    [note] = d.due(0)
    body = payload(note, "#ops")
    assert body["channel"] == "#ops" and body["text"].startswith("[FIRING:13] alertname=views_high")
    sections = [b for b in body["blocks"] if b["type"] == "section"]
    assert len(sections) == MAX_ALERTS + 1 and sections[-1]["text"]["text"] == "and 3 more"
    assert note.dedup_key in body["blocks"][-1]["elements"][0]["text"]
    msg = render(note, "riffle@example.test", ["a@example.test"])
    assert msg["Subject"] == "[FIRING:13] alertname=views_high"
    assert msg["Message-ID"] == f"<{note.dedup_key}@riffle>"
    for i in range(MAX_ALERTS + 3):
        d.ingest(_t(f"i{i:02d}", "normal", "firing", at=120_000, country=f"c{i}"), 1)
    [gone] = d.due(600_000)
    assert gone.status == "resolved"
    assert render(gone, "r@x.test", ["a@x.test"])["Subject"].startswith("[RESOLVED:13]")
    assert payload(gone)["text"].startswith("[RESOLVED:13]")


def test_a_routing_tree_inherits_from_parents_and_falls_back_to_them() -> None:
    spec = _spec(
        routes=[
            {
                "matchers": ["team=web"],
                "receiver": "web",
                "group_wait": "0s",
                "routes": [{"matchers": ["severity=critical"], "receiver": "pager"}],
            }
        ]
    )
    d = Dispatcher(spec)
    assert [r.group_wait_ms for r in d.routes] == [10_000, 0, 0]  # 0s is inherited as 0s
    d.ingest(_t("page", severity="critical", team="web", country="de"), 0)
    d.ingest(_t("chat", rule="slow", team="web", country="fr"), 0)
    d.ingest(_t("rest", rule="other", country="it"), 0)
    got = sorted((n.receiver, n.alerts[0].instance) for n in d.due(0))
    assert got == [("pager", "page"), ("web", "chat")]  # the default route waits 10s
    assert [(n.receiver, n.alerts[0].instance) for n in d.due(10 * S)] == [("default", "rest")]


def test_problems_in_a_nested_route_name_their_line() -> None:
    text = (
        BASE_SPEC
        + """
notifications:
  receivers: [{name: ops}]
  route:
    receiver: ops
    routes:
      - matchers: [team=web]
        routes:
          - receiver: nobody
"""
    )
    with pytest.raises(
        SpecError, match=r"s.yaml:15: notifications.route.routes\[0\].routes\[0\].receiver: unknown"
    ):
        parse_spec(text, source="s.yaml")


def test_the_notifier_refuses_to_run_without_receivers() -> None:
    from riffle.config.settings import Settings
    from riffle.dataflows.notifier.run import run_notifier
    from riffle.dataflows.notifier.service import NotifierError

    with pytest.raises(NotifierError, match="no notifications: section"):
        run_notifier(Settings())


def test_active_time_intervals_hold_notifications_outside_them() -> None:
    spec = _spec(active_time_intervals=["weekends"])
    friday = 1_767_398_400_000 - 86_400_000  # 2026-01-02T00:00:00Z
    d = Dispatcher(spec)
    d.ingest(_t("a"), friday)
    assert d.due(friday + 10 * S) == []
    [note] = d.due(friday + 86_400_000)  # Saturday
    assert _statuses(note) == [("a", "firing")]
    with pytest.raises(SpecError, match=r"active_time_intervals\[0\]: unknown time interval"):
        parse_spec(
            BASE_SPEC
            + "notifications:\n  receivers: [{name: x}]\n"
            + "  route: {receiver: x, active_time_intervals: [never]}\n"
        )


def test_webhook_body_truncates_to_max_alerts() -> None:
    import orjson

    from riffle.sinks.channels.webhook import body

    d = Dispatcher(_spec(group_wait="0s"))
    for i in range(5):
        d.ingest(_t(f"i{i}", country=f"c{i}"), 0)
    [note] = d.due(0)
    full = orjson.loads(body(note))
    assert len(full["alerts"]) == 5 and full["truncated_alerts"] == 0
    cut = orjson.loads(body(note, 2))
    assert [a["instance"] for a in cut["alerts"]] == ["i0", "i1"] and cut["truncated_alerts"] == 3
    assert cut["dedup_key"] == note.dedup_key
