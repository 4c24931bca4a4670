"""Notification routing in the spec: the ``notifications:`` section of a pipeline spec.

Modelled on Alertmanager's configuration::

    notifications:
      receivers:                      # where notifications go
        - name: oncall
          webhook: {url: https://hooks.example/riffle, secret_env: ONCALL_HOOK_SECRET}
          slack: {url_env: SLACK_WEBHOOK_URL}
          email: {host: smtp.example, port: 587, from: riffle@example, to: [ops@example]}
          alertmanager: {url: http://alertmanager:9093}
      route:                          # the default route and its ordered child routes
        receiver: oncall
        group_by: [alertname]
        group_wait: 30s
        group_interval: 5m
        repeat_interval: 4h
        routes:                       # a tree: each route may have routes
          - matchers: ['severity="critical"']
            receiver: pager
            continue: true
            mute_time_intervals: [weekends]
      inhibit_rules:
        - source_matchers: [severity=critical]
          target_matchers: [severity=warning]
          equal: [alertname]
      time_intervals:
        - name: weekends              # Alertmanager's fields (config.time_intervals)
          time_intervals:
            - {location: Europe/Berlin, weekdays: [saturday, sunday]}
            - location: Europe/Berlin     # the evening of each month's last day
              days_of_month: [-1]
              times: [{start_time: '18:00', end_time: '24:00'}]

Secrets are never written inline: a channel names the environment variable that
holds them (``secret_env``, ``url_env``, ``password_env``); the notifier reads
them when it starts (:func:`resolve_env`). Cross-references (unknown receivers,
time intervals) are reported by :func:`notification_problems`, which
:func:`config.spec.parse_spec` turns into ``file:line`` errors.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

import re2
from pydantic import BeforeValidator, Field, model_validator

from riffle.config.base import Strict
from riffle.config.durations import Duration
from riffle.config.errors import RiffleError
from riffle.config.time_intervals import TimeInterval

MatchOp = Literal["=", "!=", "=~", "!~"]
_ENV = r"^[A-Za-z_][A-Za-z0-9_]*$"
_MATCHER_TEXT = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"(.*)"|(.*?))\s*$')


class NotificationConfigError(RiffleError):
    """The notification config cannot be used as is (e.g. a secret's variable is unset)."""


def _matcher_text(value: Any) -> Any:
    """``'severity="critical"'`` or ``severity=~warn.*`` → ``{name, op, value}``."""
    if not isinstance(value, str):
        return value
    found = _MATCHER_TEXT.match(value)
    if found is None:
        raise ValueError(f"{value!r} is not a matcher like name=value, name!=v, name=~re, name!~re")
    name, op, quoted, bare = found.groups()
    return {"name": name, "op": op, "value": quoted if quoted is not None else bare}


@functools.lru_cache(maxsize=1024)
def _linear_regex(pattern: str) -> Any:
    """``pattern`` compiled by RE2: matching time is linear in the input, whatever the
    pattern (``(a+)+$`` included); ``re2.error`` for what RE2 does not support
    (backreferences, lookaround)."""
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


def _regex_problem(exc: Exception) -> str:
    reason = exc.args[0] if exc.args else exc
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


class Matcher(Strict):
    """One condition on one label (Alertmanager's rule: a missing label is ``""``;
    regular expressions match the whole value, run by RE2 in linear time)."""

    name: str = Field(min_length=1, max_length=128, pattern=_ENV)
    value: str = Field(max_length=1024)
    op: MatchOp = "="

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                _linear_regex(self.value)
            except re2.error as exc:
                raise ValueError(
                    f"matcher {self.name!r}: not a regular expression RE2 runs "
                    f"(no backreferences or lookaround): {_regex_problem(exc)}"
                ) from exc
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = _linear_regex(self.value).fullmatch(actual) is not None
        return found if self.op == "=~" else not found


SpecMatcher = Annotated[Matcher, BeforeValidator(_matcher_text)]
"""A matcher in the spec: the object form or Alertmanager's text form."""


def matches_all(matchers: list[Matcher] | tuple[Matcher, ...], labels: Mapping[str, str]) -> bool:
    """Every matcher holds (true for no matchers)."""
    return all(m.matches(labels) for m in matchers)


class _Delivery(Strict):
    timeout: Duration = timedelta(seconds=5)
    max_attempts: int = Field(5, ge=1, le=20)
    """Tries per notification before it is dead-lettered."""
    backoff: Duration = timedelta(milliseconds=500)
    """First wait between tries; it doubles (with jitter) up to 30 s."""


def _one_of(value: str | None, env: str | None, what: str) -> None:
    if (value is None) == (env is None):
        raise ValueError(f"give exactly one of {what} and {what}_env")


class WebhookConfig(_Delivery):
    """A signed JSON POST (``X-Riffle-Signature``, see ``sinks.channels.webhook``)."""

    url: str | None = Field(None, pattern=r"^https?://.+")
    url_env: str | None = Field(None, pattern=_ENV)
    secret_env: str = Field(pattern=_ENV)
    """Variable holding the HMAC-SHA256 key."""
    max_alerts: int = Field(0, ge=0)
    """Most alerts in one body (0: all); the rest are counted in ``truncated_alerts``."""

    @model_validator(mode="after")
    def _url(self) -> WebhookConfig:
        _one_of(self.url, self.url_env, "url")
        return self


class SlackConfig(_Delivery):
    """A Slack-compatible incoming webhook (its URL is a secret: prefer ``url_env``)."""

    url: str | None = Field(None, pattern=r"^https?://.+")
    url_env: str | None = Field(None, pattern=_ENV)
    channel: str | None = None
    """Overrides the webhook's channel where the receiver allows it."""

    @model_validator(mode="after")
    def _url(self) -> SlackConfig:
        _one_of(self.url, self.url_env, "url")
        return self


class EmailConfig(_Delivery):
    """Plain-text mail over SMTP."""

    host: str = Field(min_length=1)
    port: int = Field(25, ge=1, le=65535)
    sender: str = Field(alias="from", min_length=3)
    to: list[str] = Field(min_length=1)
    starttls: bool = False
    username: str | None = None
    password_env: str | None = Field(None, pattern=_ENV)


class AlertmanagerConfig(_Delivery):
    """A push to an existing Alertmanager's ``/api/v2/alerts``."""

    url: str = Field(pattern=r"^https?://.+")
    hold: Duration = timedelta(minutes=15)
    """``endsAt`` of a firing alert lies this far ahead; Riffle re-pushes before it passes."""
    generator_url: str = Field("", pattern=r"^(https?://.+)?$")
    """Where Alertmanager's UI links an alert back to (e.g. Riffle's dashboard)."""


class ReceiverSpec(Strict):
    """A named set of channels; a notification routed here goes to each of them."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    webhook: WebhookConfig | None = None
    slack: SlackConfig | None = None
    email: EmailConfig | None = None
    alertmanager: AlertmanagerConfig | None = None

    @property
    def channels(self) -> dict[str, _Delivery]:
        """The configured channels by kind."""
        out: dict[str, _Delivery] = {}
        for kind in ("webhook", "slack", "email", "alertmanager"):
            config = getattr(self, kind)
            if config is not None:
                out[kind] = config
        return out


class ChildRoute(Strict):
    """A route below another; unset ``receiver``, ``group_by`` and timings are inherited
    from its parent (mute intervals are not, as in Alertmanager)."""

    matchers: list[SpecMatcher] = Field(default_factory=list)
    receiver: str | None = None
    continue_: bool = Field(False, alias="continue")
    """Also try the routes after this one when it matches."""
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    mute_time_intervals: list[str] = Field(default_factory=list)
    """While the wall clock is in one of these, the route's groups do not notify."""
    active_time_intervals: list[str] = Field(default_factory=list)
    """When given, the route's groups notify only while the clock is in one of these."""
    routes: list[ChildRoute] = Field(default_factory=list)
    """Tried in order once this route matches; when none matches, this route takes it."""


class RootRoute(Strict):
    """The default route: where alerts no child route takes go, and the defaults."""

    receiver: str
    group_by: list[str] = Field(default_factory=lambda: ["alertname"])
    """Labels whose values form a group; ``["..."]``: every label (one group per alert)."""
    group_wait: Duration = timedelta(seconds=30)
    group_interval: Duration = timedelta(minutes=5)
    repeat_interval: Duration = timedelta(hours=4)
    mute_time_intervals: list[str] = Field(default_factory=list)
    """While the wall clock is in one of these, the route's groups do not notify."""
    active_time_intervals: list[str] = Field(default_factory=list)
    """When given, the route's groups notify only while the clock is in one of these."""
    routes: list[ChildRoute] = Field(default_factory=list)


class InhibitRule(Strict):
    """A firing alert matching ``source_matchers`` mutes alerts matching
    ``target_matchers`` that have the same values of the ``equal`` labels."""

    source_matchers: list[SpecMatcher] = Field(min_length=1)
    target_matchers: list[SpecMatcher] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)


