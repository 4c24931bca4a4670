"""The push to an existing Alertmanager (``POST /api/v2/alerts``), for teams that run one.

Alertmanager treats a firing alert without news as resolved once its ``endsAt``
passes, so clients re-send firing alerts (Prometheus does it every evaluation).
Here a firing notification is pushed with ``endsAt = now + hold_s`` and
:meth:`AlertmanagerChannel.resend` re-pushes every instance that is still
Firing or Recovering (from :class:`~sinks.alert_store.RedisAlerts`); call it at
an interval shorter than ``hold_s``. A resolved notification is pushed with
``endsAt`` now, which resolves the alert at once. NoData is pushed as firing
with the label ``alertstate="nodata"``.

Alertmanager does its own grouping, inhibition, silencing and de-duplication
(by label set); Riffle's silences are applied too when ``silenced`` is given.
Retries and dead letters work like the webhook's.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from operators.alerts import AlertTransition
from sinks.webhook import DeadLetterHook, RetryableWebhookError, WebhookError, status_of

log = structlog.get_logger(__name__)


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


class AlertmanagerChannel:
    """Pushes notifications to one Alertmanager at ``url`` (e.g. ``http://am:9093``)."""

    def __init__(
        self,
        url: str,
        *,
        hold_s: float = 900.0,
        timeout_s: float = 5.0,
        attempts: int = 5,
        backoff_s: float = 0.5,
        generator_url: str = "",
        dead_letter: DeadLetterHook | None = None,
        silenced: Callable[[AlertTransition], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"an Alertmanager URL is http:// or https://, not {url!r}")
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.hold_s = hold_s
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.generator_url = generator_url
        self.dead_letter = dead_letter
        self.silenced = silenced
        self.clock = clock

    def payload(
        self,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        status: str,
        active_at: int | None,
        at: int,
    ) -> dict[str, Any]:
        """One alert of Alertmanager's v2 API."""
        now_ms = self.clock() * 1000
        labels = dict(labels)
        if status == "nodata":
            labels["alertstate"] = "nodata"
        alert: dict[str, Any] = {
            "labels": labels,
            "annotations": dict(annotations),
            "startsAt": _iso(active_at if active_at is not None else at),
            "endsAt": _iso(now_ms if status == "resolved" else now_ms + self.hold_s * 1000),
        }
        if self.generator_url:
            alert["generatorURL"] = self.generator_url
        return alert

    def notify(self, items: Sequence[AlertTransition]) -> int:
        """Push the notifiable, unsilenced transitions in one request; returns how many."""
        batch: list[tuple[AlertTransition, dict[str, Any]]] = []
        for t in items:
            status = status_of(t)
            if status is None or (self.silenced is not None and self.silenced(t)):
                continue
            alert = self.payload(dict(t.labels), dict(t.annotations), status, t.active_at, t.at)
            batch.append((t, alert))
        if not batch:
            return 0
        try:
            self._push([a for _, a in batch])
        except WebhookError as exc:
            log.warning("alertmanager_dead_letter", count=len(batch), reason=str(exc))
            if self.dead_letter is not None:
                for t, _ in batch:
                    self.dead_letter(t, f"alertmanager: {exc}")
            return 0
        return len(batch)

    def resend(self, active: Iterable[Mapping[str, Any]]) -> int:
        """Re-push instances still Firing or Recovering (rows of ``RedisAlerts.instances``)."""
        alerts = [
            self.payload(a["labels"], a["annotations"], "firing", a["active_at"], a["at"])
            for a in active
            if a["to_state"] in ("firing", "recovering")
        ]
        if alerts:
            self._push(alerts)
        return len(alerts)

    def _push(self, alerts: list[dict[str, Any]]) -> None:
        body = orjson.dumps(alerts)
        for attempt in Retrying(
            retry=retry_if_exception_type(RetryableWebhookError),
            wait=wait_exponential_jitter(multiplier=self.backoff_s, max=30),
            stop=stop_after_attempt(self.attempts),
            reraise=True,
        ):
            with attempt:
                # The scheme is checked in __init__ (http or https only).
                request = urllib.request.Request(  # noqa: S310
                    self.url,
                    data=body,
                    method="POST",
                    headers={"Content-Type": "application/json"},
                )
                try:
                    with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:  # noqa: S310
                        reply.read()
                except urllib.error.HTTPError as exc:
                    retry = exc.code in (408, 429) or exc.code >= 500
                    kind = RetryableWebhookError if retry else WebhookError
                    raise kind(f"{self.url} answered {exc.code}", retry) from exc
                except (urllib.error.URLError, TimeoutError, OSError) as exc:
                    raise RetryableWebhookError(f"{self.url} unreachable: {exc}", True) from exc
