"""Cron on a tenant's wall clock, missed fire times, and the periods reports cover."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from riffle.config.errors import SpecError
from riffle.config.schedules import check_cron
from riffle.config.spec import parse_spec
from riffle.operators.schedule import latest_due, named_period, next_due, period_before

BERLIN = "Europe/Berlin"


def ms(*args: int, zone: str = BERLIN) -> int:
    return int(datetime(*args, tzinfo=ZoneInfo(zone)).timestamp() * 1000)  # type: ignore[misc]


def local(at: int, zone: str = BERLIN) -> str:
    return datetime.fromtimestamp(at / 1000, ZoneInfo(zone)).isoformat()


def fires(expr: str, start: int, n: int, zone: str = BERLIN) -> list[str]:
    out, at = [], start
    for _ in range(n):
        at = next_due(expr, zone, at)
        out.append(local(at, zone))
    return out


def test_a_daily_job_runs_once_when_the_clocks_go_back() -> None:
    # 25 Oct 2026: 03:00 CEST becomes 02:00 CET, so 02:30 happens twice.
    assert fires("30 2 * * *", ms(2026, 10, 24, 12), 3) == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_a_time_the_clock_skips_runs_after_the_jump() -> None:
    # 29 Mar 2026: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
    assert fires("30 2 * * *", ms(2026, 3, 28, 12), 2) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_a_daily_job_keeps_its_local_time_across_dst() -> None:
    times = fires("0 8 * * *", ms(2026, 3, 27, 12), 3)
    assert times == [
        "2026-03-28T08:00:00+01:00",
        "2026-03-29T08:00:00+02:00",
        "2026-03-30T08:00:00+02:00",
    ]


def test_missed_fire_times_collapse_into_the_newest() -> None:
    after = ms(2026, 12, 1, 8, 0)
    now = ms(2026, 12, 5, 9, 30)
    newest, count = latest_due("0 8 * * *", BERLIN, after, now)
    assert (local(newest or 0), count) == ("2026-12-05T08:00:00+01:00", 4)
    assert latest_due("0 8 * * *", BERLIN, newest or 0, now) == (None, 0)
    # A fire time exactly at now is due.
    assert latest_due("0 8 * * *", BERLIN, after, ms(2026, 12, 2, 8, 0))[1] == 1


def test_periods_follow_the_tenant_calendar() -> None:
    due = ms(2026, 3, 30, 8)
    start, end = period_before("day", due, BERLIN)
    assert (local(start), local(end)) == ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00")
    assert end - start == 23 * 3_600_000  # the short day
    start, end = period_before("week", due, BERLIN)
    assert (local(start), local(end)) == ("2026-03-23T00:00:00+01:00", "2026-03-30T00:00:00+02:00")
    start, end = period_before("month", due, BERLIN)
    assert (local(start), local(end)) == ("2026-02-01T00:00:00+01:00", "2026-03-01T00:00:00+01:00")
    assert period_before("24h", due, BERLIN) == (due - 86_400_000, due)


def test_named_periods() -> None:
    now = ms(2026, 12, 4, 15)
    assert named_period("last", "day", BERLIN, now) == (ms(2026, 12, 3), ms(2026, 12, 4))
    assert named_period("2026-12-01", "day", BERLIN, now) == (ms(2026, 12, 1), ms(2026, 12, 2))
    assert named_period("2026-W49", "week", BERLIN, now) == (ms(2026, 11, 30), ms(2026, 12, 7))
    assert named_period("2026-12", "month", BERLIN, now) == (ms(2026, 12, 1), ms(2027, 1, 1))
    assert named_period("2026-12-01/2026-12-02T06:00", "day", BERLIN, now) == (
        ms(2026, 12, 1),
        ms(2026, 12, 2, 6),
    )
    for bad in ("yesterday", "2026-12-02/2026-12-01", "2026-13"):
        with pytest.raises(ValueError, match="period"):
            named_period(bad, "day", BERLIN, now)
    with pytest.raises(ValueError, match="without an offset"):
        named_period("2026-12-01T00:00+01:00/2026-12-02", "day", BERLIN, now)


def test_cron_expressions_are_checked() -> None:
    assert check_cron("@daily") == "0 0 * * *"
    with pytest.raises(ValueError, match="not a cron expression"):
        check_cron("61 * * * *")


SPEC = """
version: 1
event_types: {page_view: {}}
dimensions: {country: {path: context.country}}
metrics:
  - {name: views, events: [page_view], aggregation: count, dimensions: [country]}
notifications:
  receivers:
    - {name: team, email: {host: smtp.x, from: r@x.test, to: [a@x.test]}}
    - {name: am, alertmanager: {url: "http://am:9093"}}
  route: {receiver: team}
reports:
"""


def test_reports_in_the_spec_are_checked_with_their_line() -> None:
    ok = parse_spec(
        SPEC + "  - {name: daily, schedule: '0 8 * * *', metrics: [views], receivers: [team]}\n"
    )
    assert ok.reports[0].period == "day"
    shapes = SPEC + (
        "  - {name: daily, schedule: '0 25 * * *', metrics: [views], receivers: [team]}\n"
        "  - {name: empty, schedule: '@daily', receivers: [team]}\n"
    )
    with pytest.raises(SpecError) as caught:
        parse_spec(shapes, "spec.yaml")
    text = str(caught.value)
    assert "spec.yaml:13: reports[0].schedule: Value error, not a cron expression" in text
    assert "spec.yaml:14: reports[1]: Value error, a report names a dashboard, metrics" in text
    references = SPEC + (
        "  - {name: daily, schedule: '@daily', metrics: [views], receivers: [team]}\n"
        "  - {name: weekly, schedule: '@weekly', metrics: [nope], top_by: device,"
        " receivers: [am, nobody]}\n"
        "  - {name: daily, schedule: '@daily', dashboard: shop, receivers: [team]}\n"
    )
    with pytest.raises(SpecError) as caught:
        parse_spec(references, "spec.yaml")
    text = str(caught.value)
    assert "spec.yaml:14: reports[1].metrics[0]: unknown metric 'nope'" in text
    assert "reports[1].top_by: no metric of the report has dimension 'device'" in text
    assert "reports[1].receivers[0]: receiver 'am' has no channel that takes reports" in text
    assert "reports[1].receivers[1]: unknown receiver 'nobody'" in text
    assert "spec.yaml:15: reports[2].name: report 'daily' is defined twice" in text