class NotificationsSpec(Strict):
    """The whole ``notifications:`` section."""

    receivers: list[ReceiverSpec] = Field(min_length=1)
    route: RootRoute
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)
    time_intervals: list[TimeInterval] = Field(default_factory=list)

    def receiver(self, name: str) -> ReceiverSpec | None:
        return next((r for r in self.receivers if r.name == name), None)

    def interval(self, name: str) -> TimeInterval | None:
        return next((t for t in self.time_intervals if t.name == name), None)


def notification_problems(
    spec: NotificationsSpec | None,
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Cross-references of the section: receivers and time intervals named but not defined,
    duplicate names."""
    if spec is None:
        return
    where: tuple[str | int, ...] = ("notifications",)
    names = [r.name for r in spec.receivers]
    for i, name in enumerate(names):
        if name in names[:i]:
            yield (*where, "receivers", i, "name"), f"receiver {name!r} is defined twice"
    intervals = [t.name for t in spec.time_intervals]
    for i, name in enumerate(intervals):
        if name in intervals[:i]:
            yield (*where, "time_intervals", i, "name"), f"time interval {name!r} is defined twice"
    known = ", ".join(names)
    if spec.route.receiver not in names:
        yield (
            (*where, "route", "receiver"),
            f"unknown receiver {spec.route.receiver!r} (known: {known})",
        )
    nodes: list[tuple[tuple[str | int, ...], RootRoute | ChildRoute]] = [
        ((*where, "route"), spec.route)
    ]
    pending = [((*where, "route", "routes", i), c) for i, c in enumerate(spec.route.routes)]
    while pending:
        loc, child = pending.pop(0)
        nodes.append((loc, child))
        pending += [((*loc, "routes", i), c) for i, c in enumerate(child.routes)]
    for loc, node in nodes:
        receiver = node.receiver if isinstance(node, ChildRoute) else None
        group_by = node.group_by
        if receiver is not None and receiver not in names:
            yield (*loc, "receiver"), f"unknown receiver {receiver!r} (known: {known})"
        for field_name in ("mute_time_intervals", "active_time_intervals"):
            for j, name in enumerate(getattr(node, field_name)):
                if name not in intervals:
                    yield (
                        (*loc, field_name, j),
                        f"unknown time interval {name!r} (known: {', '.join(intervals) or 'none'})",
                    )
        if group_by is not None and "..." in group_by and len(group_by) > 1:
            yield (*loc, "group_by"), "'...' (every label) stands alone in group_by"


def resolve_env(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of a secret's variable; :class:`NotificationConfigError` when unset or empty."""
    value = (os.environ if environ is None else environ).get(name, "")
    if not value:
        raise NotificationConfigError(
            f"environment variable {name} (a notification secret) is unset"
        )
    return value
