"""The push to an existing Alertmanager (``POST /api/v2/alerts``), for teams that run one.

Alertmanager treats a firing alert without news as resolved once its ``endsAt``
passes, so clients re-send firing alerts (Prometheus does it every evaluation).
Here an active alert is pushed with ``endsAt = now + hold_s``, and
:meth:`AlertmanagerChannel.resend` re-pushes the alerts still active (the
notifier calls it every ``RIFFLE_NOTIFY_RESEND_SECONDS``, which must stay below
``hold``). A resolved alert is pushed with ``endsAt`` now, which resolves it at
once. NoData is pushed as firing with the label ``alertstate="nodata"``.

Alertmanager then does its own grouping, inhibition, silencing and
de-duplication (by label set); a route towards it should therefore use
``group_wait: 0s`` and ``group_by: ['...']`` so Riffle does not delay it twice.

Alertmanager takes alerts, not documents: a report sent here is refused (not
retryable), and the spec refuses a report whose receivers have no other channel.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from riffle.config.notifications import AlertmanagerConfig
from riffle.operators.notify.groups import GroupAlert, Notification
from riffle.sinks.channels.base import ChannelError, ReportMessage, check_url, http_post


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


class AlertmanagerChannel:
    """Pushes notifications to one Alertmanager at ``url`` (e.g. ``http://am:9093``)."""

    kind = "alertmanager"
    carries_reports = False

    def __init__(
        self,
        url: str,
        *,
        hold_s: float = 900.0,
        timeout_s: float = 5.0,
        attempts: int = 5,
        backoff_s: float = 0.5,
        generator_url: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = check_url(url, "Alertmanager").rstrip("/") + "/api/v2/alerts"
        self.hold_s = hold_s
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.generator_url = generator_url
        self.clock = clock

    @classmethod
    def from_config(cls, c: AlertmanagerConfig, environ: Mapping[str, str]) -> AlertmanagerChannel:
        return cls(
            c.url,
            hold_s=c.hold.total_seconds(),
            generator_url=c.generator_url,
            timeout_s=c.timeout.total_seconds(),
            attempts=c.max_attempts,
            backoff_s=c.backoff.total_seconds(),
        )

    def payload(self, a: GroupAlert) -> dict[str, Any]:
        """One alert of Alertmanager's v2 API."""
        now_ms = self.clock() * 1000
        labels = dict(a.labels)
        if a.status == "nodata":
            labels["alertstate"] = "nodata"
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": dict(a.annotations),
            "startsAt": _iso(a.starts_at),
            "endsAt": _iso(now_ms if not a.active else now_ms + self.hold_s * 1000),
        }
        if self.generator_url:
            alert["generatorURL"] = self.generator_url
        return alert

    def send(self, note: Notification) -> None:
        self._push([self.payload(a) for a in note.alerts])

    def send_report(self, report: ReportMessage) -> None:
        raise ChannelError("Alertmanager takes alerts, not reports", retryable=False)

    def resend(self, active: Iterable[GroupAlert]) -> int:
        """Re-push alerts that are still active, pushing their ``endsAt`` forward."""
        alerts = [self.payload(a) for a in active if a.active]
        if alerts:
            self._push(alerts)
        return len(alerts)

    def _push(self, alerts: list[dict[str, Any]]) -> None:
        http_post(
            self.url, orjson.dumps(alerts), {"Content-Type": "application/json"}, self.timeout_s
        )
