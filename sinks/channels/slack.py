"""The Slack channel: a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat).

One message per notification: ``text`` (the fallback every client shows) and
Block Kit ``blocks`` — a header with the status and group, one section per alert
(at most :data:`MAX_ALERTS`, then a "and N more" line) and a context line with
the dedup key. Slack has no idempotency header: the dedup key is in the
message so a person can tell a re-send apart. 429 and 5xx are retryable.

A report is one message too (an incoming webhook cannot upload files): its
title, the text summary and a button to the dashboard over the report's
period when the report has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from riffle.config.notifications import SlackConfig, resolve_env
from riffle.operators.notify.groups import GroupAlert, Notification
from riffle.sinks.channels.base import ReportMessage, check_url, http_post

MAX_ALERTS = 10
"""Sections per message (Slack allows 50 blocks; long messages are unreadable)."""
_EMOJI = {
    "firing": ":rotating_light:",
    "nodata": ":grey_question:",
    "resolved": ":white_check_mark:",
}


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _alert_text(a: GroupAlert) -> str:
    summary = a.annotations.get("summary") or a.annotations.get("description") or ""
    shown = ", ".join(
        f"{k}={v}" for k, v in sorted(a.labels.items()) if k not in ("alertname", "tenant")
    )
    head = f"{_EMOJI.get(a.status, '')} *{a.rule}* {a.status} ({a.severity})"
    lines = [head, summary, f"`{shown}`", f"since {_when(a.starts_at)}, value {a.value}"]
    return "\n".join(line for line in lines if line)[:2900]


def payload(note: Notification, channel: str | None = None) -> dict[str, Any]:
    """The message body for one notification."""
    firing = sum(1 for a in note.alerts if a.active)
    resolved = len(note.alerts) - firing
    group = ", ".join(f"{k}={v}" for k, v in sorted(note.group_labels.items())) or "all"
    title = f"[{note.status.upper()}:{firing or resolved}] {group}"
    if note.repeat:
        title += " (repeat)"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
    ]
    blocks += [
        {"type": "section", "text": {"type": "mrkdwn", "text": _alert_text(a)}}
        for a in note.alerts[:MAX_ALERTS]
    ]
    if len(note.alerts) > MAX_ALERTS:
        more = len(note.alerts) - MAX_ALERTS
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"and {more} more"}})
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"tenant {note.tenant} · receiver {note.receiver}"
                    f" · {firing} firing, {resolved} resolved · dedup {note.dedup_key}",
                }
            ],
        }
    )
    body: dict[str, Any] = {
        "text": f"{title}: " + "; ".join(f"{a.rule} {a.status}" for a in note.alerts[:20]),
        "blocks": blocks,
    }
    if channel:
        body["channel"] = channel
    return body


def report_payload(report: ReportMessage, channel: str | None = None) -> dict[str, Any]:
    """The message body for one report."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": report.title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": report.text[:2900]}},
    ]
    if report.link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open the dashboard"},
                        "url": report.link,
                    }
                ],
            }
        )
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"report {report.report} · tenant {report.tenant}"
                    f" · dedup {report.dedup_key}",
                }
            ],
        }
    )
    text = report.title + (f" <{report.link}|dashboard>" if report.link else "")
    body: dict[str, Any] = {"text": text, "blocks": blocks}
    if channel:
        body["channel"] = channel
    return body


class SlackChannel:
    """Posts notifications and reports to one incoming-webhook URL."""

    kind = "slack"
    carries_reports = True

    def __init__(
        self,
        url: str,
        *,
        channel: str | None = None,
        timeout_s: float = 5.0,
        attempts: int = 5,
        backoff_s: float = 0.5,
    ) -> None:
        self.url = check_url(url, "Slack webhook")
        self.channel = channel
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s

    @classmethod
    def from_config(cls, c: SlackConfig, environ: Mapping[str, str]) -> SlackChannel:
        return cls(
            c.url or resolve_env(c.url_env or "", environ),
            channel=c.channel,
            timeout_s=c.timeout.total_seconds(),
            attempts=c.max_attempts,
            backoff_s=c.backoff.total_seconds(),
        )

    def send(self, note: Notification) -> None:
        self._post(payload(note, self.channel))

    def send_report(self, report: ReportMessage) -> None:
        self._post(report_payload(report, self.channel))

    def _post(self, body: dict[str, Any]) -> None:
        http_post(
            self.url, orjson.dumps(body), {"Content-Type": "application/json"}, self.timeout_s
        )
