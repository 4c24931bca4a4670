"""The webhook channel: one signed JSON POST per notification (a flush of one group).

Request::

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <dedup_key>
    X-Riffle-Timestamp: <unix seconds>
    X-Riffle-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>

    {"version": 2, "dedup_key": "...", "receiver": "...", "status": "firing" | "resolved",
     "tenant": "...", "group_key": "...", "group_labels": {...}, "common_labels": {...},
     "common_annotations": {...}, "seq": 0, "made_at": <ms>, "repeat": false,
     "truncated_alerts": 0,
     "alerts": [{"instance", "rule", "severity", "labels", "annotations",
                 "status": "firing" | "nodata" | "resolved", "starts_at", "at", "ends_at",
                 "value", "transition_id"}, ...]}

``dedup_key`` is stable across retries and restarts (see
:func:`operators.notify.groups.dedup_key`), so a receiver that remembers it sees each
notification once although delivery is at-least-once. A 2xx answer is success;
408, 429, 5xx, timeouts and connection errors are retryable
(:func:`sinks.channels.base.deliver`); other 4xx are not.

A report is posted the same way (signed, ``Idempotency-Key`` its dedup key)
with this body::

    {"version": 2, "kind": "report", "dedup_key": "...", "report": "<name>",
     "tenant": "...", "title": "...", "period": {"start": <ms>, "end": <ms>},
     "text": "<summary>", "link": "<dashboard share link>" | null,
     "figures": {...},
     "attachments": [{"filename": "x.pdf", "content_type": "application/pdf",
                      "size": <bytes>, "data_base64": "..."}]}
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping

import orjson

from riffle.config.notifications import WebhookConfig, resolve_env
from riffle.operators.notify.groups import Notification
from riffle.sinks.channels.base import ReportMessage, check_url, http_post

SIGNATURE_HEADER = "X-Riffle-Signature"
TIMESTAMP_HEADER = "X-Riffle-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does: constant-time comparison of the signature."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def body(note: Notification, max_alerts: int = 0) -> bytes:
    """The JSON the webhook posts; with ``max_alerts``, at most that many alerts (active
    ones first) and ``truncated_alerts``: how many were left out."""
    data = note.to_dict()
    alerts = data["alerts"]
    data["truncated_alerts"] = max(0, len(alerts) - max_alerts) if max_alerts else 0
    if max_alerts:
        data["alerts"] = alerts[:max_alerts]
    return orjson.dumps({"version": 2, **data})


def report_body(report: ReportMessage) -> bytes:
    """The JSON the webhook posts for a report (module doc)."""
    return orjson.dumps(
        {
            "version": 2,
            "kind": "report",
            "dedup_key": report.dedup_key,
            "report": report.report,
            "tenant": report.tenant,
            "title": report.title,
            "period": {"start": report.period_start, "end": report.period_end},
            "text": report.text,
            "link": report.link,
            "figures": report.figures,
            "attachments": [
                {
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "size": len(a.data),
                    "data_base64": base64.b64encode(a.data).decode(),
                }
                for a in report.attachments
            ],
        }
    )


class WebhookChannel:
    """Posts notifications and reports to one URL, signed with ``secret``."""

    kind = "webhook"
    carries_reports = True

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        timeout_s: float = 5.0,
        attempts: int = 5,
        backoff_s: float = 0.5,
        max_alerts: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = check_url(url, "webhook")
        self.max_alerts = max_alerts
        if not secret:
            raise ValueError("a webhook needs a signing secret")
        self.secret = secret
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.clock = clock

    @classmethod
    def from_config(cls, c: WebhookConfig, environ: Mapping[str, str]) -> WebhookChannel:
        return cls(
            c.url or resolve_env(c.url_env or "", environ),
            resolve_env(c.secret_env, environ).encode(),
            max_alerts=c.max_alerts,
            timeout_s=c.timeout.total_seconds(),
            attempts=c.max_attempts,
            backoff_s=c.backoff.total_seconds(),
        )

    def send(self, note: Notification) -> None:
        self._post(body(note, self.max_alerts), note.dedup_key)

    def send_report(self, report: ReportMessage) -> None:
        self._post(report_body(report), report.dedup_key)

    def _post(self, payload: bytes, dedup_key: str) -> None:
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": dedup_key,
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.secret, timestamp, payload),
        }
        http_post(self.url, payload, headers, self.timeout_s)
