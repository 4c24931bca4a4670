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
        - name: weekends              # Alertmanager's fields (see TimePeriod)
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

import calendar
import os
import re
import zoneinfo
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from riffle.config.base import Strict
from riffle.config.durations import Duration
from riffle.config.errors import RiffleError

MatchOp = Literal["=", "!=", "=~", "!~"]
_ENV = r"^[A-Za-z_][A-Za-z0-9_]*$"
_MATCHER_TEXT = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"(.*)"|(.*?))\s*$')
WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
"""Alertmanager's week: Sunday is day 0, and a weekday range runs Sunday → Saturday."""
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)


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


class Matcher(Strict):
    """One condition on one label (Alertmanager's rule: a missing label is ``""``;
    regular expressions match the whole value)."""

    name: str = Field(min_length=1, max_length=128)
    value: str = Field(max_length=1024)
    op: MatchOp = "="

    @model_validator(mode="after")
    def _regex_compiles(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"matcher {self.name!r}: not a regular expression: {exc}") from exc
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
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


_HHMM = re.compile(r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$")
_SEXAGESIMAL = " (YAML reads an unquoted 1:5 as the number 65: quote ranges, '1:5')"


def _clock(value: Any) -> Any:
    """``"HH:MM"`` (``"24:00"`` ends a day) → minutes since midnight, as Alertmanager."""
    text = value if isinstance(value, str) else ""
    if _HHMM.match(text) is None:
        hint = " (YAML reads an unquoted 22:00 as a number: quote it)" if text != value else ""
        raise ValueError(f'{value!r} is not a quoted time of day "HH:MM" (00:00 to 24:00){hint}')
    hours, _, minutes = text.partition(":")
    return int(hours) * 60 + int(minutes)


Minute = Annotated[int, BeforeValidator(_clock)]


class TimeRange(Strict):
    """``[start, end)`` in minutes of the local day (``end`` may be ``"24:00"``, 1440).

    Spelled ``start_time``/``end_time`` as in Alertmanager (``start``/``end`` also work).
    A range that crosses midnight is refused, as in Alertmanager: write two."""

    start: Minute = Field(validation_alias=AliasChoices("start_time", "start"))
    end: Minute = Field(validation_alias=AliasChoices("end_time", "end"))

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end <= self.start:
            raise ValueError(
                f"a time range ends after it starts: {_hhmm(self.start)}-{_hhmm(self.end)} is"
                f" empty or crosses midnight (write {_hhmm(self.start)}-24:00 and"
                f" 00:00-{_hhmm(self.end)})"
            )
        return self

    def contains(self, minute: int) -> bool:
        """Whether the minute of the day ``minute`` is in ``[start, end)``."""
        return self.start <= minute < self.end


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _members(value: Any, what: str) -> tuple[str, str]:
    """An item ``x`` or ``x:y`` (lower-cased) → its two ends, as Alertmanager splits it."""
    scalar = isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
    if not scalar:
        raise ValueError(f"{value!r} is not a {what} or a {what} range like a:b")
    parts = str(value).lower().split(":")
    if len(parts) > 2:
        raise ValueError(f"{value!r}: a range is first:last")
    return parts[0], parts[-1]


def _number(text: str, original: Any, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{original!r}: {text!r} is not a valid {what}") from None


def _weekday_range(value: Any) -> tuple[int, int]:
    """``monday`` or ``monday:friday`` → (1, 5); Sunday is 0 and a range runs Sunday →
    Saturday, as in Alertmanager (``saturday:sunday`` is refused: list both days)."""
    ends = _members(value, "weekday")
    days: list[int] = []
    for name in ends:
        if name not in WEEKDAYS:
            raise ValueError(f"{value!r}: {name!r} is not a weekday ({', '.join(WEEKDAYS)})")
        days.append(WEEKDAYS.index(name))
    if days[0] > days[1]:
        raise ValueError(
            f"{value!r}: a weekday range runs from Sunday towards Saturday (list the days)"
        )
    return days[0], days[1]


def _day_of_month_range(value: Any) -> tuple[int, int]:
    """``1``, ``-1`` (the last day), ``1:5``, ``-3:-1``, ``15:-1`` → the two ends; refused as
    Alertmanager refuses: 0 or beyond ±31, a negative start with a positive end, and a
    range empty in every month (ends compared as in a 28-day month)."""
    ends = _members(value, "day of the month")
    begin, end = (_number(x, value, "day of the month") for x in ends)
    for day in (begin, end):
        if day == 0 or not -31 <= day <= 31:
            hint = _SEXAGESIMAL if isinstance(value, int) else ""
            raise ValueError(f"{day} is not a valid day of the month: 1..31 or -31..-1{hint}")
    if begin < 0 < end:
        raise ValueError(f"{value!r}: the end day must be negative if the start day is")
    if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
        raise ValueError(f"{value!r}: end day {end} is always before start day {begin}")
    return begin, end


def _month_range(value: Any) -> tuple[int, int]:
    """``march``, ``3``, ``january:march``, ``1:3`` → (first, last) with January 1."""
    ends = _members(value, "month")
    months = [
        MONTHS.index(x) + 1 if x in MONTHS else _number(x, value, "month (a name or 1..12)")
        for x in ends
    ]
    for month in months:
        if not 1 <= month <= 12:
            hint = _SEXAGESIMAL if isinstance(value, int) else ""
            raise ValueError(f"{value!r}: {month} is not a month (1..12){hint}")
    if months[0] > months[1]:
        raise ValueError(
            f"{value!r}: end month {MONTHS[months[1] - 1]} is before start month"
            f" {MONTHS[months[0] - 1]}"
        )
    return months[0], months[1]


def _year_range(value: Any) -> tuple[int, int]:
    """``2026`` or ``2026:2027`` → (first, last)."""
    begin, end = (_number(x, value, "year") for x in _members(value, "year"))
    if begin > end:
        raise ValueError(f"{value!r}: end year {end} is before start year {begin}")
    return begin, end


WeekdayRange = Annotated[tuple[int, int], BeforeValidator(_weekday_range)]
DayOfMonthRange = Annotated[tuple[int, int], BeforeValidator(_day_of_month_range)]
MonthRange = Annotated[tuple[int, int], BeforeValidator(_month_range)]
YearRange = Annotated[tuple[int, int], BeforeValidator(_year_range)]


def _day_in(day: int, days_in_month: int, span: tuple[int, int]) -> bool:
    """Alertmanager's day-of-month test: negative ends count back from the month's end
    (-1 is its last day); a start beyond the month never matches."""
    begin, end = (d if d > 0 else days_in_month + d + 1 for d in span)
    return begin <= day <= end


class TimePeriod(Strict):
    """One of Alertmanager's ``time_intervals`` entries: it contains an instant when every
    field given holds in ``time_zone`` (``location``, IANA; default UTC); a field holds
    when any of its entries does; a field left out holds always.

    ``times`` compare the local minute of the day (``end`` excluded); ``weekdays`` run
    Sunday (0) to Saturday (6); ``days_of_month`` may count back from the month's end;
    ``months`` take names or numbers; all ranges ``first:last`` include both ends."""

    time_zone: str = Field("UTC", validation_alias=AliasChoices("location", "time_zone"))
    times: list[TimeRange] | None = None
    weekdays: list[WeekdayRange] | None = None
    days_of_month: list[DayOfMonthRange] | None = None
    months: list[MonthRange] | None = None
    years: list[YearRange] | None = None

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin)") from exc
        return value

    def contains(self, now_ms: int) -> bool:
        """Whether the wall-clock instant ``now_ms`` (Unix ms) falls in the period."""
        local = datetime.fromtimestamp(now_ms // 1000, tz=zoneinfo.ZoneInfo(self.time_zone))
        minute = local.hour * 60 + local.minute
        if self.times is not None and not any(r.contains(minute) for r in self.times):
            return False
        if self.days_of_month is not None:
            length = calendar.monthrange(local.year, local.month)[1]
            if not any(_day_in(local.day, length, span) for span in self.days_of_month):
                return False
        weekday = (local.weekday() + 1) % 7
        checks = (
            (self.months, local.month),
            (self.weekdays, weekday),
            (self.years, local.year),
        )
        return all(
            spans is None or any(a <= actual <= b for a, b in spans) for spans, actual in checks
        )


class TimeInterval(TimePeriod):
    """A named interval, as Alertmanager's: either ``time_intervals`` (a list of
    :class:`TimePeriod`; the interval contains an instant any of them contains — none:
    never) or, as a shorthand for one period, its fields directly (none: always)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]{1,64}$")
    time_intervals: list[TimePeriod] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> TimeInterval:
        flat = self.model_fields_set & set(TimePeriod.model_fields)
        if self.time_intervals is not None and flat:
            raise ValueError(
                f"give either time_intervals or {', '.join(sorted(flat))} directly, not both"
            )
        return self

    def contains(self, now_ms: int) -> bool:
        """Whether the wall-clock instant ``now_ms`` (Unix ms) falls in the interval."""
        if self.time_intervals is None:
            return super().contains(now_ms)
        return any(p.contains(now_ms) for p in self.time_intervals)


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
